"""The `lrcn` command line: parse the arguments and dispatch to one command module of lrcn.commands
(each ``register(subparsers)`` adds its parser(s) with the function that runs it)."""

from __future__ import annotations

import argparse
import logging
import sys

from lrcn.commands import activity, caption, data, demo, evaluate, extract, score, train
from lrcn.errors import LrcnError

COMMANDS = (data, train, extract, evaluate, caption, score, demo, activity)     # in the order of --help


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lrcn", description="LRCN / Show-and-Tell image and video captioning")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = args.func(args)
    except LrcnError as e:
        print(f"lrcn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
