"""The command line: ``restyle run``, ``quality``, ``styles``, ``sample``, and the service's commands.

The grammar is in ``parser.py``, what the local commands do in ``commands.py``; the service's commands
are the client's (``restyle/client/commands.py``). Every RestyleError becomes one line on stderr and exit
code 2; nothing else is caught.
"""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from restyle.cli.parser import build_parser
from restyle.errors import RestyleError
from restyle.jobspec import validation_reason

EXIT_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="restyle: %(message)s", stream=sys.stderr)
    try:
        return args.command(args)
    except RestyleError as exc:
        print(f"restyle: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValidationError as exc:
        print(f"restyle: error: bad value: {validation_reason(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("restyle: interrupted; finished chunks are kept in --work-dir, if one was given", file=sys.stderr)
        return 130
