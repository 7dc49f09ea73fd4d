"""``hubloader resolve FILE``: a workflow's, image's, infotext's or lockfile's models, found or fetchable."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubloader.core.settings import redact_url
from hubloader.core.units import human_size
from hubloader.faces.cli.options import (
    Commands,
    add_command,
    add_host_options,
    add_shared_cache_option,
    cancel_on_sigint,
    existing_file,
    host_folders,
)
from hubloader.faces.cli.output import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, Output

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.workflows import ModelStatus, ResolutionReport

EXAMPLES = (
    "hubloader resolve workflow.json",
    "hubloader resolve image.png --comfyui ~/ComfyUI --download",
    "hubloader resolve workflow.lock.json --download --shared-cache s3://models/cache",
    "hubloader resolve infotext.txt --json",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``resolve`` to the command line."""
    resolve = add_command(
        commands,
        "resolve",
        run,
        "find a workflow's/image's/lockfile's models: found, missing, resolvable",
        EXAMPLES,
        common,
    )
    resolve.add_argument("file", metavar="FILE", help="workflow .json, PNG/WebP image, infotext .txt or .lock.json")
    resolve.add_argument("--download", action="store_true", help="fetch the resolved models, verified")
    resolve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="with --download: fetch from HOST (host or host:port), not HuggingFace, CivitAI or a configured host, "
        "the files the workflow gives a SHA256 for (repeatable; on a terminal you are asked instead)",
    )
    add_host_options(resolve)
    add_shared_cache_option(resolve)


def run(args: argparse.Namespace, out: Output) -> int:
    """A workflow, image, infotext or lockfile → what is present, what can be fetched, what cannot."""
    from hubloader.workflows import Resolver
    from hubloader.workflows.lockfile import is_lockfile, resolve_lockfile

    path = existing_file(args.file)
    resolver = Resolver(host_folders(args), shared_cache=args.shared_cache)
    if is_lockfile(path):
        report = resolve_lockfile(path, download=False, resolver=resolver)
    else:
        report = resolver.resolve(str(path))
    if args.download:
        _show_plan(resolver, path, out)
        resolver.confirmed_hosts = _confirm_hosts(report, args.allow_host, out)
        bars = _ItemBars(out, report)
        try:
            with cancel_on_sigint() as cancel:
                resolver.fetch(report, progress=bars, cancel=cancel)
        finally:
            bars.close()
        if cancel.is_set():
            raise KeyboardInterrupt
    print_report(report, out, downloaded=args.download)
    return resolve_exit(report, download=args.download, out=out)


def _show_plan(resolver: Any, path: Path, out: Output) -> None:
    """Before fetching: what the fetch will take (sizes, needs, disk space), as ``hubloader plan`` prints it.

    On stderr, beside the progress: stdout keeps only the result table, as it does without ``--download``."""
    if out.json or out.quiet:
        return
    from hubloader.faces.cli.plan import print_plan
    from hubloader.workflows.plan import Planner

    with contextlib.redirect_stdout(sys.stderr):
        print_plan(Planner(resolver).plan(str(path)), out)
        out.line("Fetching what can be fetched…")


def _confirm_hosts(report: ResolutionReport, allowed: list[str], out: Output) -> frozenset[str]:
    """The hosts outside the known ones this user confirms: ``--allow-host``, else asked on a terminal, one
    model at a time. A model without a published SHA256 is never asked about (the gate refuses it anyway)."""
    from hubloader.workflows.download import hosts_to_confirm

    confirmed = {h.strip().lower() for h in allowed if h.strip()}
    for question in hosts_to_confirm(report):
        name = question.item.reference.name
        if not question.sha256 or question.host in confirmed:
            continue
        if not sys.stdin.isatty():
            if not out.json:
                out.line(
                    f"{name} is on {question.host}: pass --allow-host {question.host} to fetch it (SHA256 checked)."
                )
            continue
        answer = input(f"Download {name} from host {question.host} (sha256 {question.sha256})? [y/N] ")
        if answer.strip().lower() in ("y", "yes"):
            confirmed.add(question.host)
    return frozenset(confirmed)


class _ItemBars:
    """One bar per model being fetched plus an overall bar (plain lines off a terminal); the resolver reports
    ``(item, DownloadProgress)`` from its threads. Closed before the report table is printed."""

    def __init__(self, out: Output, report: ResolutionReport) -> None:
        from hubloader.faces.cli.progress import Progress
        from hubloader.workflows import Status

        todo = report.by_status(Status.RESOLVED)
        total = sum(item.size_bytes or (item.chosen.size_bytes if item.chosen else 0) for item in todo)
        self.progress = None if out.quiet or out.json else Progress(len(todo), total)
        self.bars: dict[int, Callable[[Any], None]] = {}
        self.lock = threading.Lock()

    def __call__(self, item: ModelStatus, event: Any) -> None:
        if self.progress is None:
            return
        with self.lock:
            if id(item) not in self.bars:
                self.bars[id(item)] = self.progress.file(item.reference.file_name)
            bar = self.bars[id(item)]
        bar(event)

    def close(self) -> None:
        """Close every bar drawn."""
        if self.progress is not None:
            self.progress.close()


def print_report(report: ResolutionReport, out: Output, *, downloaded: bool) -> None:
    """One row per model of the report, then the counts (or the report as JSON)."""
    from hubloader.workflows import Status

    if out.json:
        out.record(report.to_dict())
        return
    rows = []
    for item in report.items:
        ref, chosen = item.reference, item.chosen
        if item.status in (Status.FOUND, Status.FETCHED):
            detail = str(item.path)
        elif item.status is Status.FOUND_ELSEWHERE:
            detail = f"use {item.use_as!r} ({item.path})"
        elif item.status is Status.FOUND_BY_HASH:
            detail = f"same hash: {item.path}" + (f", use {item.use_as!r}" if item.use_as else "")
        elif item.status is Status.RESOLVED and chosen is not None:
            detail = f"{chosen.source}: {redact_url(chosen.url)} ({human_size(item.size_bytes or chosen.size_bytes or None)})"
        else:
            detail = item.reason
        rows.append((item.status.value, ref.kind or "?", ref.name, detail))
    if not rows:
        out.line("The file names no models.")
        return
    out.table(("STATUS", "KIND", "MODEL", "DETAIL"), rows, widths={2: 50, 3: 100})
    counts = {k: v for k, v in report.counts().items() if v}
    out.line(f"{len(report.items)} model(s): " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    if not downloaded and report.by_status(Status.RESOLVED):
        out.line("Run again with --download to fetch the resolved ones.")


def resolve_exit(report: ResolutionReport, *, download: bool, out: Output) -> int:
    """The exit code of a report: 1 when a fetch failed, 3 when a model has no source, else 0."""
    from hubloader.workflows import Status

    failed = report.by_status(Status.FAILED)
    unresolved = report.by_status(Status.UNRESOLVED)
    if failed:
        out.error(f"{len(failed)} model(s) could not be fetched: {failed[0].reference.name}: {failed[0].reason}")
        return EXIT_ERROR
    if unresolved:
        out.error(
            f"{len(unresolved)} model(s) have no source: {unresolved[0].reference.name} ({unresolved[0].reason}). "
            "Find them by hand, or ask the workflow's author for links."
        )
        return EXIT_NOT_FOUND
    return EXIT_OK
