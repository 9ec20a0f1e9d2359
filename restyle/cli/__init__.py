"""The command line: ``restyle run``, ``quality``, ``styles``, ``sample``, and the service's commands.

The grammar is in ``parser.py``, what the local commands do in ``commands.py``; the service's commands
are the client's (``restyle/client/commands.py``). Every RestyleError (and every bad argument) becomes one line
on stderr and exit code 2. Output piped into a reader that stops early (``restyle jobs | head``) ends quietly, as
``git log | head`` does: exit 141 (128 + SIGPIPE), no traceback. Nothing else is caught.
"""

from __future__ import annotations

import logging
import os
import sys

from pydantic import ValidationError

from restyle.cli.parser import build_parser
from restyle.errors import RestyleError
from restyle.jobspec import validation_reason

EXIT_ERROR = 2
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `git log` when `head` stopped reading


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # Python's recipe (docs: signal, "Note on SIGPIPE"): stdout to devnull, so that the flush at exit is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="restyle: %(message)s", stream=sys.stderr)
    try:
        status = args.command(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except RestyleError as exc:
        print(f"restyle: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValidationError as exc:
        print(f"restyle: error: bad value: {validation_reason(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("restyle: interrupted; finished chunks are kept in --work-dir, if one was given", file=sys.stderr)
        return 130
