"""``hubloader lock FILE``: write FILE.lock.json, every model's folder, name, size, SHA256 and source."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hubloader.core.settings import redact_url
from hubloader.core.units import human_size
from hubloader.faces.cli.options import Commands, add_command, add_host_options, existing_file, host_folders
from hubloader.faces.cli.output import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, Output, short_hash

EXAMPLES = (
    "hubloader lock workflow.json",
    "hubloader lock workflow.json --comfyui ~/ComfyUI --download",
    "hubloader lock image.png -o shared/image.lock.json --json",
    "hubloader lock workflow.lock.json --update",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``lock`` to the command line."""
    lock = add_command(
        commands,
        "lock",
        run,
        "write FILE.lock.json: every model's folder, name, size, SHA256 and source",
        EXAMPLES,
        common,
    )
    lock.add_argument("file", metavar="FILE", help="workflow .json, PNG/WebP image or infotext .txt")
    lock.add_argument("-o", "--output", type=Path, metavar="PATH", help="where to write (default: <stem>.lock.json)")
    lock.add_argument("--download", action="store_true", help="fetch missing models first")
    lock.add_argument(
        "--update",
        action="store_true",
        help="FILE is a lockfile: refresh its sources (revision, needs, a moved source) keeping every pinned SHA256",
    )
    add_host_options(lock)


def run(args: argparse.Namespace, out: Output) -> int:
    """Lock the models of FILE; a model with no known source is a failure (exit 3), the file is written anyway."""
    from hubloader.workflows.lockfile import lock, lockfile_path

    path = existing_file(args.file)
    if args.update:
        return _update(path, args, out)
    locked = lock(str(path), host_folders(args), download=args.download)
    target = locked.save(args.output or lockfile_path(path))
    if out.json:
        out.record({"lockfile": str(target), **locked.to_dict()})
        return _lock_exit(locked, target, out)
    out.line(f"Wrote {target} ({len(locked.models)} model(s)).")
    rows = [
        (m.kind, m.name, human_size(m.size or None), short_hash(m.sha256), redact_url(m.url) if m.url else m.air)
        for m in locked.models
    ]
    if rows:
        out.table(("KIND", "MODEL", "SIZE", "SHA256", "SOURCE"), rows, widths={1: 50, 4: 80})
    return _lock_exit(locked, target, out)


def _update(path: Path, args: argparse.Namespace, out: Output) -> int:
    """``--update``: sources refreshed, pins kept; a source serving other bytes or gone for good fails (exit 1)."""
    from hubloader.workflows import Resolver
    from hubloader.workflows.lockfile import update_lockfile

    locked, notes = update_lockfile(path, resolver=Resolver(host_folders(args)))
    target = locked.save(args.output or path)
    refused = [n for n in notes if "not accepted" in n or "no other source" in n]
    if out.json:
        out.record({"lockfile": str(target), "notes": notes, **locked.to_dict()})
    else:
        out.line(f"Updated {target} ({len(locked.models)} model(s), every SHA256 kept).")
        for note in notes:
            out.line(f"  {note}")
    for note in refused:
        out.error(note)
    return EXIT_ERROR if refused else EXIT_OK


def _lock_exit(locked: Any, target: Path, out: Output) -> int:
    """The lockfile is written either way; one another machine cannot reproduce is a failure (exit 3)."""
    unsourced = [m.name for m in locked.models if not m.url and not m.air]
    if not unsourced:
        return EXIT_OK
    out.error(
        f"{len(unsourced)} model(s) in {target.name} have no known source, so another machine cannot fetch them: "
        f"{', '.join(unsourced)}. Add their URLs to the workflow's models list and lock again."
    )
    return EXIT_NOT_FOUND
