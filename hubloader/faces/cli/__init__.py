"""The ``hubloader`` command line: search, get, library, resolve, lock and cache, over the hub layer.

One module per command (``search``, ``get``, ``listing``, ``info``, ``scan``, ``plan``, ``resolve``, ``lock``,
``verify``, ``cache``, ``login``, ``ui``), each with ``register`` (its parser, help and examples) and ``run``; what they
share lives in :mod:`.options` (parsing) and :mod:`.output` (tables, JSON lines, exit codes, the error line).
Every command is a thin face: it parses arguments, calls the services/registry/resolver, and prints a table
(or JSON with ``--json``). Importing this package stays cheap (argparse and our light modules), so
``hubloader --help`` is instant; services are imported inside the command that needs them.

Errors are one line on stderr and an exit code per error class, documented in :data:`EXIT_CODES_HELP`.
No traceback unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from hubloader.core.errors import HubloaderError
from hubloader.core.version import __version__
from hubloader.faces.cli import cache, get, info, listing, lock, login, plan, resolve, rm, scan, search, ui, verify
from hubloader.faces.cli.options import Parser, output_options
from hubloader.faces.cli.output import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Output,
    exit_code_for,
    first_time,
    forget_said,
    one_line,
)

__all__ = ["EXIT_CODES_HELP", "build_parser", "exit_code_for", "main"]

log = logging.getLogger("hubloader")

#: In the order ``hubloader --help`` lists them.
COMMANDS = (search, get, listing, info, rm, scan, plan, resolve, lock, verify, cache, login, ui)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one subcommand per module of :data:`COMMANDS`."""
    common = output_options()
    parser = Parser(
        prog="hubloader",
        description="Find, download, verify and index diffusion models from HuggingFace and CivitAI.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.set_defaults(func=None)
    parser.add_argument("--version", action="version", version=f"hubloader {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.register(commands, common)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """Log to stderr: details with --verbose, errors only with --quiet; no hub progress bars with --json."""
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "hubloader: %(levelname)s: %(message)s"
            if not args.verbose
            else "%(asctime)s %(name)s %(levelname)s: %(message)s"
        )
    )
    handler.addFilter(_OncePerMessage(keep_hub_logs=args.verbose))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if not args.verbose else logging.INFO)
    log.setLevel(level)
    if args.quiet or args.json:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class _OncePerMessage(logging.Filter):
    """Each message once (a warning the registry logs and the command prints is one line), and no
    huggingface_hub records: its own handler prints them already (with --verbose they are kept, for details)."""

    def __init__(self, *, keep_hub_logs: bool) -> None:
        super().__init__()
        self.keep_hub_logs = keep_hub_logs

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("huggingface_hub") and not self.keep_hub_logs:
            return False
        return first_time(record.getMessage())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code (see :data:`EXIT_CODES_HELP`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("json", "quiet", "verbose"):  # SUPPRESS defaults: absent unless given before or after the command
        setattr(args, name, getattr(args, name, False))
    if args.func is None:
        parser.print_help()
        return EXIT_USAGE
    forget_said()
    _configure_logging(args)
    out = Output(json_mode=args.json, quiet=args.quiet, verbose=args.verbose)
    try:
        return int(args.func(args, out) or EXIT_OK)
    except KeyboardInterrupt:
        out.error("interrupted. Partial downloads were kept: run the same command again to resume.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hubloader list | head`
        sys.stderr.close()
        return EXIT_OK
    except (HubloaderError, OSError, ValueError) as exc:
        if args.verbose:
            log.exception("%s failed", args.func.__module__.rpartition(".")[2])
        out.error(one_line(exc))
        return exit_code_for(exc)
    except Exception as exc:  # a bug: still one line, the traceback with --verbose
        if args.verbose:
            log.exception("unexpected error")
        out.error(f"unexpected {type(exc).__name__}: {one_line(exc)} (run with --verbose for details and report it)")
        return EXIT_ERROR
