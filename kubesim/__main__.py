"""``python -m kubesim``: run the emulator's command line."""

from kubesim.cli import main

raise SystemExit(main())
