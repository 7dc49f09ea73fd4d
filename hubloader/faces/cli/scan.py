"""``hubloader scan [DIRS]``: index the model files in folders (default: the host's model folders)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hubloader.core.errors import NotFound
from hubloader.faces.cli.options import Commands, add_command, add_host_options, host_folders, open_registry
from hubloader.faces.cli.output import EXIT_OK, Output, short_hash

EXAMPLES = (
    "hubloader scan",
    "hubloader scan ~/models/loras ~/models/checkpoints",
    "hubloader scan --comfyui ~/ComfyUI --hash",
    "hubloader scan --hash --offline --json",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``scan`` to the command line."""
    scan = add_command(
        commands, "scan", run, "index the model files in folders (default: the host's model folders)", EXAMPLES, common
    )
    scan.add_argument("dirs", metavar="DIRS", nargs="*", help="folders to scan (default: the host's model folders)")
    scan.add_argument("--hash", action="store_true", help="also hash new files and identify them on CivitAI")
    scan.add_argument("--offline", action="store_true", help="with --hash: do not ask CivitAI")
    add_host_options(scan)


def run(args: argparse.Namespace, out: Output) -> int:
    """Register every model file under DIRS (default: the host's model folders)."""
    if args.dirs:
        dirs = [Path(d).expanduser() for d in args.dirs]
        for d in dirs:
            if not d.is_dir():
                raise NotFound(f"{d} is not a folder.", hint="Give folders that hold model files.")
    else:
        folders = host_folders(args)
        dirs = folders.existing_dirs()
    registry = open_registry()
    try:
        report = registry.scan(dirs)
        enriched = registry.enrich(lookup_civitai=not args.offline) if args.hash else None
    finally:
        registry.close()
    if out.json:
        out.record(
            {
                "dirs": [str(d) for d in dirs],
                "new_or_changed": [str(m.local_path) for m in report.models],
                "unchanged": len(report.unchanged),
                "removed": [str(p) for p in report.removed],
                "errors": [{"path": str(p), "error": e} for p, e in report.errors],
                "duplicates": {sha: [str(p) for p in paths] for sha, paths in report.duplicates.items()},
                "hashed": enriched.hashed if enriched else 0,
                "matched_on_civitai": enriched.matched if enriched else 0,
            }
        )
        return EXIT_OK
    out.line(
        f"Scanned {len(dirs)} folder(s): {len(report.models)} new or changed, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} gone, {len(report.errors)} unreadable."
    )
    for meta in report.models:
        out.line(f"  + {meta.local_path} ({meta.type.value}, {meta.base_model.value})")
    for path, error in report.errors:
        out.warn(f"{path}: {error}")
    for sha, paths in report.duplicates.items():
        out.line(f"  duplicate {short_hash(sha)}: {', '.join(str(p) for p in paths)}")
    if enriched is not None:
        out.line(f"Hashed {enriched.hashed} file(s); {enriched.matched} identified on CivitAI.")
        for error in enriched.errors:
            out.warn(error)
    return EXIT_OK
