"""The Model Hub's state and handlers, as plain methods over the hub layer, without gradio.

The Gradio layout (:mod:`hubloader.faces.app`) wires them to components; tests and other faces drive them
without a browser. Errors reach the page phrased for this app (:func:`message`).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hubloader import pipeline as place
from hubloader.core import settings as config
from hubloader.core.errors import ConfigError, HubloaderError, InvalidReference, NotFound
from hubloader.core.folders import ModelFolders, active_folders, kind_of
from hubloader.core.metadata import BaseModel, ModelFile, ModelMetadata, ModelType, SortBy, Source
from hubloader.core.units import human_size
from hubloader.faces.advice import GRADIO, explain
from hubloader.faces.jobs import FINISHED, JobManager
from hubloader.pipeline import Placed
from hubloader.sharedcache.cache import check_shared_cache, shared_cache_status
from hubloader.workflows.fetching import fetch_resolved

log = logging.getLogger(__name__)

ANY = "Any"


#: ``() -> None | reason``: why write actions (downloads, settings, deletions) are refused right now.
WriteGuard = Callable[[], "str | None"]
#: Called after a file lands: ``(folder kind, path)``; the A1111 glue refreshes its model lists here.
OnDownloaded = Callable[[str, Path], None]


def message(exc: Exception) -> str:
    """The error as the app shows it: what happened, then what to do in this app."""
    return config.redact_text(explain(exc, GRADIO))


def folder_kind(meta: ModelMetadata) -> str:
    return kind_of(meta.type)


def weight_files(meta: ModelMetadata) -> list[ModelFile]:
    """The files of a result a user would download: model weights, primary first."""
    from hubloader.core.metadata import MODEL_EXTENSIONS

    files = [f for f in meta.files if Path(f.name).suffix.lower() in MODEL_EXTENSIONS]
    return sorted(files, key=lambda f: (not f.primary, not f.name.endswith(".safetensors"), f.name))


class ModelHub:
    """State and handlers of one Model Hub app: its folders, its download queue, the host's hooks."""

    def __init__(
        self,
        folders: ModelFolders | None = None,
        *,
        jobs: JobManager | None = None,
        write_guard: WriteGuard | None = None,
        on_downloaded: OnDownloaded | None = None,
        host: str = "standalone",
    ) -> None:
        self.folders = folders if folders is not None else active_folders()
        self.jobs = jobs if jobs is not None else JobManager(max_workers=2, face=GRADIO)
        self.write_guard = write_guard
        self.on_downloaded = on_downloaded
        self.host = host
        self._cleanup_listed: list[str] | None = None  # row keys the last cleanup preview showed
        self._roots: list[Path] | None = None  # this app's folders, resolved (see _in_host)
        #: The trigger words of the models the last library listing showed, by path (the rows join them).
        self.library_triggers: dict[str, list[str]] = {}

    def refused(self) -> str | None:
        return self.write_guard() if self.write_guard is not None else None

    def _check_writes(self) -> None:
        reason = self.refused()
        if reason:
            raise ConfigError(reason)

    # -- search -----------------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        source: str = "Both",
        model_type: str = ANY,
        base: str = ANY,
        sort: str = SortBy.POPULARITY.value,
        nsfw: bool = False,
        limit: int = 24,
    ) -> tuple[list[ModelMetadata], list[str]]:
        """Both sources at once; one that fails becomes a warning while the other answers."""
        from hubloader.registry import ModelRegistry

        sources = {"HuggingFace": [Source.HUGGINGFACE], "CivitAI": [Source.CIVITAI]}.get(
            source, [Source.CIVITAI, Source.HUGGINGFACE]
        )
        with ModelRegistry() as registry:
            results = registry.search(
                query or None,
                sources,
                ModelType.parse(model_type) if model_type and model_type != ANY else None,
                BaseModel.parse(base) if base and base != ANY else None,
                limit=limit,
                remote_only=True,
                sort=SortBy.parse(sort or SortBy.POPULARITY.value),
                nsfw=nsfw,
            )
        return list(results), results.warnings

    # -- details ----------------------------------------------------------------------------------------
    def versions(self, meta: ModelMetadata) -> list[tuple[str, str]]:
        """(label, version id) of a result, newest first; HuggingFace has one: the commit searched."""
        if meta.source is not Source.CIVITAI:
            return [(f"main · {meta.version[:10]}" if meta.version else "main", meta.version_id or "main")]
        from hubloader.sources.civitai import CivitAIService

        model_id = meta.extra.get("civitai_model_id")
        try:
            # The model document lists every version; the service exposes no public call for that list.
            model = CivitAIService()._get(f"models/{model_id}", what=f"CivitAI model {model_id}")
        except HubloaderError:
            return [(f"{meta.version} ({meta.base_model.value}) · {meta.version_id}", meta.version_id)]
        return [
            (f"{v.get('name')} ({v.get('baseModel')}) · {v.get('id')}", str(v.get("id")))
            for v in model.get("modelVersions") or []
            if isinstance(v, dict) and v.get("id")
        ]

    def version(self, meta: ModelMetadata, version_id: str) -> ModelMetadata:
        """The metadata of another version of a result (CivitAI), with its files; HF repos read in full."""
        if meta.source is Source.CIVITAI:
            if str(version_id) == meta.version_id and meta.files:
                return meta
            from hubloader.sources.civitai import CivitAIService

            return CivitAIService().get_model_version(int(version_id))
        if meta.files:
            return meta
        from hubloader.sources.huggingface import HuggingFaceHubService

        return HuggingFaceHubService().model_info(meta.model_id)

    def details_markdown(self, meta: ModelMetadata) -> str:
        stats = f"⬇ {meta.download_count:,} · ♥ {meta.like_count:,}"
        if meta.rating:
            stats += f" · ★ {meta.rating:.1f}"
        lines = [
            f"### {meta.name}",
            f"**{meta.source.value}** · {meta.type.value} · base **{meta.base_model.value}** · "
            f"{human_size(meta.size_bytes or None)} · {stats}",
            f"`{meta.air or meta.model_id}` → folder **{folder_kind(meta)}** "
            f"(`{self._target_or_blank(folder_kind(meta))}`)",
        ]
        if meta.trigger_words:
            lines.append("Trigger words: " + ", ".join(f"`{w}`" for w in meta.trigger_words))
        if meta.recommended_weight is not None:
            lines.append(f"Recommended weight: {meta.recommended_weight:g}")
        if meta.description:
            text = meta.description.strip()
            lines.append(text[:600] + ("…" if len(text) > 600 else ""))
        return "\n\n".join(lines)

    def _target_or_blank(self, kind: str) -> str:
        try:
            return str(self.folders.target(kind))
        except HubloaderError:
            return "no folder"

    # -- downloads --------------------------------------------------------------------------------------
    def start_download(self, meta: ModelMetadata, file_name: str = "") -> dict[str, Any]:
        """Queue the download of one result (the chosen file of its version); returns the job as a dict."""
        self._check_writes()
        kind = folder_kind(meta)
        self.folders.target(kind)  # fail now, not in the worker, when the host has no folder for it
        files = weight_files(meta)
        if meta.source is Source.HUGGINGFACE and not file_name:
            if not files:
                raise NotFound(f"{meta.model_id} has no single model file to download.", hint="Pick a file.")
            file_name = files[0].name
        reference = place.reference_of(meta, file_name or None)  # the same file queued twice is one job
        label = f"{meta.name} · {file_name}" if file_name else meta.name
        job = self.jobs.submit(
            label,
            lambda progress, cancel: self.place(meta, file_name, progress=progress, cancel=cancel),
            kind=kind,
            ref=f"{reference}#{file_name}",
        )
        return job.to_dict()

    def place(
        self,
        meta: ModelMetadata,
        file_name: str = "",
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Placed:
        """Download (or reuse) a result's file into its host folder, then describe, sidecar and register it."""
        placed = place.fetch(
            meta, self.folders, file=file_name or None, progress=place.progress_in_bytes(progress), cancel=cancel
        )
        self._record(placed)
        return placed

    def job_rows(self) -> list[list[Any]]:
        rows = []
        for job in reversed(self.jobs.list()):
            percent = f"{100 * job.done_bytes / job.total_bytes:.0f}%" if job.total_bytes else ""
            size = (
                f"{human_size(job.done_bytes or None)} / {human_size(job.total_bytes or None)}"
                if job.total_bytes
                else ""
            )
            speed = f"{human_size(job.speed_bps or None)}/s" if job.speed_bps and job.state not in FINISHED else ""
            rows.append([job.id, job.label, job.state, percent, size, speed, job.error or job.path])
        return rows

    def job_dicts(self) -> list[dict[str, Any]]:
        """The downloads as a page shows them, newest first."""
        return [job.to_dict() for job in reversed(self.jobs.list())]

    def retry(self, job_id: str) -> str:
        """Run a failed or cancelled download again; it resumes from the partial file the engine kept."""
        self._check_writes()
        job = self.jobs.retry(job_id)
        if job is None:
            return f"{job_id} did not fail and was not cancelled: nothing to retry."
        return f"Started {job.label} again ({job.id}); it resumes where it stopped."

    def active_job_ids(self) -> list[str]:
        return [job.id for job in self.jobs.list() if job.state not in FINISHED]

    def cancel(self, job_id: str) -> str:
        if not job_id:
            return "Choose a download to cancel."
        if self.jobs.cancel(job_id):
            return f"Cancelling {job_id}: the partial file is kept, starting it again resumes."
        return f"{job_id} is not running."

    # -- library ----------------------------------------------------------------------------------------
    def library(self, kind: str = ANY, query: str = "") -> tuple[list[list[Any]], str]:
        """Index rows of the local models (in any folder the registry knows), with duplicates marked."""
        from hubloader.library.index import is_unusable, registry_state
        from hubloader.library.scan import find_duplicates
        from hubloader.registry import ModelRegistry

        wanted = None if kind in ("", ANY) else kind
        with ModelRegistry() as registry:
            models = registry.list_models(local_only=True, include_unusable=True)
            cached = registry.list_cached_models()
            limit = registry.cache_limit_gb
        for m in models:  # a file that failed inspection has no usable path; the table still shows where it is
            m.local_path = m.local_path or Path(registry_state(m)["path"])
        models = [m for m in models if m.local_path and self._in_host(m.local_path)]
        if wanted:
            models = [m for m in models if self._in_kind(m, wanted)]
        if query:
            needle = query.lower()
            models = [m for m in models if needle in f"{m.name} {m.local_path} {' '.join(m.trigger_words)}".lower()]
        self.library_triggers = {str(m.local_path): list(m.trigger_words) for m in models}
        usable = [m for m in models if not is_unusable(m)]
        duplicates = find_duplicates({str(m.local_path): m.sha256 for m in usable})
        twin_of = {str(p): paths for paths in duplicates.values() for p in paths}
        rows = []
        for m in models:
            if is_unusable(m):
                reason = str(m.extra.get("error") or "it failed inspection")
                unusable = ["unusable", "-", m.source.value, human_size(m.size_bytes or None), reason]
                rows.append([m.name, *unusable, "", "", "", str(m.local_path)])
                continue
            others = [p.name for p in twin_of.get(str(m.local_path), []) if str(p) != str(m.local_path)]
            weight = "" if m.recommended_weight is None else f"{m.recommended_weight:g}"
            rows.append(
                [
                    m.name,
                    m.type.value,
                    m.base_model.value,
                    m.source.value,
                    human_size(m.size_bytes or None),
                    ", ".join(m.trigger_words),
                    weight,
                    m.sha256[:12],
                    ", ".join(others),
                    str(m.local_path),
                ]
            )
        bad = len(models) - len(usable)
        managed = sum(m.size_bytes for m in cached if (m.extra.get("registry") or {}).get("managed"))
        summary = (
            f"{len(usable)} local models · {human_size(sum(m.size_bytes for m in usable) or None)} · "
            + (f"{bad} unusable (failed inspection) · " if bad else "")
            + f"{len(duplicates)} duplicate groups · downloads cache {human_size(managed or None)}"
            + (f" of {limit:g} GB" if limit is not None else " (no limit)")
        )
        return rows, summary

    def _in_kind(self, meta: ModelMetadata, kind: str) -> bool:
        """Whether a Library row belongs to the folder kind shown: by its type, or (a file that failed inspection
        has none) by the folder it lies in."""
        from hubloader.library.index import is_unusable

        if not is_unusable(meta):
            return kind_of(meta.type) == kind
        path = Path(str(meta.local_path))
        return any(path.is_relative_to(folder) for folder in self.folders.dirs(kind))

    def _in_host(self, path: Path | str) -> bool:
        """Whether a file lies in one of this app's folders (the index also knows other hosts' files)."""
        if self._roots is None:
            dirs = {d for kind in self.folders.kinds() for d in self.folders.dirs(kind)}
            self._roots = [d.resolve() for d in dirs]
        where = Path(path).resolve()
        return any(where.is_relative_to(root) for root in self._roots)

    def rescan(self) -> str:
        """Re-read the host's model folders into the index (incremental: unchanged files are not opened)."""
        from hubloader.registry import ModelRegistry

        roots = self.folders.existing_dirs()
        with ModelRegistry() as registry:
            report = registry.scan(roots)
        text = f"Scanned {len(roots)} folders: {len(report.models)} new or changed, {len(report.unchanged)} unchanged"
        if report.removed:
            text += f", {len(report.removed)} gone"
        if report.errors:
            text += f", {len(report.errors)} unreadable ({report.errors[0][0].name}: {report.errors[0][1]})"
        return text + "."

    def cleanup(
        self, keep_recent: int = 0, max_size_gb: float | str | None = None, dry_run: bool = True
    ) -> tuple[list, str]:
        """What a cache cleanup would delete (``dry_run``: the preview), or, confirmed, deletes of what the last
        preview listed: only Hubloader's own, unpinned downloads beyond ``max_size_gb`` (default: the limit)."""
        if not dry_run:
            self._check_writes()
            if not self._cleanup_listed:
                return [], "Nothing was deleted: preview the cleanup first; Delete removes only the files it lists."
        from hubloader.registry import ModelRegistry, registry_state

        size = None if max_size_gb in (None, "") else float(max_size_gb)
        with ModelRegistry() as registry:
            report = registry.cleanup_cache(
                keep_recent=int(keep_recent or 0),
                max_size_gb=size,
                dry_run=dry_run,
                only=None if dry_run else self._cleanup_listed,
            )
        self._cleanup_listed = [str(registry_state(m)["key"]) for m in report.deleted_models] if dry_run else None
        rows = [[m.name, human_size(m.size_bytes or None), str(m.local_path or "")] for m in report.deleted_models]
        verb = "Would delete" if dry_run else "Deleted"
        text = (
            f"{verb} {report.deleted_count} files ({report.freed_space_gb:.2f} GB); "
            f"{len(report.kept_models)} kept, {report.total_size_gb:.2f} GB remain."
        )
        if report.errors:
            text += " " + "; ".join(report.errors)
        return rows, text

    # -- settings ---------------------------------------------------------------------------------------
    def settings_view(self) -> dict[str, Any]:
        """What the settings panel shows: never a token, only whether one is set; where downloads come from."""
        return {**config.public_settings(), "shared_cache_status": shared_cache_status()}

    @staticmethod
    def endpoints() -> list[tuple[str, str, str]]:
        """(name, URL in effect, where it comes from) of each endpoint: environment variable, settings file or
        default, in that order of precedence (as :mod:`hubloader.core.settings` reads them)."""
        stored = config.load_settings()
        rows = []
        for name, env, key, effective in (
            ("HuggingFace", "HF_ENDPOINT", "hf_endpoint", config.hf_endpoint()),
            ("CivitAI", "CIVITAI_ENDPOINT", "civitai_endpoint", config.civitai_endpoint()),
        ):
            if os.environ.get(env):
                origin = f"environment variable {env} (overrides the settings file)"
            elif stored.get(key):
                origin = f"settings file {config.settings_path()}"
            else:
                origin = "default"
            rows.append((name, config.redact_url(effective), origin))
        return rows

    def save_settings(
        self,
        hf_token: str = "",
        civitai_token: str = "",
        *,
        clear_hf_token: bool = False,
        clear_civitai_token: bool = False,
        hf_endpoint: str = "",
        civitai_endpoint: str = "",
        cache_limit_gb: float | None = None,
        allow_pickle: bool = False,
        max_connections: float | None = None,
        nsfw: bool = False,
        shared_cache: str | None = None,
    ) -> str:
        """Write the panel to the 0600 settings file. A blank token box leaves the stored token alone;
        a blank shared cache turns it off (None, as from a caller without that box, leaves it alone)."""
        self._check_writes()
        changes: dict[str, Any] = {
            "hf_endpoint": (hf_endpoint or "").strip() or None,
            "civitai_endpoint": (civitai_endpoint or "").strip() or None,
            "cache_limit_gb": float(cache_limit_gb) if cache_limit_gb and cache_limit_gb > 0 else None,
            "allow_pickle": bool(allow_pickle),
            "max_connections": int(max_connections) if max_connections else None,
            "nsfw": bool(nsfw),
        }
        for key, value, clear in (
            ("hf_token", hf_token, clear_hf_token),
            ("civitai_token", civitai_token, clear_civitai_token),
        ):
            if clear:
                changes[key] = None
            elif (value or "").strip():
                changes[key] = config.Secret(value.strip())
        for key in ("hf_endpoint", "civitai_endpoint"):
            if changes[key] and not changes[key].startswith(("http://", "https://")):
                raise ConfigError(f"{changes[key]!r} is not a URL.", hint="Write it as https://host[:port].")
        warnings: list[str] = []
        if shared_cache is not None:
            changes["shared_cache"], warnings = check_shared_cache(shared_cache)
        path = config.save_settings(changes)
        shown = config.public_settings()
        text = f"Saved to `{path}` (readable by you only). HuggingFace token: {shown['hf_token']}; CivitAI token: {shown['civitai_token']}."
        return text + "".join(f"\n\n⚠️ {w}" for w in warnings)

    # -- missing models ---------------------------------------------------------------------------------
    def missing(self, infotext: str = "", image: bytes | None = None) -> Any:
        """Read infotext (or an image carrying it, or a workflow) and resolve what is missing."""
        from hubloader.workflows import Resolver

        return Resolver(self.folders).resolve(_uploaded_workflow(infotext, image))

    def plan(self, infotext: str = "", image: bytes | None = None) -> Any:
        """The install plan (:class:`~hubloader.workflows.plan.InstallPlan`) of pasted infotext or a dropped
        image/workflow: per model its status, source, destination, needs and whether it can be fetched."""
        from hubloader.workflows import Resolver
        from hubloader.workflows.plan import Planner

        return Planner(Resolver(self.folders)).plan(_uploaded_workflow(infotext, image))

    def plan_of(self, report: Any) -> Any:
        """The install plan of a report :meth:`missing` made (no second resolve): destinations, needs, totals."""
        from hubloader.workflows import Resolver
        from hubloader.workflows.plan import Planner

        return Planner(Resolver(self.folders)).plan_of(report)

    @staticmethod
    def missing_rows(report: Any) -> list[list[Any]]:
        rows = []
        for item in report.items:
            chosen = item.chosen
            source = f"{chosen.source}: {chosen.file_name}" if chosen is not None else ""
            evidence = item.use_as if item.is_local and item.use_as else (item.reason or "")
            rows.append(
                [
                    item.reference.name,
                    item.reference.kind or (chosen.kind if chosen else ""),
                    item.status.value,
                    source,
                    human_size(item.size_bytes or None),
                    evidence,
                ]
            )
        return rows

    def fetch_missing(self, report: Any) -> list[dict[str, Any]]:
        """Queue one download per resolved item; each is verified against the hash the source/infotext gives."""
        self._check_writes()
        from hubloader.workflows import Status

        jobs = []
        for item in report.by_status(Status.RESOLVED):
            kind = item.reference.kind or item.chosen.kind
            jobs.append(
                self.jobs.submit(
                    item.reference.name,
                    functools.partial(self._fetch_item, item),
                    kind=kind,
                    ref=item.chosen.url,
                ).to_dict()
            )
        return jobs

    def _fetch_item(self, item: Any, progress: Callable[[int, int], None], cancel: threading.Event) -> Placed:
        from hubloader.workflows import Resolver

        placed = fetch_resolved(Resolver(self.folders), item, progress=place.progress_in_bytes(progress), cancel=cancel)
        self._record(placed)
        return placed

    def _record(self, placed: Placed) -> None:
        """Describe, sidecar and register a file that landed, then let the host refresh its lists."""
        from hubloader.registry import ModelRegistry

        with ModelRegistry() as registry:
            place.record(placed, registry)
        self._announce(placed.kind, placed.path)

    def _announce(self, kind: str, path: Path) -> None:
        if self.on_downloaded is None:
            return
        try:
            self.on_downloaded(kind, path)
        except Exception:  # a host refresh that fails must not turn a good download into a failure
            log.exception("hubloader: refreshing the host's %s list failed", kind)


def _uploaded_workflow(infotext: str, image: bytes | None) -> Any:
    """The workflow a user gave the app: a dropped image (PNG/WebP/JPEG) or workflow JSON, else pasted infotext."""
    from hubloader.workflows import read_workflow

    if image:
        suffix = ".png" if image[:4] == b"\x89PNG" else ".webp" if image[8:12] == b"WEBP" else ".jpg"
        if image[:1] in (b"{", b"["):
            suffix = ".json"
        with tempfile.TemporaryDirectory(prefix="hubloader-ui-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(image)
            return read_workflow(path)
    if (infotext or "").strip():
        return read_workflow(infotext.strip())
    raise InvalidReference("Paste generation parameters (infotext) or drop an image that carries them.")


# --- the Blocks ---------------------------------------------------------------------------------------------
