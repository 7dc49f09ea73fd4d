"""``hubloader rm MODEL``: delete a registered model's file and sidecars, after showing them and asking.

Like ``hf cache delete``: nothing goes before the list of what will go has been shown and confirmed (an answer
on a terminal, or ``--yes``); without a terminal and without ``--yes`` nothing is deleted (exit 1). A model
downloaded from HuggingFace also leaves the HF cache (its blob), as ``cache cleanup`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hubloader.core.errors import NotFound
from hubloader.core.units import human_size
from hubloader.faces.cli.options import Commands, add_command, open_registry
from hubloader.faces.cli.output import EXIT_ERROR, EXIT_OK, Output

EXAMPLES = (
    "hubloader rm inkwash",
    "hubloader rm civitai:123456@654321 --yes",
    "hubloader rm ~/ComfyUI/models/loras/inkwash.safetensors --keep-file",
)

#: The sidecars a download writes beside ``<stem>.<ext>``: A1111's, ours (frozen), and previews.
_SIDECAR_SUFFIXES = (".json", ".hubloader.json", ".civitai.info", ".preview.png", ".preview.jpeg", ".png", ".jpeg")


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``rm`` to the command line."""
    rm = add_command(
        commands, "rm", run, "delete a model's file and sidecars and forget it (shows them, asks)", EXAMPLES, common
    )
    rm.add_argument("model", metavar="MODEL", help="a registered name, id, path or hash (see `hubloader list`)")
    rm.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    rm.add_argument("--keep-file", action="store_true", help="only forget the model; its files stay")


def run(args: argparse.Namespace, out: Output) -> int:
    """Show what would go, ask, then delete the files and forget the model."""
    with open_registry() as registry:
        meta = registry.find_model(args.model)
        if meta is None:
            raise NotFound(f"No model {args.model!r} in the registry.", hint="See `hubloader list`.")
        files = [] if args.keep_file else doomed_files(meta.local_path)
        if not out.json:
            out.line(f"{meta.name} ({meta.model_id}):")
            for path in files:
                out.line(f"  delete {path} ({human_size(_size(path) or None)})")
            out.line("  forget it in the registry")
        if not (args.yes or _confirmed(len(files))):
            out.warn("Nothing was deleted: confirm on a terminal, or pass --yes.")
            return EXIT_ERROR
        registry.delete_model(meta, delete_file=bool(files) and meta.local_path is not None)
        for path in files[1:]:  # the sidecars (the model file itself went with delete_model)
            path.unlink(missing_ok=True)
    if out.json:
        out.record({"id": meta.model_id, "deleted": [str(p) for p in files], "forgotten": True})
    elif out.quiet:
        for path in files:
            out.result(str(path))
    else:
        out.line(f"Deleted {len(files)} file(s); {meta.name} is no longer registered.")
    return EXIT_OK


def doomed_files(path: Path | None) -> list[Path]:
    """The model file (first) and the sidecars beside it that exist."""
    if path is None or not (path.exists() or path.is_symlink()):
        return []
    sidecars = [path.with_name(path.stem + suffix) for suffix in _SIDECAR_SUFFIXES]
    return [path, *(p for p in sidecars if p != path and p.is_file())]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _confirmed(count: int) -> bool:
    """An answer on the terminal; False (nothing asked) when stdin is not one."""
    if not sys.stdin.isatty():
        return False
    return input(f"Delete these {count} file(s)? [y/N] ").strip().lower() in ("y", "yes")
