"""The ``hubloader`` command line: search, get, library, resolve, lock and cache, over the hub layer.

Every command is a thin face: it parses arguments, calls the services/registry/resolver, and prints a
table (or JSON with ``--json``). Importing this module stays cheap (argparse and our light modules),
so ``hubloader --help`` is instant; services are imported inside the command that needs them.

Errors are one line on stderr (what failed, why, what to do: :class:`~hubloader.core.errors.HubloaderError`
messages carry the hint) and an exit code per error class, documented in :data:`EXIT_CODES_HELP`.
No traceback unless ``--verbose``; tokens never reach the output (messages are redacted once more).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubloader.core.errors import (
    AuthRequired,
    Cancelled,
    DiskFull,
    HubloaderError,
    IntegrityError,
    InvalidReference,
    NetworkError,
    NotFound,
    RateLimited,
    UnsafeFile,
)
from hubloader.core.metadata import BaseModel, ModelMetadata, ModelType, SortBy, Source
from hubloader.core.settings import civitai_token, hf_token, redact_text, redact_url
from hubloader.core.units import human_size
from hubloader.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.core.folders import ModelFolders
    from hubloader.registry import ModelRegistry
    from hubloader.workflows import ModelStatus, ResolutionReport

log = logging.getLogger("hubloader")

# --- exit codes ------------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_ERROR = 1  # any other failure (e.g. downloads disabled by the creator, a fetch that failed)
EXIT_USAGE = 2  # bad arguments, malformed reference, bad setting
EXIT_NOT_FOUND = 3  # no such model / file / revision; a workflow model nobody can resolve
EXIT_AUTH = 4  # a token is needed or was refused; gated repo; early access
EXIT_INTEGRITY = 5  # bytes that do not match their hash, HTML instead of a model, an unsafe file
EXIT_NETWORK = 6  # unreachable endpoint, timeouts, rate limited
EXIT_DISK_FULL = 7
EXIT_INTERRUPTED = 130  # Ctrl-C; partial downloads are kept and resume on the next run


class UsageError(HubloaderError):
    hint = "See `hubloader <command> --help`."


class MissingDependency(HubloaderError):
    """An optional extra (gradio for ``ui``) is not installed."""


# Checked along the exception's MRO, so the most specific class wins (a gated repo is AuthRequired;
# "not found, or private" is NotFound first).
_EXIT_BY_CLASS: dict[type[BaseException], int] = {
    UsageError: EXIT_USAGE,
    InvalidReference: EXIT_USAGE,
    NotFound: EXIT_NOT_FOUND,
    AuthRequired: EXIT_AUTH,
    IntegrityError: EXIT_INTEGRITY,
    UnsafeFile: EXIT_INTEGRITY,
    RateLimited: EXIT_NETWORK,
    NetworkError: EXIT_NETWORK,
    DiskFull: EXIT_DISK_FULL,
    Cancelled: EXIT_INTERRUPTED,
}

EXIT_CODES_HELP = """\
exit codes:
  0    success (for get: every file complete and verified)
  1    other error (e.g. a download that failed inside `resolve --download`)
  2    usage: bad arguments, malformed reference or setting
  3    not found: model, file, revision; unresolvable workflow models
  4    authentication: token missing or refused, gated repository, early access
  5    integrity or safety: wrong hash, HTML instead of a model, unsafe/pickle file
  6    network: endpoint unreachable, timeout, rate limited (rerun to resume)
  7    disk full
  130  interrupted (Ctrl-C); partial downloads are kept and resume on rerun
"""


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an exception (see :data:`EXIT_CODES_HELP`)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return EXIT_DISK_FULL
    for cls in type(exc).__mro__:
        if cls in _EXIT_BY_CLASS:
            return _EXIT_BY_CLASS[cls]
    return EXIT_ERROR


# --- output ------------------------------------------------------------------------------------------


class Output:
    """Where a command writes: tables or JSON lines on stdout, warnings and errors on stderr."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False, verbose: bool = False) -> None:
        self.json = json_mode
        self.quiet = quiet
        self.verbose = verbose

    def line(self, text: str = "") -> None:
        """Human output (suppressed by --quiet and --json)."""
        if not self.quiet and not self.json:
            print(text, flush=True)

    def record(self, data: Any) -> None:
        """One JSON document on one line (for --json)."""
        print(json.dumps(data, default=str, ensure_ascii=False), flush=True)

    def warn(self, text: str) -> None:
        print(f"hubloader: warning: {_redact(text)}", file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        print(f"hubloader: error: {_redact(text)}", file=sys.stderr, flush=True)

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, widths: dict[int, int] | None = None
    ) -> None:
        if self.quiet or self.json:
            return
        print(format_table(headers, rows, widths=widths), flush=True)

    def progress(self, desc: str) -> Callable[[Any], None] | None:
        """A tqdm bar for one file (drawn on stderr when it is a terminal), or None when quiet."""
        if self.quiet or self.json:
            return None
        from hubloader.engine.download import TqdmProgress

        return TqdmProgress(desc, disable=None, leave=True, dynamic_ncols=True)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, widths: dict[int, int] | None = None) -> str:
    """Plain aligned columns; ``widths`` caps some columns (index → max characters, cut with …)."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    for column, cap in (widths or {}).items():
        for row in cells[1:]:
            if len(row[column]) > cap:
                row[column] = row[column][: cap - 1] + "…"
    sizes = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(value + " " * (sizes[i] - _width(value)) for i, value in enumerate(row)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns a string takes in a terminal (CJK characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("\n", " ")


def _redact(text: str) -> str:
    """Belt and braces: our messages carry no tokens, but nothing printed may ever show one."""
    return redact_text(str(text), hf_token(), civitai_token())


# --- argument types ----------------------------------------------------------------------------------

_BASE_ALIASES = {"flux": BaseModel.FLUX1, "sd1": BaseModel.SD15, "sd1.5": BaseModel.SD15, "sd3.5": BaseModel.SD35}
_SOURCE_ALIASES = {"hf": Source.HUGGINGFACE, "huggingface": Source.HUGGINGFACE, "civitai": Source.CIVITAI}


def _model_type(text: str) -> ModelType:
    try:
        return ModelType.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown type {text!r}; use one of: {', '.join(dict.fromkeys(t.value for t in ModelType))}"
        ) from None


def _base_model(text: str) -> BaseModel:
    if text.strip().lower() in _BASE_ALIASES:
        return _BASE_ALIASES[text.strip().lower()]
    try:
        return BaseModel.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown base {text!r}; use one of: {', '.join(b.value for b in BaseModel)}, flux"
        ) from None


def _source(text: str) -> Source:
    try:
        return _SOURCE_ALIASES.get(text.strip().lower()) or Source.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown source {text!r}; use hf, civitai, local or url") from None


def _limit_gb(text: str) -> float | None:
    if text.strip().lower() in ("none", "off", "unlimited"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GB (or 'none')") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the limit must be >= 0 GB")
    return value


# --- helpers shared by commands ------------------------------------------------------------------------


def host_folders(args: argparse.Namespace) -> ModelFolders:
    """The model folders the user pointed at: --comfyui, --a1111, --models-dir, else the configured default."""
    from hubloader.core.folders import a1111_install, comfyui_install, models_root, standalone_folders

    if getattr(args, "comfyui", None):
        return comfyui_install(args.comfyui)
    if getattr(args, "a1111", None):
        return a1111_install(args.a1111)
    return standalone_folders(getattr(args, "models_dir", None) or models_root())


def open_registry() -> ModelRegistry:
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


def _short(sha256: str) -> str:
    return sha256[:12] if sha256 else "-"


def _rating(meta: ModelMetadata) -> str:
    if meta.rating:
        return f"{meta.rating:.1f}"
    return f"{meta.like_count} likes" if meta.like_count else "-"


# --- search ----------------------------------------------------------------------------------------------

SEARCH_SOURCES = {
    "hf": (Source.HUGGINGFACE,),
    "civitai": (Source.CIVITAI,),
    "all": (Source.HUGGINGFACE, Source.CIVITAI),
}


def cmd_search(args: argparse.Namespace, out: Output) -> int:
    """Search the hubs; a failing source is a warning while another one answers."""
    sources = SEARCH_SOURCES[args.source]
    sort = SortBy.parse(args.sort) if args.sort else None
    with open_registry() as registry:
        results = registry.search(
            args.query, sources, args.type, args.base, limit=args.limit, remote_only=True, sort=sort
        )
    if len(results.failures) == len(sources):
        raise next(iter(results.failures.values()))
    for warning in results.warnings:
        out.warn(warning)
    if out.json:
        for meta in results:
            out.record(_search_record(meta))
        return EXIT_OK
    if not results:
        out.line("No models found.")
        return EXIT_OK
    rows = [
        (
            m.name,
            "hf" if m.source is Source.HUGGINGFACE else str(m.source),
            m.model_id,
            m.type.value,
            m.base_model.value,
            human_size(m.size_bytes or None),
            m.download_count or "-",
            _rating(m),
        )
        for m in results
    ]
    out.table(("NAME", "SOURCE", "ID", "TYPE", "BASE", "SIZE", "DOWNLOADS", "RATING"), rows, widths={0: 40, 2: 48})
    return EXIT_OK


def _search_record(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "name": meta.name,
        "source": meta.source.value,
        "id": meta.model_id,
        "type": meta.type.value,
        "base": meta.base_model.value,
        "size_bytes": meta.size_bytes,
        "downloads": meta.download_count,
        "rating": meta.rating,
        "likes": meta.like_count,
        "air": meta.air,
        "url": redact_url(meta.remote_url) if meta.remote_url else "",
    }


# --- get -----------------------------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace, out: Output) -> int:
    """Download what REF names into the host's folder, verified; describe it, write sidecars, register it."""
    from hubloader.pipeline import fetch, record

    placed = fetch(
        args.ref,
        Path(args.to).expanduser() if args.to else host_folders(args),
        kind=args.type,
        revision=args.revision,
        allow_pickle=True if args.allow_pickle else None,  # else the allow_pickle setting
        progress=out.progress(args.ref),
        shared_cache=args.shared_cache,
    )
    with open_registry() as registry:
        meta = record(placed, registry, model_type=args.type)
    path, reused = placed.path, placed.reused
    if out.json:
        out.record(
            {
                "path": str(path),
                "name": meta.name,
                "id": meta.model_id,
                "source": meta.source.value,
                "type": meta.type.value,
                "base": meta.base_model.value,
                "size_bytes": meta.size_bytes,
                "sha256": meta.sha256,
                "reused": reused,
                "verified": bool(meta.sha256),
                "trigger_words": meta.trigger_words,
                "recommended_weight": meta.recommended_weight,
            }
        )
        return EXIT_OK
    verb = "Already present" if reused else "Saved"
    if path.is_dir():
        out.line(f"{verb}: {path} (a diffusers folder in the HuggingFace cache)")
    else:
        out.line(f"{verb}: {path} ({human_size(meta.size_bytes or None)}, SHA256 {_short(meta.sha256)} verified)")
    if meta.trigger_words:
        out.line(f"  trigger words: {', '.join(meta.trigger_words)}")
    return EXIT_OK


# --- library: list, info, scan ----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, out: Output) -> int:
    from hubloader.registry import registry_state

    registry = open_registry()
    try:
        models = registry.list_models(source=args.source, model_type=args.type)
    finally:
        registry.close()
    if args.missing:
        models = [m for m in models if registry_state(m).get("status") == "missing"]
    if out.json:
        for meta in models:
            out.record(_library_record(meta))
        return EXIT_OK
    if not models:
        out.line("No models registered." if not args.missing else "No missing models.")
        return EXIT_OK
    rows = [
        (
            m.name,
            str(m.source),
            m.type.value,
            m.base_model.value,
            human_size(m.size_bytes or None),
            registry_state(m).get("status", ""),
            str(m.local_path or "-"),
        )
        for m in models
    ]
    out.table(("NAME", "SOURCE", "TYPE", "BASE", "SIZE", "STATUS", "PATH"), rows, widths={0: 40})
    return EXIT_OK


def _library_record(meta: ModelMetadata) -> dict[str, Any]:
    from hubloader.registry import registry_state

    state = registry_state(meta)
    return {
        "name": meta.name,
        "id": meta.model_id,
        "source": meta.source.value,
        "type": meta.type.value,
        "base": meta.base_model.value,
        "size_bytes": meta.size_bytes,
        "sha256": meta.sha256,
        "status": state.get("status", ""),
        "pinned": bool(state.get("pinned")),
        "path": str(meta.local_path) if meta.local_path else None,
    }


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    """A registered model by name, id, path or hash; else what its source says about a reference."""
    registry = open_registry()
    try:
        meta = registry.find_model(args.model)
        if meta is None and Path(args.model).expanduser().is_file():
            meta = registry.find_model(f"local:{Path(args.model).expanduser().absolute()}")
    finally:
        registry.close()
    if meta is None:
        meta = _remote_info(args.model)
    if out.json:
        out.record(meta.to_dict())
        return EXIT_OK
    for label, value in _info_lines(meta):
        out.line(f"{label + ':':<16} {value}")
    return EXIT_OK


def _remote_info(text: str) -> ModelMetadata:
    from hubloader.sources.references import HUGGINGFACE, parse_reference

    try:
        ref = parse_reference(text)
    except InvalidReference:
        raise NotFound(
            f"No model {text!r} in the registry.",
            hint="See `hubloader list`, or give a source reference (owner/repo, civitai:ID, a URL or a hash).",
        ) from None
    if ref.kind == HUGGINGFACE:
        from hubloader.sources.huggingface import HuggingFaceHubService

        return HuggingFaceHubService().model_info(str(ref))
    from hubloader.sources.civitai import CivitAIService

    return CivitAIService().lookup(ref)


def _info_lines(meta: ModelMetadata) -> list[tuple[str, str]]:
    from hubloader.registry import registry_state

    state = registry_state(meta)
    lines = [
        ("Name", meta.name),
        ("Id", meta.model_id),
        ("Source", meta.source.value),
        ("Type", meta.type.value),
        (
            "Base model",
            meta.base_model.value + (f" (from {meta.extra['base_source']})" if meta.extra.get("base_source") else ""),
        ),
        ("Version", meta.version or "-"),
        ("Format", meta.format.value),
        ("Size", human_size(meta.size_bytes or None)),
        ("SHA256", meta.sha256 or "-"),
    ]
    other_hashes = {k: v for k, v in meta.hashes.items() if k.upper() != "SHA256" and v}
    if other_hashes:
        lines.append(("Hashes", ", ".join(f"{k} {v}" for k, v in sorted(other_hashes.items()))))
    if meta.air:
        lines.append(("AIR", meta.air))
    words = ", ".join(meta.trigger_words) if meta.trigger_words else "-"
    lines.append(
        ("Trigger words", words + (f" (from {meta.trigger_words_source})" if meta.trigger_words_source else ""))
    )
    weight = f"{meta.recommended_weight:g}" if meta.recommended_weight is not None else "-"
    if meta.extra.get("recommended_weight_range"):
        weight += f" (range {meta.extra['recommended_weight_range']})"
    lines.append(
        ("Weight", weight + (f" (from {meta.recommended_weight_source})" if meta.recommended_weight_source else ""))
    )
    if meta.training_tags:
        lines.append(("Training tags", ", ".join(meta.training_tags)))
    if meta.tags:
        lines.append(("Tags", ", ".join(meta.tags[:15])))
    if meta.author:
        lines.append(("Author", meta.author))
    lines.append(("Downloads", str(meta.download_count)))
    lines.append(("Rating", _rating(meta)))
    if state:
        lines.append(("Status", state.get("status", "") + (", pinned" if state.get("pinned") else "")))
    lines.append(("Local path", str(meta.local_path) if meta.local_path else "-"))
    if meta.remote_url:
        lines.append(("Remote URL", redact_url(meta.remote_url)))
    if meta.extra.get("page_url"):
        lines.append(("Page", str(meta.extra["page_url"])))
    if meta.description:
        text = " ".join(meta.description.split())
        lines.append(("Description", text if len(text) <= 200 else text[:199] + "…"))
    return lines


def cmd_scan(args: argparse.Namespace, out: Output) -> int:
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
        out.line(f"  duplicate {_short(sha)}: {', '.join(str(p) for p in paths)}")
    if enriched is not None:
        out.line(f"Hashed {enriched.hashed} file(s); {enriched.matched} identified on CivitAI.")
        for error in enriched.errors:
            out.warn(error)
    return EXIT_OK


# --- workflows: resolve, lock ----------------------------------------------------------------------------------------


def cmd_resolve(args: argparse.Namespace, out: Output) -> int:
    """A workflow, image, infotext or lockfile → what is present, what can be fetched, what cannot."""
    from hubloader.workflows import Resolver
    from hubloader.workflows.lockfile import resolve_lockfile

    path = _existing_file(args.file)
    resolver = Resolver(host_folders(args), shared_cache=args.shared_cache)
    if _is_lockfile(path):
        report = resolve_lockfile(path, download=False, resolver=resolver)
    else:
        report = resolver.resolve(str(path))
    if args.download:
        bars = _ItemBars(out)
        with cancel_on_sigint() as cancel:
            resolver.fetch(report, progress=bars, cancel=cancel)
        bars.close()
        if cancel.is_set():
            raise KeyboardInterrupt
    _print_report(report, out, downloaded=args.download)
    return _resolve_exit(report, download=args.download, out=out)


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise NotFound(
            f"{path} does not exist or is not a file.", hint="Give a workflow .json, an image or a lockfile."
        )
    return path


def _is_lockfile(path: Path) -> bool:
    from hubloader.workflows.lockfile import SUFFIX

    if path.name.endswith(SUFFIX):
        return True
    if path.suffix.lower() != ".json":
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "lockfile_version" in data


class _ItemBars:
    """One tqdm bar per model being fetched (the resolver reports ``(item, DownloadProgress)`` from threads)."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.bars: dict[int, Callable[[Any], None] | None] = {}
        self.lock = threading.Lock()

    def __call__(self, item: ModelStatus, event: Any) -> None:
        with self.lock:
            if id(item) not in self.bars:
                self.bars[id(item)] = self.out.progress(item.reference.file_name)
            bar = self.bars[id(item)]
        if bar is not None:
            bar(event)

    def close(self) -> None:
        for bar in self.bars.values():
            if bar is not None and getattr(bar, "bar", None) is not None:
                bar.bar.close()  # type: ignore[attr-defined]


def _print_report(report: ResolutionReport, out: Output, *, downloaded: bool) -> None:
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


def _resolve_exit(report: ResolutionReport, *, download: bool, out: Output) -> int:
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


def cmd_lock(args: argparse.Namespace, out: Output) -> int:
    from hubloader.workflows.lockfile import lock, lockfile_path

    path = _existing_file(args.file)
    locked = lock(str(path), host_folders(args), download=args.download)
    target = locked.save(args.output or lockfile_path(path))
    if out.json:
        out.record({"lockfile": str(target), **locked.to_dict()})
        return _lock_exit(locked, target, out)
    out.line(f"Wrote {target} ({len(locked.models)} model(s)).")
    rows = [
        (m.kind, m.name, human_size(m.size or None), _short(m.sha256), redact_url(m.url) if m.url else m.air)
        for m in locked.models
    ]
    if rows:
        out.table(("KIND", "MODEL", "SIZE", "SHA256", "SOURCE"), rows, widths={1: 50, 4: 80})
    return _lock_exit(locked, target, out)


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


# --- cache ----------------------------------------------------------------------------------------------------------


def cmd_cache(args: argparse.Namespace, out: Output) -> int:
    """Show the download cache, or set its limit (applied at once, least recently used first)."""
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
                "deleted": [m.model_id for m in report.deleted_models] if report else [],
                "models": [_library_record(m) for m in cached],
            }
        )
        return EXIT_OK
    if report is not None:
        out.line(f"Cache limit set to {'none' if limit is None else f'{limit:g} GB'}.")
        _print_cleanup(report, out)
    out.line(
        f"Cache: {len(cached)} download(s), {human_size(total)}; limit {'none' if limit is None else f'{limit:g} GB'}."
    )
    rows = [(m.name, m.type.value, human_size(m.size_bytes or None), str(m.local_path)) for m in cached]
    if rows:
        out.table(("NAME", "TYPE", "SIZE", "PATH"), rows, widths={0: 40})
    return EXIT_OK


# --- fleet: the site's shared cache (hubloader.sharedcache.cache) ----------------------------------------------------------------


def _shared_cache(args: argparse.Namespace) -> Any:
    from hubloader.sharedcache.cache import ENV_URL, open_shared_cache

    url = args.shared_cache or os.environ.get(ENV_URL)
    if not url:
        raise UsageError(f"No shared cache named: pass --shared-cache URL or set {ENV_URL}.")
    return open_shared_cache(url, fallback="fail")


def cmd_cache_push(args: argparse.Namespace, out: Output) -> int:
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
            out.line(f"{'pushed' if new else 'present'}  {_short(sha256)}  {path}")
    if not out.json:
        out.line(f"{sum(new for *_, new in pushed)} new, {sum(not new for *_, new in pushed)} already in {cache.url}.")
    return EXIT_OK


def cmd_cache_pull(args: argparse.Namespace, out: Output) -> int:
    """Place a lockfile's models from the shared cache only; the origin is never asked."""
    from hubloader.workflows.lockfile import pull_lockfile

    report = pull_lockfile(_existing_file(args.lockfile), host_folders(args), cache=_shared_cache(args))
    _print_report(report, out, downloaded=True)
    return _resolve_exit(report, download=True, out=out)


def _add_shared_cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shared-cache",
        metavar="URL",
        default=None,
        help="a site-wide cache: s3://bucket/prefix or a shared folder (default: $HUBLOADER_SHARED_CACHE)",
    )


def cmd_cache_cleanup(args: argparse.Namespace, out: Output) -> int:
    registry = open_registry()
    try:
        report = registry.cleanup_cache(
            keep_recent=args.keep_recent, max_size_gb=args.max_size_gb, dry_run=args.dry_run
        )
    finally:
        registry.close()
    if out.json:
        out.record(
            {
                "dry_run": report.dry_run,
                "deleted_count": report.deleted_count,
                "freed_space_gb": report.freed_space_gb,
                "total_size_gb": report.total_size_gb,
                "deleted": [{"id": m.model_id, "path": str(m.local_path)} for m in report.deleted_models],
                "kept": [m.model_id for m in report.kept_models],
                "errors": report.errors,
            }
        )
        return EXIT_OK
    _print_cleanup(report, out)
    return EXIT_ERROR if report.errors else EXIT_OK


def _print_cleanup(report: Any, out: Output) -> None:
    verb = "Would delete" if report.dry_run else "Deleted"
    for meta in report.deleted_models:
        out.line(f"  {verb.lower()} {meta.name} ({meta.local_path})")
    out.line(
        f"{verb} {report.deleted_count} model(s), {report.freed_space_gb:.2f} GB; "
        f"{len(report.kept_models)} kept, {report.total_size_gb:.2f} GB."
    )
    for error in report.errors:
        out.warn(error)


# --- login, ui --------------------------------------------------------------------------------------------------------

_LOGIN = {
    "hf": ("hf_token", "HuggingFace", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")),
    "civitai": ("civitai_token", "CivitAI", ("CIVITAI_API_TOKEN", "CIVITAI_API_KEY")),
}


def cmd_login(args: argparse.Namespace, out: Output) -> int:
    """Store a token in the settings file (0600). Read without echo from a terminal, else from stdin."""
    from hubloader.core.settings import Secret, save_settings

    key, label, env_names = _LOGIN[args.service]
    if sys.stdin.isatty():
        import getpass

        text = getpass.getpass(f"{label} token (input hidden): ")
    else:
        text = sys.stdin.readline()
    token = text.strip()
    if not token:
        raise UsageError(
            f"No {label} token was given.",
            hint=f'Paste it when asked, or pipe it in: `printf %s "$TOKEN" | hubloader login {args.service}`.',
        )
    path = save_settings({key: Secret(token)})
    out.line(f"Saved the {label} token to {path} (readable only by you).")
    shadowing = [name for name in env_names if os.environ.get(name)]
    if shadowing:
        out.warn(f"{shadowing[0]} is set in the environment and is used instead of the saved token.")
    if out.json:
        out.record({"service": args.service, "saved_to": str(path)})
    return EXIT_OK


def cmd_ui(args: argparse.Namespace, out: Output) -> int:
    """Start the Gradio app (the same one the A1111 tab shows)."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise MissingDependency(
            "The web UI needs gradio, which is not installed.", hint="Install it with: pip install 'hubloader[ui]'"
        )
    from hubloader.faces import app as ui

    folders = host_folders(args)
    ui.launch(folders=folders, host=args.host, port=args.port, share=args.share)
    return EXIT_OK


# --- the parser -------------------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (plus where to look), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _output_options() -> argparse.ArgumentParser:
    """--json/--quiet/--verbose, accepted before or after the command (SUPPRESS keeps the global value)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("output")
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON output")
    group.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or chatter"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log details; tracebacks on errors"
    )
    return common


def _add_host_options(parser: argparse.ArgumentParser, *, with_to: bool = False) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    common = _output_options()
    parser = _Parser(
        prog="hubloader",
        description="Find, download, verify and index diffusion models from HuggingFace and CivitAI.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.set_defaults(func=None)
    parser.add_argument("--version", action="version", version=f"hubloader {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, func: Callable[[argparse.Namespace, Output], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[common])
        sub.set_defaults(func=func)
        return sub

    search = command("search", cmd_search, "search HuggingFace and/or CivitAI")
    search.add_argument("query", metavar="QUERY", nargs="?", default="")
    search.add_argument("--source", choices=sorted(SEARCH_SOURCES), default="all")
    search.add_argument("--type", type=_model_type, help="lora, checkpoint, vae, embedding, controlnet …")
    search.add_argument("--base", type=_base_model, help="sd15, sdxl, pony, illustrious, flux …")
    search.add_argument("--sort", choices=["popular", "rating", "newest", "likes"], default=None)
    search.add_argument("--limit", type=int, default=20, metavar="N")

    get = command("get", cmd_get, "download a model into the right folder, verified and registered")
    get.add_argument(
        "ref",
        metavar="REF",
        help="owner/repo[/file], a HuggingFace or CivitAI URL, civitai:MODEL[@VERSION], an AIR, or a hash",
    )
    get.add_argument("--revision", metavar="R", help="HuggingFace branch/tag/commit, or a CivitAI version id")
    get.add_argument("--type", type=_model_type, help="override the model type (decides the folder)")
    get.add_argument("--allow-pickle", action="store_true", help="allow .ckpt/.pt/.bin files (they can run code)")
    _add_host_options(get, with_to=True)
    _add_shared_cache_option(get)

    listing = command("list", cmd_list, "list the models in the registry")
    listing.add_argument("--source", type=_source)
    listing.add_argument("--type", type=_model_type)
    listing.add_argument("--missing", action="store_true", help="only registered models whose file is gone")

    info = command("info", cmd_info, "everything known about a model (trigger words and weight with their sources)")
    info.add_argument("model", metavar="NAME|ID|HASH")

    scan = command("scan", cmd_scan, "index the model files in folders (default: the host's model folders)")
    scan.add_argument("dirs", metavar="DIRS", nargs="*")
    scan.add_argument("--hash", action="store_true", help="also hash new files and identify them on CivitAI")
    scan.add_argument("--offline", action="store_true", help="with --hash: do not ask CivitAI")
    _add_host_options(scan)

    resolve = command("resolve", cmd_resolve, "find a workflow's/image's/lockfile's models: found, missing, resolvable")
    resolve.add_argument("file", metavar="FILE", help="workflow .json, PNG/WebP image, infotext .txt or .lock.json")
    resolve.add_argument("--download", action="store_true", help="fetch the resolved models, verified")
    _add_host_options(resolve)
    _add_shared_cache_option(resolve)

    lock = command("lock", cmd_lock, "write FILE.lock.json: every model's folder, name, size, SHA256 and source")
    lock.add_argument("file", metavar="FILE")
    lock.add_argument("-o", "--output", type=Path, metavar="PATH", help="where to write (default: <stem>.lock.json)")
    lock.add_argument("--download", action="store_true", help="fetch missing models first")
    _add_host_options(lock)

    cache = command("cache", cmd_cache, "show the download cache or set its size limit")
    cache.add_argument("--limit", type=_limit_gb, default=False, metavar="GB", help="set the limit ('none' removes it)")
    cache_commands = cache.add_subparsers(title="cache commands", metavar="ACTION", parser_class=_Parser)
    cleanup = cache_commands.add_parser(
        "cleanup",
        help="delete least recently used downloads",
        description="delete least recently used downloads",
        parents=[common],
    )
    cleanup.set_defaults(func=cmd_cache_cleanup)
    cleanup.add_argument("--keep-recent", type=int, default=10, metavar="N", help="keep the N most recently used (10)")
    cleanup.add_argument("--max-size-gb", type=float, default=50.0, metavar="G", help="then shrink to G GB (50)")
    cleanup.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    push = cache_commands.add_parser(
        "push", help="publish local models to the shared cache", description=cmd_cache_push.__doc__, parents=[common]
    )
    push.set_defaults(func=cmd_cache_push)
    push.add_argument(
        "paths", metavar="PATHS", nargs="*", type=Path, help="files or folders (default: all model folders)"
    )
    _add_host_options(push)
    _add_shared_cache_option(push)
    pull = cache_commands.add_parser(
        "pull",
        help="place a lockfile's models from the shared cache",
        description=cmd_cache_pull.__doc__,
        parents=[common],
    )
    pull.set_defaults(func=cmd_cache_pull)
    pull.add_argument("lockfile", metavar="LOCKFILE")
    _add_host_options(pull)
    _add_shared_cache_option(pull)

    login = command("login", cmd_login, "store a HuggingFace or CivitAI token (read without echo)")
    login.add_argument("service", choices=sorted(_LOGIN))

    ui = command("ui", cmd_ui, "start the web UI (needs pip install 'hubloader[ui]')")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=7860)
    ui.add_argument("--share", action="store_true", help="a public Gradio link")
    _add_host_options(ui)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "hubloader: %(levelname)s: %(message)s"
            if not args.verbose
            else "%(asctime)s %(name)s %(levelname)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if not args.verbose else logging.INFO)
    log.setLevel(level)
    if args.quiet or args.json:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("json", "quiet", "verbose"):  # SUPPRESS defaults: absent unless given before or after the command
        setattr(args, name, getattr(args, name, False))
    if args.func is None:
        parser.print_help()
        return EXIT_USAGE
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
            log.exception("%s failed", args.func.__name__.removeprefix("cmd_"))
        out.error(_one_line(exc))
        return exit_code_for(exc)
    except Exception as exc:  # a bug: still one line, the traceback with --verbose
        if args.verbose:
            log.exception("unexpected error")
        out.error(f"unexpected {type(exc).__name__}: {_one_line(exc)} (run with --verbose for details and report it)")
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, HubloaderError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}."
    return " ".join(str(exc).split())
