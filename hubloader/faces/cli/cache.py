"""``hubloader cache``: the download cache (show, limit, cleanup) and the site's shared cache (push, pull)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hubloader.core.metadata import CacheCleanupReport
from hubloader.core.units import human_size
from hubloader.faces.cli.listing import library_record
from hubloader.faces.cli.options import (
    Commands,
    Parser,
    add_command,
    add_host_options,
    add_shared_cache_option,
    existing_file,
    host_folders,
    limit_gb,
    open_registry,
)
from hubloader.faces.cli.output import EXIT_ERROR, EXIT_OK, Output, UsageError, short_hash
from hubloader.faces.cli.resolve import print_report, resolve_exit

EXAMPLES = (
    "hubloader cache",
    "hubloader cache --limit 100",
    "hubloader cache --limit none --json",
    "hubloader cache cleanup --dry-run",
    "hubloader cache cleanup --yes",
    "hubloader cache push --shared-cache s3://models/cache",
    "hubloader cache pull workflow.lock.json --comfyui ~/ComfyUI",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``cache`` and its actions (cleanup, push, pull) to the command line."""
    cache = add_command(commands, "cache", run, "show the download cache or set its size limit", EXAMPLES, common)
    cache.add_argument(
        "--limit", type=limit_gb, default=False, metavar="GB", help="set the limit; deletes nothing ('none' removes it)"
    )
    actions = cache.add_subparsers(title="cache commands", metavar="ACTION", parser_class=Parser)
    _register_cleanup(actions, common)
    _register_push(actions, common)
    _register_pull(actions, common)


def _register_cleanup(actions: Commands, common: argparse.ArgumentParser) -> None:
    examples = (
        "hubloader cache cleanup --dry-run",
        "hubloader cache cleanup --yes",
        "hubloader cache cleanup --keep-recent 5 --max-size-gb 20",
    )
    cleanup = add_command(
        actions, "cleanup", run_cleanup, "list, then delete, downloads beyond the size limit", examples, common
    )
    cleanup.add_argument("--max-size-gb", type=float, metavar="G", help="shrink to G GB (default: the cache limit)")
    cleanup.add_argument(
        "--keep-recent", type=int, default=0, metavar="N", help="never delete the N most recently used"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    cleanup.add_argument("--yes", action="store_true", help="delete without asking")


def _register_push(actions: Commands, common: argparse.ArgumentParser) -> None:
    examples = (
        "hubloader cache push --shared-cache s3://models/cache",
        "hubloader cache push ~/models/loras/inkwash.safetensors --shared-cache /mnt/shared/models",
    )
    push = add_command(actions, "push", run_push, "publish local models to the shared cache", examples, common)
    push.add_argument(
        "paths", metavar="PATHS", nargs="*", type=Path, help="files or folders (default: all model folders)"
    )
    add_host_options(push)
    add_shared_cache_option(push)


def _register_pull(actions: Commands, common: argparse.ArgumentParser) -> None:
    examples = (
        "hubloader cache pull workflow.lock.json --shared-cache s3://models/cache",
        "hubloader cache pull workflow.lock.json --comfyui ~/ComfyUI --json",
    )
    pull = add_command(actions, "pull", run_pull, "place a lockfile's models from the shared cache", examples, common)
    pull.add_argument("lockfile", metavar="LOCKFILE", help="a .lock.json written by `hubloader lock`")
    add_host_options(pull)
    add_shared_cache_option(pull)


def run(args: argparse.Namespace, out: Output) -> int:
    """Show the download cache, or set its limit (nothing is deleted: `cache cleanup` does, after a listing)."""
    from hubloader.registry import registry_state

    registry = open_registry()
    try:
        report = registry.set_cache_limit(args.limit) if args.limit is not False else None
        limit = registry.cache_limit_gb
        cached = [m for m in registry.list_cached_models() if registry_state(m).get("managed")]
    finally:
        registry.close()
    total = sum(m.size_bytes for m in cached)
    if out.json:
        out.record(
            {
                "limit_gb": limit,
                "count": len(cached),
                "size_bytes": total,
                "over_gb": _over_gb(report, limit) if report else 0.0,
                "deleted": [],
                "models": [library_record(m) for m in cached],
            }
        )
        return EXIT_OK
    if report is not None:
        out.line(f"Cache limit set to {'none' if limit is None else f'{limit:g} GB'}; nothing was deleted.")
        if _over_gb(report, limit) > 0:
            out.line(
                f"The cache is {_over_gb(report, limit):.2f} GB over it: `hubloader cache cleanup` lists the "
                f"{report.deleted_count} least recently used download(s) it would delete and asks first."
            )
    out.line(
        f"Cache: {len(cached)} download(s), {human_size(total)}; limit {'none' if limit is None else f'{limit:g} GB'}."
    )
    rows = [(m.name, m.type.value, human_size(m.size_bytes or None), str(m.local_path)) for m in cached]
    if rows:
        out.table(("NAME", "TYPE", "SIZE", "PATH"), rows, widths={0: 40})
    return EXIT_OK


# --- fleet: the site's shared cache (hubloader.sharedcache.cache) ----------------------------------------------------------------


def _shared_cache(args: argparse.Namespace) -> Any:
    """The shared cache in effect (--shared-cache, the environment, the setting, as ``get`` follows it); a usage
    error when none is named."""
    from hubloader.sharedcache.cache import ENV_URL, open_shared_cache, shared_cache_url

    url = shared_cache_url(args.shared_cache)
    if not url:
        raise UsageError(
            f"No shared cache named: pass --shared-cache URL, set {ENV_URL}, or save the shared_cache setting."
        )
    return open_shared_cache(url, fallback="fail")


def run_push(args: argparse.Namespace, out: Output) -> int:
    """Publish local model files (default: every model folder of the host) to the shared cache."""
    from hubloader.sharedcache.cache import push_paths

    cache = _shared_cache(args)
    folders = host_folders(args)
    paths = args.paths or folders.existing_dirs()
    pushed = push_paths(cache, paths)
    for path, sha256, new in pushed:
        if out.json:
            out.record({"path": str(path), "sha256": sha256, "new": new})
        else:
            out.line(f"{'pushed' if new else 'present'}  {short_hash(sha256)}  {path}")
    if not out.json:
        out.line(f"{sum(new for *_, new in pushed)} new, {sum(not new for *_, new in pushed)} already in {cache.url}.")
    return EXIT_OK


def run_pull(args: argparse.Namespace, out: Output) -> int:
    """Place a lockfile's models from the shared cache only; the origin is never asked."""
    from hubloader.workflows.lockfile import pull_lockfile

    report = pull_lockfile(existing_file(args.lockfile), host_folders(args), cache=_shared_cache(args))
    print_report(report, out, downloaded=True)
    return resolve_exit(report, download=True, out=out)


def run_cleanup(args: argparse.Namespace, out: Output) -> int:
    """List the least recently used downloads beyond the size given (default: the limit), then delete
    exactly those once confirmed (--yes, or an answer on a terminal)."""
    registry = open_registry()
    try:
        report = registry.cleanup_cache(keep_recent=args.keep_recent, max_size_gb=args.max_size_gb, dry_run=True)
        if not args.dry_run and report.deleted_models:
            if args.yes or _confirmed(report, out):
                listed = [_row_key(m) for m in report.deleted_models]
                report = registry.cleanup_cache(keep_recent=args.keep_recent, max_size_gb=args.max_size_gb, only=listed)
            else:
                return _declined(report, out)
    finally:
        registry.close()
    if out.json:
        out.record(_cleanup_record(report))
        return EXIT_OK
    _print_cleanup(report, out)
    return EXIT_ERROR if report.errors else EXIT_OK


def _row_key(meta: Any) -> str:
    """The row key a cleanup's ``only`` takes."""
    from hubloader.registry import registry_state

    return str(registry_state(meta)["key"])


def _confirmed(report: Any, out: Output) -> bool:
    """Show what would go and ask on the terminal; False (nothing asked) when stdin is not one."""
    if not sys.stdin.isatty():
        return False
    if not out.json:
        _print_cleanup(report, out)
    answer = input(f"Delete these {report.deleted_count} download(s), {report.freed_space_gb:.2f} GB? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _declined(report: Any, out: Output) -> int:
    """Nothing was deleted: say so (with the listing when it was not shown) and how to go ahead."""
    if out.json:
        out.record({**_cleanup_record(report), "deleted_count": 0, "deleted": [], "would_delete": _paths(report)})
        return EXIT_ERROR
    if not sys.stdin.isatty():
        _print_cleanup(report, out)
    out.warn("Nothing was deleted: confirm on a terminal, or pass --yes.")
    return EXIT_ERROR


def _cleanup_record(report: Any) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "deleted_count": report.deleted_count,
        "freed_space_gb": report.freed_space_gb,
        "total_size_gb": report.total_size_gb,
        "deleted": _paths(report),
        "kept": [m.model_id for m in report.kept_models],
        "errors": report.errors,
    }


def _paths(report: Any) -> list[dict[str, str]]:
    return [{"id": m.model_id, "path": str(m.local_path)} for m in report.deleted_models]


def _over_gb(report: CacheCleanupReport, limit: float | None) -> float:
    """How far the downloads (a dry run's deleted plus kept) are over ``limit``; 0 when under or no limit."""
    if limit is None:
        return 0.0
    return max(0.0, float(report.total_size_gb + report.freed_space_gb) - limit)


def _print_cleanup(report: Any, out: Output) -> None:
    """What a cleanup deleted (or would delete) and what it kept."""
    verb = "Would delete" if report.dry_run else "Deleted"
    for meta in report.deleted_models:
        out.line(f"  {verb.lower()} {meta.name} ({meta.local_path})")
    out.line(
        f"{verb} {report.deleted_count} model(s), {report.freed_space_gb:.2f} GB; "
        f"{len(report.kept_models)} kept, {report.total_size_gb:.2f} GB."
    )
    for error in report.errors:
        out.warn(error)
