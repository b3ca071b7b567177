"""`python -m api` is the `rollway` command."""

from api.cli import main

main()
