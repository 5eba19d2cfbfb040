"""The ``jacnet`` command line: ``jacnet train | evaluate | predict | check | jacobian | export``.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. Bad options, bad values and missing files print one line and exit 2;
jacnet's own errors print their message, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from jacnet.errors import JacnetError, JacnetWarning

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from jacnet.cli import check, export, jacobian, train

    parser = _Parser(prog="jacnet", description="Backpropagation you can see and check.")
    from jacnet import __version__

    parser.add_argument("--version", action="version", version=f"jacnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (train, check, jacobian, export):
        module.add_parsers(sub)
    return parser


def _one_line_warning(command: str) -> Any:
    """A ``warnings.showwarning`` that prints jacnet's own warnings as one line on stderr."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, JacnetWarning):
            print(f"jacnet {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jacnet`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            code: int = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in an error at exit
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as a shell reports a process ended by SIGPIPE
    except JacnetError as exc:
        print(f"jacnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"jacnet {args.command}: error: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable output, a directory where a file belongs, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        print(f"jacnet {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional extra that is not installed; the message names it
        print(f"jacnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"jacnet {args.command}: error: input is not UTF-8 text ({exc.reason})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jacnet {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
