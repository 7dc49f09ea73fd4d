"""``hubloader get REF``: download a model into the right folder, verified, described and registered."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubloader.core.errors import Cancelled
from hubloader.core.units import human_size
from hubloader.faces.cli.options import (
    Commands,
    add_command,
    add_host_options,
    add_shared_cache_option,
    cancel_on_sigint,
    host_folders,
    model_type,
    open_registry,
)
from hubloader.faces.cli.output import EXIT_OK, Output, UsageError, model_fields, short_hash

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.core.folders import ModelFolders
    from hubloader.core.metadata import ModelMetadata, ModelType
    from hubloader.faces.cli.targets import Target
    from hubloader.pipeline import Placed

EXAMPLES = (
    "hubloader get stabilityai/sdxl-vae/sdxl_vae.safetensors",
    "hubloader get civitai:123456@654321 --comfyui ~/ComfyUI",
    "hubloader get https://civitai.com/models/123456 --a1111 ~/stable-diffusion-webui",
    "hubloader get urn:air:sdxl:lora:civitai:123456@654321 --to ./loras --json",
    "hubloader get owner/repo --include '*.safetensors' --exclude '*fp32*' --dry-run",
    "hubloader get civitai:123456 --filename inkwash_v2.safetensors --force",
    'P=$(hubloader get civitai:123456 -q) && echo "saved to $P"',
)

#: The environment variable a ``--token`` goes to, per service (read by hubloader.core.settings).
_TOKEN_ENV = {"huggingface": "HF_TOKEN", "civitai": "CIVITAI_API_TOKEN"}


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``get`` to the command line."""
    get = add_command(
        commands, "get", run, "download a model into the right folder, verified and registered", EXAMPLES, common
    )
    get.add_argument(
        "ref",
        metavar="REF",
        help="owner/repo[/file], a HuggingFace or CivitAI URL, civitai:MODEL[@VERSION], an AIR, or a hash",
    )
    get.add_argument("--revision", metavar="R", help="HuggingFace branch/tag/commit, or a CivitAI version id")
    get.add_argument("--type", type=model_type, help="override the model type (decides the folder)")
    get.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.pt/.bin files (they can run code)")
    get.add_argument(
        "--filename",
        metavar="NAME",
        help="save under NAME (e.g. when a different file of the same name is already there)",
    )
    get.add_argument(
        "--token",
        metavar="TOKEN",
        help="the HuggingFace or CivitAI token for this download only (default: the saved one, HF_TOKEN …)",
    )
    get.add_argument(
        "--include",
        metavar="GLOB",
        action="append",
        default=[],
        help="with a repo or version: fetch the files matching GLOB (repeatable, e.g. '*.safetensors')",
    )
    get.add_argument(
        "--exclude",
        metavar="GLOB",
        action="append",
        default=[],
        help="with a repo or version: skip files matching GLOB",
    )
    get.add_argument(
        "--force",
        action="store_true",
        help="download again even if present, replacing the file at the destination (kept if the download fails)",
    )
    get.add_argument(
        "--dry-run", action="store_true", help="say what would be fetched, where and how big; download nothing"
    )
    add_host_options(get, with_to=True)
    add_shared_cache_option(get)


def run(args: argparse.Namespace, out: Output) -> int:
    """Download what REF names into the host's folder, verified; describe it, write sidecars, register it."""
    from hubloader.faces.cli.targets import service_of

    if args.token:  # this process only: the settings read HF_TOKEN / CIVITAI_API_TOKEN first
        service = service_of(args.ref)
        if not service:
            raise UsageError("--token is for HuggingFace and CivitAI references.")
        os.environ[_TOKEN_ENV[service]] = args.token
    folders: ModelFolders | Path = Path(args.to).expanduser() if args.to else host_folders(args)
    many = bool(args.include or args.exclude)
    if many and args.filename:
        raise UsageError("--filename names one file; it cannot go with --include/--exclude.")
    if not (args.dry_run or args.force or many or args.filename):
        placed = [_present(args.ref, folders, args.type) or _fetch(args.ref, args.ref, folders, args, out, None)]
    else:
        from hubloader.faces.cli.targets import targets

        found = targets(args.ref, kind=args.type, revision=args.revision, include=args.include, exclude=args.exclude)
        if args.dry_run:
            return _dry_run(found, folders, args, out)
        placed = _fetch_all(found, folders, args, out)
    with open_registry() as registry:
        from hubloader.pipeline import record

        recorded = [(p, record(p, registry, model_type=args.type)) for p in placed]
    for p, meta in recorded:
        _say_placed(p, meta, out)
    return EXIT_OK


def _present(ref: str, folders: ModelFolders | Path, kind: ModelType | None) -> Placed | None:
    """A pinned CivitAI version the registry has in its folder: no request at all (works offline)."""
    from hubloader.pipeline import present_pinned

    with open_registry() as registry:
        return present_pinned(ref, registry, folders, kind)


def _fetch(
    what: Any, name: str, folders: ModelFolders | Path, args: argparse.Namespace, out: Output, bars: Any
) -> Placed:
    """One file through the pipeline, with its progress (a bar, a plain line, or nothing with -q/--json)."""
    from hubloader.faces.cli.progress import Progress
    from hubloader.pipeline import fetch

    own = bars is None and not (out.quiet or out.json)
    if own:
        bars = Progress()
    # Ctrl-C as a cancel request the engine polls (it keeps the .part), not an exception thrown into whatever
    # runs at that instant: an asyncio cancellation landing inside a library's cleanup can be lost, and the
    # download would then run on and exit 0.
    with cancel_on_sigint() as cancel:
        try:
            return fetch(
                what,
                folders,
                kind=args.type,
                save_as=args.filename,
                revision=args.revision,
                allow_pickle=True if args.allow_pickle else None,  # else the allow_pickle setting
                progress=bars.file(name) if bars is not None else None,
                cancel=cancel,
                shared_cache=args.shared_cache,
            )
        except Cancelled:
            if cancel.is_set():
                raise KeyboardInterrupt from None
            raise
        finally:
            if own:
                bars.close()


def _fetch_all(
    found: list[Target], folders: ModelFolders | Path, args: argparse.Namespace, out: Output
) -> list[Placed]:
    """Each target in turn (one bar each, plus an overall bar for several); ``--force`` replaces what is there."""
    from hubloader.faces.cli.progress import Progress

    bars = None if out.quiet or out.json else Progress(len(found), sum(t.size_bytes for t in found))
    placed = []
    try:
        for target in found:
            dest = target.dest(folders, args.filename)
            if args.force and dest.is_file():
                placed.append(_replace(dest, target, folders, args, out, bars))
            elif args.filename and dest.is_file() and not _holds(dest, target):
                from hubloader.gate.policy import DownloadRefused

                raise DownloadRefused(
                    f"A different file already exists at {dest}; it was kept and nothing was downloaded.",
                    hint="Pass --force to replace it, or choose another --filename.",
                )
            else:
                placed.append(_fetch(target.what, target.name, folders, args, out, bars))
    finally:
        if bars is not None:
            bars.close()
    return placed


def _holds(dest: Path, target: Target) -> bool:
    """Whether ``dest`` already is the target's file (its size, then its SHA256 when the source states them)."""
    from hubloader.engine.hashing import sha256_file

    if target.size_bytes and dest.stat().st_size != target.size_bytes:
        return False
    return not target.sha256 or sha256_file(dest).lower() == target.sha256.lower()


def _replace(
    dest: Path, target: Target, folders: ModelFolders | Path, args: argparse.Namespace, out: Output, bars: Any
) -> Placed:
    """``--force``: move the file at ``dest`` aside, download afresh under its name, then drop the old one;
    if the download fails the old file is put back, so nothing is lost."""
    from hubloader.faces.cli.targets import service_of

    aside = dest.with_name(f".{dest.name}.hubloader-replaced")
    os.replace(dest, aside)
    if isinstance(target.what, str) and service_of(target.what) == "huggingface" and not aside.is_symlink():
        # the file is a hardlink or copy of the HF cache's blob: drop the cache copy too, or the "new" file would
        # be the same bytes (hf download --force-download re-fetches into the cache likewise). A symlink's bytes
        # are the blob itself; it stays, so a failed download can put it back.
        from hubloader.sources.huggingface import HuggingFaceHubService

        HuggingFaceHubService().delete_cached_model(target.what)
    forced = argparse.Namespace(**{**vars(args), "filename": dest.name})  # keep the name: do not place apart
    try:
        placed = _fetch(target.what, target.name, folders, forced, out, bars)
    except BaseException:
        if not dest.exists():
            os.replace(aside, dest)
        raise
    aside.unlink(missing_ok=True)
    return placed


def _dry_run(found: list[Target], folders: ModelFolders | Path, args: argparse.Namespace, out: Output) -> int:
    """What a get would fetch, where and how big, and whether it is there already; no byte is downloaded."""
    rows = []
    for target in found:
        dest = target.dest(folders, args.filename)
        present = dest.is_file()
        action = "replace" if present and args.force else "check" if present else "download"
        rows.append((target, dest, action))
    if out.json:
        for target, dest, action in rows:
            out.record(
                {
                    "name": target.name,
                    "path": str(dest),
                    "size_bytes": target.size_bytes,
                    "sha256": target.sha256,
                    "action": action,
                    "dry_run": True,
                }
            )
        return EXIT_OK
    if out.quiet:
        for _, dest, _ in rows:
            out.result(str(dest))
        return EXIT_OK
    out.table(
        ("ACTION", "FILE", "SIZE", "SHA256", "TO"),
        [(a, t.name, human_size(t.size_bytes or None), short_hash(t.sha256), str(d)) for t, d, a in rows],
    )
    total = sum(t.size_bytes for t, _, a in rows if a != "check")
    out.line(f"Dry run: {len(rows)} file(s), {human_size(total or None)} to download at most; nothing was fetched.")
    return EXIT_OK


def _say_placed(placed: Placed, meta: ModelMetadata, out: Output) -> None:
    """The result: the saved path (alone with -q), or one JSON line, or a line with trigger words and weight."""
    path = placed.path.absolute()
    if out.json:
        out.record(
            {
                "path": str(path),
                **model_fields(meta),
                "reused": placed.reused,
                "verified": bool(meta.sha256),
                "trigger_words": meta.trigger_words,
                "recommended_weight": meta.recommended_weight,
            }
        )
        return
    if out.quiet:
        out.result(str(path))
        return
    verb = "Already present" if placed.reused else "Saved"
    if path.is_dir():
        out.line(f"{verb}: {path} (a diffusers folder in the HuggingFace cache)")
    else:
        out.line(f"{verb}: {path} ({human_size(meta.size_bytes or None)}, SHA256 {short_hash(meta.sha256)} verified)")
    if meta.trigger_words or meta.recommended_weight is not None:
        words = ", ".join(meta.trigger_words) if meta.trigger_words else "-"
        weight = f"{meta.recommended_weight:g}" if meta.recommended_weight is not None else "-"
        out.line(f"  trigger words: {words}    weight: {weight}")
