"""`python -m bench NAME`: run one of Rollway's benchmarks."""

from __future__ import annotations

import argparse
import sys

from bench import load, overhead


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    overhead.add_arguments(commands.add_parser("overhead", help=overhead.__doc__))
    load.add_arguments(commands.add_parser("load", help=load.__doc__))
    args = parser.parse_args(argv)
    runs = {"overhead": overhead.run, "load": load.run}
    return int(runs[args.command](args))


if __name__ == "__main__":
    sys.exit(main())
