"""Install plans: what fetching a workflow's (image's, infotext's, lockfile's) models will take, before a byte moves.

Per model: its :class:`PlanStatus`, the chosen source (confidence, evidence, exact file, size, SHA256, revision),
where it will land (after the gate's collision rule), what it needs (a token, a gated repo's licence, CivitAI
early access or login; downloads disabled and archived block it), and whether it can be fetched now and why not.
Per destination file system: the bytes to fetch against the free space. Overall: the files reused and a time
estimate at the speed of the last downloads (:mod:`~hubloader.engine.speeds`).

When a pinned source is gone (a deleted or archived CivitAI version, a repo that no longer answers), the plan
offers the other places known to serve the *same SHA256* — our registry, a local file with those bytes, the
site's shared cache, CivitAI's by-hash lookup — and lists files that are only similar (the fp8 beside the fp16,
the pruned beside the full) as *not the same* file, never as a substitute.

The plan is data first: dataclasses with ``to_dict()``/``to_json()``; the faces (``hubloader plan``, the
``/hubloader/plan`` route, the app) render it. Nothing here downloads or writes model files.
"""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hubloader.core.errors import ConfigError, HubloaderError
from hubloader.core.folders import ModelFolders, active_folders
from hubloader.core.settings import redact_url
from hubloader.engine.speeds import recent_speed
from hubloader.gate.policy import DownloadRefused, place_apart
from hubloader.gate.request import FileRequest
from hubloader.library.hashcache import HashCache
from hubloader.pipeline import hf_apart
from hubloader.sharedcache.cache import resolve_shared_cache
from hubloader.sources.references import (
    CIVITAI,
    HUGGINGFACE,
    civitai_download_url,
    hf_resolve_url,
    parse_reference,
    parse_url,
)
from hubloader.workflows.finding import ModelReference
from hubloader.workflows.installplan import FilesystemTotal, InstallPlan, PlannedModel, PlannedSource, PlanStatus
from hubloader.workflows.lockfile import Lockfile, is_lockfile, is_required, resolve_lockfile
from hubloader.workflows.probe import Need, Probe, civitai_ids, probe
from hubloader.workflows.report import Candidate, ModelStatus, ProgressCallback, ResolutionReport, Status
from hubloader.workflows.resolver import Resolver, WorkflowInput
from hubloader.workflows.reuse import place_reused


class Planner:
    """Builds :class:`InstallPlan` s with one resolver (its services and folders) and one hash cache."""

    def __init__(self, resolver: Resolver | None = None, *, hashes: HashCache | None = None) -> None:
        self.resolver = resolver or Resolver()
        self.hashes = hashes or HashCache()

    @property
    def folders(self) -> ModelFolders:
        return self.resolver.folders

    def plan(self, file: WorkflowInput) -> InstallPlan:
        """The plan of a workflow, image, infotext or lockfile (a path) or of a workflow already read."""
        if isinstance(file, (str, os.PathLike)) and is_lockfile(Path(file)):
            report = resolve_lockfile(Path(file), download=False, resolver=self.resolver)
            optional = {m.name for m in Lockfile.load(file).models if not m.required}
        else:
            report = self.resolver.resolve(file)
            optional = set()
        return self.plan_of(report, optional)

    def plan_of(self, report: ResolutionReport, optional: set[str] | frozenset[str] = frozenset()) -> InstallPlan:
        """The plan of a report already resolved (a face that shows the report too resolves only once);
        ``optional``: names a lockfile marks as not required."""
        plan = InstallPlan(source=report.source, speed_bps=recent_speed())
        # Each model asks its source once (a HEAD or an un-followed GET): a few at a time, as the resolver fetches.
        with ThreadPoolExecutor(max_workers=self.resolver.max_workers, thread_name_prefix="hubloader-plan") as pool:
            plan.models = list(pool.map(self._model, report.items))
        for model in plan.models:
            model.required = model.name not in optional and model.reference is not None and is_required(model.reference)
        plan.filesystems = self._fit(plan.models)
        return plan

    # -- one model --------------------------------------------------------------------------------

    def _model(self, item: ModelStatus) -> PlannedModel:
        ref = item.reference
        model = PlannedModel(ref.name, ref.kind, PlanStatus.UNAVAILABLE, item.reason, file_name=ref.file_name)
        model.reference = ref
        model.sha256 = ref.sha256 or item.sha256
        if item.status in (Status.FOUND, Status.FOUND_ELSEWHERE, Status.FOUND_BY_HASH) and item.path is not None:
            return self._present(model, item)
        if item.status is Status.FAILED and item.path is not None:  # a lockfile's path holds another file
            model.reason = f"a different file is at {item.path}"
            named = self._named(model, item, refused_only=False) if ref.url else None
            return named or self._from_elsewhere(model, item, taken=item.path)
        if item.status is Status.RESOLVED and item.chosen is not None:
            return self._resolvable(model, item, item.chosen)
        if not item.candidates and ref.url:
            named = self._named(model, item, refused_only=True)
            if named is not None:
                return named
        distinct = {c.sha256 or c.url for c in item.candidates}
        if len(distinct) > 1:
            model.status, model.why_not = PlanStatus.AMBIGUOUS, "several different files fit; pick one"
            model.candidates = [PlannedSource.of(c, same_bytes=False) for c in item.candidates]
            return model
        return self._from_elsewhere(model, item)

    def _present(self, model: PlannedModel, item: ModelStatus) -> PlannedModel:
        assert item.path is not None
        path, wanted = item.path, model.sha256
        model.path, model.use_as, model.size = str(path), item.use_as, path.stat().st_size
        if wanted:
            actual = self.hashes.sha256(path)
            if actual != wanted:
                model.reason = f"a different file is at {path} (SHA256 {actual}, not {wanted})"
                model.path = model.use_as = ""
                named = self._named(model, item, refused_only=False) if item.reference.url else None
                return named or self._from_elsewhere(model, item, taken=path)
        model.sha256 = wanted or item.sha256
        if item.status is Status.FOUND:
            model.status, model.reason = PlanStatus.PRESENT, "on disk" + (", same SHA256" if wanted else "")
        elif item.use_as:
            model.status, model.reuse = PlanStatus.PRESENT_ELSEWHERE, "use_as"
            model.reason = f"same file as {item.use_as!r} in its folder: point the loader at it"
        else:
            self._reuse(model, path, item)
        return model

    def _reuse(self, model: PlannedModel, path: Path, item: ModelStatus) -> None:
        """Same bytes outside the kind's folders: linked (same file system) or copied to the destination."""
        model.status, model.path = PlanStatus.PRESENT_ELSEWHERE, str(path)
        kind = model.kind or (item.chosen.kind if item.chosen else "")
        try:
            dest = self.folders.target(kind) / model.file_name if kind else None
        except ConfigError:
            dest = None
        model.destination = str(dest) if dest else ""
        model.reuse = "link" if dest is not None and _same_filesystem(path, dest) else "copy"
        model.reason = f"same SHA256 at {path}: {model.reuse} it, no download"

    def _named(self, model: PlannedModel, item: ModelStatus, *, refused_only: bool) -> PlannedModel | None:
        """The file the workflow's URL names, as its source answers now. ``refused_only``: only when the source
        refused to describe it to the resolver (a gated repo, early access), to say what it needs."""
        url = _download_url(item.reference.url)
        if not url:
            return None
        answer = probe(url)
        if refused_only and (answer.ok or not (answer.needs or answer.gone)):
            return None
        service = "huggingface" if "/resolve/" in url else "civitai"
        evidence = f"the workflow names {redact_url(url)}"
        candidate = Candidate(
            url, model.file_name, service, 0.95, evidence, answer.size, answer.sha256, kind=model.kind
        )
        resolved = ModelStatus(item.reference, Status.RESOLVED, candidates=[candidate], sha256=model.sha256)
        if refused_only:  # what its source answers, not the resolver's failed attempts to describe it
            model.reason = answer.reason or evidence
        return self._resolvable(model, resolved, candidate, answer)

    def _resolvable(
        self, model: PlannedModel, item: ModelStatus, chosen: Candidate, answer: Probe | None = None
    ) -> PlannedModel:
        source = PlannedSource.of(chosen)
        model.sha256 = model.sha256 or chosen.sha256
        model.size = item.size_bytes or chosen.size_bytes
        model.file_name = chosen.file_name or model.file_name
        answer = answer or probe(chosen.url)
        _apply(source, answer)
        model.needs = answer.needs
        served_other = bool(answer.sha256 and model.sha256 and answer.sha256 != model.sha256)
        if answer.gone or served_other:
            why = answer.reason if answer.gone else f"it now serves other bytes (SHA256 {answer.sha256})"
            model.reason = f"the pinned source is gone: {why}" if answer.gone else f"the pinned source changed: {why}"
            model.similar = [] if answer.gone else [source]
            if served_other:
                source.same_bytes, source.note = False, "not the same file: its SHA256 differs from the pinned one"
            return self._from_elsewhere(model, item, gone_url=chosen.url)
        model.status, model.source = PlanStatus.RESOLVABLE, source
        model.size = model.size or answer.size
        self._destination(model, item, chosen)
        self._decide(model, answer)
        return model

    def _decide(self, model: PlannedModel, answer: Probe) -> None:
        unmet = [n for n in model.needs if not n.met]
        if model.why_not:
            return
        if unmet:
            model.why_not = "; ".join(_need_text(n) for n in unmet)
        elif not answer.ok:
            model.why_not = answer.reason or "the source did not answer"
        else:
            model.can_fetch = True

    def _destination(self, model: PlannedModel, item: ModelStatus, chosen: Candidate) -> None:
        """The path after the gate's collision rule: a different file under the name sends this one apart."""
        try:
            dest = self.resolver.destination(item.reference, chosen)
        except HubloaderError as exc:
            model.why_not = exc.message
            return
        model.destination = str(dest)
        if not dest.is_file() or (model.sha256 and self.hashes.sha256(dest) == model.sha256):
            return
        request = FileRequest(chosen.url, dest.parent, dest.name, sha256=model.sha256, size=model.size or None)
        try:
            placed = place_apart(request, _apart(chosen, dest.name))
        except DownloadRefused as exc:
            model.why_not = exc.message
            return
        model.destination = str(placed.dest)
        model.why_not = f"a different file is at {dest}; it is kept, so this one would go to {placed.dest}"

    # -- same bytes, other places -----------------------------------------------------------------

    def _from_elsewhere(
        self, model: PlannedModel, item: ModelStatus, *, taken: Path | None = None, gone_url: str = ""
    ) -> PlannedModel:
        """Another place with the model's SHA256: a local file (reuse), else a source serving the same bytes."""
        sha = model.sha256
        model.similar += self._similar(item, sha)
        if len(sha) != 64:
            model.status = PlanStatus.UNAVAILABLE
            model.why_not = model.why_not or model.reason or "no source and no SHA256 to find one by"
            return model
        local = [p for p in self.hashes.paths_of(sha) if taken is None or p.resolve() != taken.resolve()]
        if local:
            self._reuse(model, local[0], item)
            return model
        found = self._same_bytes_sources(sha, gone_url)
        model.alternatives = found
        if not found:
            model.status = PlanStatus.UNAVAILABLE
            model.why_not = (model.reason + "; " if model.reason else "") + "no other source serves the same SHA256"
            return model
        best = found[0]
        if not best.url:  # only the site's shared cache has the bytes: fetched from it, no origin asked
            return self._from_shared_cache(model, item, best, found)
        candidate = Candidate(best.url, best.file_name or model.file_name, best.service, best.confidence,
                              best.evidence, best.size, sha, best.air, model.kind)  # fmt: skip
        resolved = ModelStatus(
            item.reference, Status.RESOLVED, candidates=[candidate], sha256=sha, size_bytes=best.size
        )
        reason = model.reason
        planned = self._resolvable(model, resolved, candidate)
        planned.alternatives = found[1:]
        if reason:
            planned.reason = f"{reason}; same SHA256 from {best.evidence}"
        return planned

    def _from_shared_cache(
        self, model: PlannedModel, item: ModelStatus, best: PlannedSource, found: list[PlannedSource]
    ) -> PlannedModel:
        model.status, model.source, model.alternatives = PlanStatus.RESOLVABLE, best, found[1:]
        model.size = model.size or best.size
        model.reason = (model.reason + "; " if model.reason else "") + best.evidence
        candidate = Candidate("", model.file_name, "url", 1.0, best.evidence, model.size, model.sha256, kind=model.kind)
        self._destination(model, item, candidate)
        model.can_fetch = not model.why_not
        return model

    # -- fetching ---------------------------------------------------------------------------------

    def fetch(
        self,
        plan: InstallPlan,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ResolutionReport:
        """ "Fetch all": the plan's fetchable models from the sources it chose (a same-bytes fallback included),
        through the resolver (the gate, the shared cache, the engine), each verified against its SHA256."""
        report = ResolutionReport(source=plan.source)
        for model in plan.models:
            if model.reuse in ("link", "copy") and model.destination and model.reference is not None:
                report.items.append(self._reuse_one(model, model.reference))
        for model in plan.fetchable:
            source, ref = model.source, model.reference
            assert source is not None and ref is not None  # fetchable: resolvable with a source
            service = source.service if source.service in ("huggingface", "civitai") else "url"
            candidate = Candidate(source.url, source.file_name or model.file_name, service, source.confidence,
                                  source.evidence, model.size, model.sha256, source.air, model.kind)  # fmt: skip
            report.items.append(
                ModelStatus(ref, Status.RESOLVED, candidates=[candidate], sha256=model.sha256, size_bytes=model.size)
            )
        return self.resolver.fetch(report, progress=progress, cancel=cancel)

    def _reuse_one(self, model: PlannedModel, ref: ModelReference) -> ModelStatus:
        """A present-elsewhere model linked or copied into place (no download)."""
        try:
            path = place_reused(Path(model.path), Path(model.destination), model.sha256, hashes=self.hashes)
        except (HubloaderError, OSError) as exc:
            return ModelStatus(ref, Status.FAILED, reason=f"{model.name}: {getattr(exc, 'message', exc)}")
        return ModelStatus(
            ref, Status.FOUND_BY_HASH, path, use_as=path.name, sha256=model.sha256, size_bytes=path.stat().st_size
        )

    def _same_bytes_sources(self, sha: str, gone_url: str) -> list[PlannedSource]:
        found: list[PlannedSource] = []
        cache = resolve_shared_cache(self.resolver.shared_cache)
        if cache is not None:
            try:
                size = cache.store.object_size(sha)
            except HubloaderError:
                size = None
            if size is not None:
                note = "in the site's shared cache: fetching it asks no origin"
                found.append(PlannedSource("", "shared_cache", 1.0, "the shared cache holds it", size=size,
                                           sha256=sha, note=note))  # fmt: skip
        for candidate in self.resolver.sources_by_sha256([sha]).values():
            if candidate.url != gone_url and candidate.sha256 == sha:
                found.append(PlannedSource.of(candidate, note="serves the same SHA256"))
        return [s for s in found if s.url] + [s for s in found if not s.url]

    def _similar(self, item: ModelStatus, sha: str) -> list[PlannedSource]:
        """Other files of the same CivitAI model (another precision, pruned or full): NOT the same bytes."""
        air = next((c.air for c in item.candidates if c.air), "")
        if not air or not sha:
            return []
        try:
            ref = parse_reference(air)
            if ref.model_id is None:
                return []
            meta = self.resolver.civitai.get_model_details(ref.model_id)
        except HubloaderError:
            return []
        similar = []
        for f in meta.files:
            if f.sha256 and f.sha256.lower() != sha and f.url:
                what = ", ".join(x for x in (f.precision, f.kind) if x) or "another file"
                similar.append(
                    PlannedSource(f.url, "civitai", 0.0, f"{meta.name} {meta.version}: {f.name} ({what})", f.name,
                                  f.size_bytes, f.sha256.lower(), same_bytes=False,
                                  note="NOT the same file: different bytes (SHA256), not a substitute")
                )  # fmt: skip
        return similar

    # -- totals -----------------------------------------------------------------------------------

    def _fit(self, models: list[PlannedModel]) -> list[FilesystemTotal]:
        """Bytes to fetch per file system against its free space; what does not fit cannot be fetched."""
        totals: dict[int, FilesystemTotal] = {}
        for model in models:
            if not model.fetches or not model.destination:
                continue
            where = _existing(Path(model.destination).parent)
            device = os.stat(where).st_dev
            total = totals.get(device)
            if total is None:
                total = totals[device] = FilesystemTotal(str(where), 0, shutil.disk_usage(where).free)
            if total.bytes_to_fetch + model.size > total.free:
                model.can_fetch = False
                model.why_not = (
                    f"not enough free space on the disk of {where}: {model.size} bytes needed, "
                    f"{max(total.free - total.bytes_to_fetch, 0)} free after the models before it"
                )
                total.models.append(model.name)
                total.bytes_to_fetch += model.size
                continue
            total.bytes_to_fetch += model.size
            total.models.append(model.name)
        return list(totals.values())


def _download_url(text: str) -> str:
    """The download URL (on the configured endpoints) of a workflow's HuggingFace file or CivitAI version."""
    try:
        parsed = parse_url(text) if "://" in text else parse_reference(text)
    except HubloaderError:
        return ""
    if parsed.kind == HUGGINGFACE and parsed.filename:
        return hf_resolve_url(parsed)
    if parsed.kind == CIVITAI and parsed.version_id is not None:
        return civitai_download_url(parsed.version_id, parsed.file_id)
    return ""


def _apply(source: PlannedSource, answer: Probe) -> None:
    source.revision = answer.revision or source.revision
    source.version_id = answer.version_id or source.version_id
    source.file_id = answer.file_id or source.file_id
    source.size = source.size or answer.size
    if answer.moved_to:
        source.note = f"the repository moved to {answer.moved_to}"


def _need_text(need: Need) -> str:
    texts = {
        "token": f"needs {need.detail}",
        "licence": f"needs its licence accepted at {need.url}",
        "early_access": f"is in early access ({need.detail}); buy access or wait: {need.url}",
        "login": f"needs {need.detail}",
        "downloads_disabled": "the creator disabled downloads",
        "archived": "archived: no longer downloadable",
        "confirmation": need.detail,
    }
    return texts.get(need.what, need.detail or need.what)


def _apart(candidate: Candidate, name: str) -> str:
    """Where a same-named different file sends this one: the HF repo's folder, or the CivitAI version's suffix."""
    try:
        parsed = parse_url(candidate.url)
    except HubloaderError:
        parsed = None
    if parsed is not None and parsed.kind == HUGGINGFACE and parsed.repo_id and parsed.filename:
        return hf_apart(parsed.repo_id, parsed.filename)
    version_id, _ = civitai_ids(candidate.url)
    stem, ext = os.path.splitext(name)
    return f"{stem}-{version_id}{ext}" if version_id else f"{stem}-{candidate.sha256[:8] or 'other'}{ext}"


def _existing(folder: Path) -> Path:
    return next((f for f in (folder, *folder.parents) if f.exists()), folder)


def _same_filesystem(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(_existing(b.parent)).st_dev
    except OSError:
        return False


def plan_install(
    file: WorkflowInput,
    folders: ModelFolders | None = None,
    *,
    resolver: Resolver | None = None,
    hashes: HashCache | None = None,
) -> InstallPlan:
    """The install plan of ``file`` for ``folders`` (default: the active host's): ``hubloader.plan("wf.json")``."""
    resolver = resolver or Resolver(folders if folders is not None else active_folders())
    return Planner(resolver, hashes=hashes).plan(file)


__all__ = ["FilesystemTotal", "InstallPlan", "PlanStatus", "PlannedModel", "PlannedSource", "Planner", "plan_install"]
