"""What commands share on the way in: the parser, argument types, host folder options and the registry."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from hubloader.core.errors import NotFound
from hubloader.core.metadata import BaseModel, ModelType, Source
from hubloader.faces.cli.output import EXIT_USAGE, Output

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.core.folders import ModelFolders
    from hubloader.registry import ModelRegistry

#: What a command runs: parsed arguments and the output → an exit code.
Command = Callable[[argparse.Namespace, Output], int]
#: The ``add_subparsers`` object commands register on.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (plus where to look), exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def output_options() -> argparse.ArgumentParser:
    """--json/--quiet/--verbose, accepted before or after the command (SUPPRESS keeps the global value)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON output")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only the result (saved paths; ids for search), no progress",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details; tracebacks on errors"
    )
    return common


def add_command(
    commands: Commands,
    name: str,
    func: Command,
    help: str,
    examples: Sequence[str],
    common: argparse.ArgumentParser,
    *,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """A (sub)command's parser: its one-line help, an epilog of ``examples`` and the output options."""
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    sub = commands.add_parser(
        name,
        aliases=list(aliases),
        help=help,
        description=help,
        epilog=epilog,
        # typeshed wants parents of the subparser class; a parent only lends its arguments, any parser does
        parents=[common],  # type: ignore[list-item]
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(func=func)
    return sub


def add_host_options(parser: argparse.ArgumentParser, *, with_to: bool = False) -> None:
    """--comfyui/--a1111/--models-dir (and --to): the one set of model folders the command works on."""
    group = parser.add_argument_group(
        "where models live (default: the models_dir setting, else $HUBLOADER_HOME/models)"
    ).add_mutually_exclusive_group()
    if with_to:
        group.add_argument("--to", metavar="DIR", type=Path, help="put the file(s) straight into DIR")
    group.add_argument(
        "--comfyui", metavar="PATH", type=Path, help="a ComfyUI install (its models/ and extra_model_paths.yaml)"
    )
    group.add_argument(
        "--a1111", metavar="PATH", type=Path, help="an A1111/Forge install (models/Stable-diffusion, Lora …)"
    )
    group.add_argument("--models-dir", metavar="DIR", type=Path, help="a standalone models folder (ComfyUI layout)")


def add_shared_cache_option(parser: argparse.ArgumentParser) -> None:
    """--shared-cache URL: the site-wide cache a download goes through."""
    parser.add_argument(
        "--shared-cache",
        metavar="URL",
        default=None,
        help="a site-wide cache: s3://bucket/prefix or a shared folder (default: $HUBLOADER_SHARED_CACHE)",
    )


_BASE_ALIASES = {"flux": BaseModel.FLUX1, "sd1": BaseModel.SD15, "sd1.5": BaseModel.SD15, "sd3.5": BaseModel.SD35}
_SOURCE_ALIASES = {"hf": Source.HUGGINGFACE, "huggingface": Source.HUGGINGFACE, "civitai": Source.CIVITAI}


def model_type(text: str) -> ModelType:
    """--type: a model type by name or alias."""
    try:
        return ModelType.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown type {text!r}; use one of: {', '.join(dict.fromkeys(t.value for t in ModelType))}"
        ) from None


def base_model(text: str) -> BaseModel:
    """--base: a base model by name or alias (flux, sd1.5 …)."""
    if text.strip().lower() in _BASE_ALIASES:
        return _BASE_ALIASES[text.strip().lower()]
    try:
        return BaseModel.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown base {text!r}; use one of: {', '.join(b.value for b in BaseModel)}, flux"
        ) from None


def source(text: str) -> Source:
    """--source: hf, civitai, local or url."""
    try:
        return _SOURCE_ALIASES.get(text.strip().lower()) or Source.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown source {text!r}; use hf, civitai, local or url") from None


def limit_gb(text: str) -> float | None:
    """--limit: a size in GB, or none/off/unlimited for no limit."""
    if text.strip().lower() in ("none", "off", "unlimited"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GB (or 'none')") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the limit must be >= 0 GB")
    return value


def host_folders(args: argparse.Namespace) -> ModelFolders:
    """The model folders the user pointed at: --comfyui, --a1111, --models-dir, else the configured default."""
    from hubloader.core.folders import a1111_install, comfyui_install, models_root, standalone_folders

    if getattr(args, "comfyui", None):
        return comfyui_install(args.comfyui)
    if getattr(args, "a1111", None):
        return a1111_install(args.a1111)
    return standalone_folders(getattr(args, "models_dir", None) or models_root())


def open_registry() -> ModelRegistry:
    """The registry on the configured home (imported here: it loads sqlite3)."""
    from hubloader.registry import ModelRegistry

    return ModelRegistry()


@contextmanager
def cancel_on_sigint() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a cancel request (downloads on worker threads stop and keep their
    ``.part``); a second Ctrl-C interrupts at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def existing_file(text: str) -> Path:
    """``text`` as a path to a file that exists; else NotFound."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise NotFound(
            f"{path} does not exist or is not a file.", hint="Give a workflow .json, an image or a lockfile."
        )
    return path
