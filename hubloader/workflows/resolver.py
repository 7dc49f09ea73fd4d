"""Missing models, resolved: what a workflow or a generated image needs, where it is, where to get it.

The steps, each usable alone: **read** (:mod:`~hubloader.workflows.reading`), **find** the models it names
(:mod:`~hubloader.workflows.finding`), **match locally** (:meth:`Resolver.check`, :mod:`~hubloader.workflows.local`:
exact path → same file name in another subfolder of that kind → same hash anywhere in the registry), **resolve
and fetch** (:meth:`Resolver.resolve`, :meth:`Resolver.fetch`): URL in the workflow → hash on CivitAI (batched)
→ our registry → search by file name on CivitAI and HuggingFace; each candidate carries a confidence and the
evidence. Fetching goes through the download engine into the host's folders, a few at a time, refusing bytes
whose hash differs from the one the workflow or source gives (:mod:`~hubloader.workflows.download`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from hubloader.core.errors import AuthRequired, HubloaderError, InvalidReference
from hubloader.core.folders import ModelFolders, active_folders, safe_filename, type_of_kind
from hubloader.core.metadata import ModelMetadata
from hubloader.core.settings import hf_endpoint, redact_url
from hubloader.sharedcache.cache import SharedCache
from hubloader.sources.references import (
    CIVITAI,
    HUGGINGFACE,
    ModelRef,
    hf_resolve_url,
    parse_hf_path,
    parse_reference,
    parse_url,
)
from hubloader.workflows.candidates import from_metadata, hash_agrees, names_a_file, search_queries, weigh_by_short_hash
from hubloader.workflows.download import check_short_hashes, download_candidate, expected_sha256
from hubloader.workflows.finding import ModelReference, find_references, is_model_file, name_matches, norm_name
from hubloader.workflows.local import LocalIndex, folder_dirs, is_under, relative_to
from hubloader.workflows.reading import Workflow, read_workflow
from hubloader.workflows.report import Candidate, ModelStatus, ProgressCallback, ResolutionReport, Status
from hubloader.workflows.services import CivitAISource, HuggingFaceSource, ModelLookup

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

#: What the resolver reads models from: a workflow (read or not: a path, a dict, JSON or infotext text), or the
#: references already found in one.
WorkflowInput = Workflow | list[ModelReference] | str | os.PathLike[str] | dict[str, object]


class ResolverOptions(TypedDict, total=False):
    """The keyword options of :class:`Resolver` that :func:`resolve_workflow` passes on."""

    civitai: CivitAISource | None
    huggingface: HuggingFaceSource | None
    registry: ModelLookup | None
    search: bool
    min_confidence: float
    max_workers: int
    shared_cache: SharedCache | str | None
    confirmed_hosts: frozenset[str]


class Resolver:
    """Find, match, resolve and fetch a workflow's models.

    Services are constructor arguments so each face can pass its own; any left out is created on first
    use (the real CivitAI/HuggingFace/registry classes, the active host's folders).
    """

    def __init__(
        self,
        folders: ModelFolders | None = None,
        *,
        civitai: CivitAISource | None = None,
        huggingface: HuggingFaceSource | None = None,
        registry: ModelLookup | None = None,
        search: bool = True,
        min_confidence: float = 0.5,
        max_workers: int = 3,
        shared_cache: SharedCache | str | None = None,
        confirmed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.folders = folders if folders is not None else active_folders()
        self._civitai, self._huggingface, self._registry = civitai, huggingface, registry
        # A hubloader.sharedcache.cache.SharedCache or its URL; None: HUBLOADER_SHARED_CACHE, if set (see fleet.py).
        self.shared_cache = shared_cache
        # Hosts outside HuggingFace, CivitAI and the configured ones that a local user confirmed (a face asks; the
        # gate still needs each file's SHA256): never filled from a workflow.
        self.confirmed_hosts = confirmed_hosts
        self.search = search
        self.min_confidence = min_confidence
        self.max_workers = max(1, max_workers)

    # Lazily built services: importing them costs (huggingface_hub, sqlite), and a purely local check needs none.
    @property
    def civitai(self) -> CivitAISource:
        if self._civitai is None:
            from hubloader.sources.civitai import CivitAIService

            self._civitai = CivitAIService()
        return self._civitai

    @property
    def huggingface(self) -> HuggingFaceSource:
        if self._huggingface is None:
            from hubloader.sources.huggingface import HuggingFaceHubService

            self._huggingface = HuggingFaceHubService()
        return self._huggingface

    @property
    def registry(self) -> ModelLookup:
        if self._registry is None:
            from hubloader.registry import ModelRegistry

            self._registry = ModelRegistry()
        return self._registry

    # -- local ----------------------------------------------------------------------------------

    def check(self, workflow: WorkflowInput) -> ResolutionReport:
        """Local matching only: what is present (and under which name), what is missing. No network."""
        refs, source = self._references(workflow)
        index = LocalIndex(self.folders)
        report = ResolutionReport(source=source)
        for ref in refs:
            hit = index.find(ref)
            if hit is not None:
                status, path, use_as = hit
                report.items.append(ModelStatus(ref, status, path, use_as=use_as, size_bytes=path.stat().st_size))
                continue
            known = self._registry_file(ref)
            if known is not None:
                report.items.append(known)
                continue
            report.items.append(ModelStatus(ref, Status.UNRESOLVED, reason="not found in the model folders"))
        return report

    def _references(self, workflow: WorkflowInput) -> tuple[list[ModelReference], str]:
        if isinstance(workflow, list):
            if not all(isinstance(r, ModelReference) for r in workflow):
                raise TypeError("A list given as a workflow holds ModelReference items only.")
            return workflow, ""
        doc = workflow if isinstance(workflow, Workflow) else read_workflow(workflow)
        return find_references(doc), str(doc.path or "")

    def _registry_file(self, ref: ModelReference) -> ModelStatus | None:
        """A local file the registry knows under one of the reference's hashes."""
        if not ref.hashes:
            return None
        for digest in ref.hashes.values():
            meta = self.registry.find_model(digest)
            if meta is None or meta.local_path is None or not Path(meta.local_path).is_file():
                continue
            if hash_agrees(meta, ref):
                path = Path(meta.local_path)
                use_as = next(
                    (relative_to(path, root) for root in folder_dirs(self.folders, ref.kind) if is_under(path, root)),
                    "",
                )
                return ModelStatus(
                    ref,
                    Status.FOUND_BY_HASH,
                    path,
                    use_as=use_as,
                    sha256=meta.sha256,
                    size_bytes=path.stat().st_size,
                    reason="" if use_as else f"same file at {path}, outside the {ref.kind or 'model'} folders",
                )
        return None

    # -- remote ---------------------------------------------------------------------------------

    def resolve(self, workflow: WorkflowInput) -> ResolutionReport:
        """Local matching, then a ranked list of sources for each missing model."""
        report = self.check(workflow)
        missing = [item for item in report.items if item.status is Status.UNRESOLVED]
        by_hash = self._civitai_by_hashes([item.reference for item in missing])
        for item in missing:
            item.candidates, reasons = self._candidates(item.reference, by_hash)
            item.candidates.sort(key=lambda c: c.confidence, reverse=True)
            best = item.chosen
            if best is not None and best.confidence >= self.min_confidence:
                item.status, item.reason = Status.RESOLVED, best.evidence
                item.sha256, item.size_bytes = best.sha256 or item.reference.sha256, best.size_bytes
            else:
                item.reason = "; ".join(reasons) or "no source names this file"
                if best is not None:
                    item.reason += f"; best guess below confidence {self.min_confidence}: {best.evidence}"
        return report

    def _candidates(self, ref: ModelReference, by_hash: dict[str, ModelMetadata]) -> tuple[list[Candidate], list[str]]:
        candidates: list[Candidate] = []
        reasons: list[str] = []
        if ref.url:
            try:
                candidates.append(self._from_url(ref))
            except HubloaderError as exc:
                reasons.append(f"its URL failed: {exc.message}")
        if not candidates:
            for hash_name, digest in ref.hashes.items():
                meta = by_hash.get(digest)
                if meta is not None:
                    candidates.append(from_metadata(meta, ref, f"CivitAI knows {hash_name} {digest}", 0.95, digest))
                    break
            else:
                if ref.hashes:
                    reasons.append("CivitAI does not know its hash")
        if not candidates:
            candidates.extend(self._from_registry(ref))
        if not candidates and self.search:
            candidates.extend(self._search(ref, reasons))
        if not ref.url and not ref.hashes and not candidates:
            reasons.append("the workflow gives no URL or hash")
        return candidates, reasons

    def _from_url(self, ref: ModelReference) -> Candidate:
        if "://" in ref.url:
            try:
                parsed = parse_url(ref.url)
            except InvalidReference:
                return Candidate(ref.url, ref.file_name, "url", 0.8, f"the workflow names {redact_url(ref.url)}")
        else:  # an AIR or civitai:M@V names a file as well as a URL does
            parsed = parse_reference(ref.url)
            if parsed.kind not in (CIVITAI, HUGGINGFACE):
                raise InvalidReference(f"{ref.url!r} is neither a URL nor a CivitAI/HuggingFace reference.")
        if parsed.kind == CIVITAI:
            if parsed.version_id is None:
                assert parsed.model_id is not None  # a CivitAI reference names a model, a version or both
                meta = self.civitai.get_model_details(parsed.model_id)
            else:
                meta = self.civitai.get_model_version(parsed.version_id)
            digest = ""
            if parsed.file_id or parsed.download_params:  # an AIR's +fileId or ?type=…&fp=… names one file
                from hubloader.sources.civitai import pick_file

                files = meta.extra.get("civitai_files") or []
                named = pick_file(files, meta.type, file_id=parsed.file_id, params=dict(parsed.download_params))
                if named is None:
                    raise InvalidReference(f"CivitAI {meta.name!r} {meta.version!r} has no file {parsed.text} names.")
                digest = str((named.get("hashes") or {}).get("SHA256") or "").lower()
            return from_metadata(meta, ref, f"the workflow names CivitAI {parsed.text}", 0.95, digest)
        return self._hf_candidate(parsed, ref, 0.95, f"the workflow names {parsed.repo_id}/{parsed.filename}")

    def _hf_candidate(self, parsed: ModelRef, ref: ModelReference, confidence: float, evidence: str) -> Candidate:
        """A HuggingFace file, its size and SHA256 read from the hub (the LFS ETag) so the bytes are checked."""
        # parse_url / parse_hf_path refuse a HuggingFace reference that names no file
        assert parsed.repo_id is not None and parsed.filename is not None
        url = hf_resolve_url(parsed, hf_endpoint())
        size, sha256 = self.huggingface.file_size_and_sha256(
            parsed.repo_id, parsed.filename, parsed.revision or "main", parsed.repo_type
        )
        name = parsed.filename.rsplit("/", 1)[-1]
        model = f"{parsed.repo_id}/{parsed.filename}"
        return Candidate(url, name, "huggingface", confidence, evidence, size, sha256, model=model)

    def _civitai_by_hashes(self, refs: list[ModelReference]) -> dict[str, ModelMetadata]:
        """One batched CivitAI lookup for every hash of every reference that has no URL."""
        return self._civitai_lookup([d for r in refs if not r.url for d in r.hashes.values()])

    def _civitai_lookup(self, digests: list[str]) -> dict[str, ModelMetadata]:
        """The CivitAI versions of these hashes, by lower-case hash, in one batched request."""
        digests = list(dict.fromkeys(d.lower() for d in digests if d))
        if not digests:
            return {}
        try:
            found = self.civitai.find_by_hashes(digests)
        except HubloaderError:
            return {}  # CivitAI unreachable: the other steps still run
        return {digest.lower(): meta for digest, meta in found.items() if meta is not None}

    def sources_by_sha256(self, digests: list[str]) -> dict[str, Candidate]:
        """Where the files with these SHA256s come from: our registry's record of the download first (it knows
        HuggingFace files, which CivitAI does not), then one batched CivitAI lookup for the rest."""
        sources = self._registry_sources(digests)
        for digest, meta in self._civitai_lookup([d for d in digests if d.lower() not in sources]).items():
            try:
                sources[digest] = from_metadata(meta, ModelReference(""), "CivitAI knows its SHA256", 0.95, digest)
            except HubloaderError:
                continue
        return sources

    def _registry_sources(self, digests: list[str]) -> dict[str, Candidate]:
        """Where our registry recorded downloading the files of these SHA256s from."""
        sources = {}
        for digest in dict.fromkeys(d.lower() for d in digests if d):
            meta = self.registry.find_model(digest)
            if meta is None or (not meta.remote_url and not meta.files):
                continue
            try:
                candidate = from_metadata(
                    meta, ModelReference(""), f"our registry knows it ({meta.model_id})", 0.9, digest
                )
            except HubloaderError:
                continue
            if candidate.sha256 == digest and names_a_file(candidate.url):
                sources[digest] = candidate
        return sources

    def _from_registry(self, ref: ModelReference) -> list[Candidate]:
        """The source our registry knows for a model of this file name (with or without its extension)."""
        for key in (ref.file_name, os.path.splitext(ref.file_name)[0]):
            meta = self.registry.find_model(key)
            if meta is not None and (meta.remote_url or meta.files):
                return [from_metadata(meta, ref, f"our registry knows {meta.name!r} ({meta.model_id})", 0.7)]
        return []

    def _search(self, ref: ModelReference, reasons: list[str]) -> list[Candidate]:
        """Search CivitAI and HuggingFace by file name; only an exact file-name match counts.

        A short hash the workflow gives (infotext's ``TI hashes`` are SHA256 prefixes CivitAI cannot look up)
        confirms a hit or rules it out; several different files under the name are ambiguous, not a pick.
        """
        stem = os.path.splitext(ref.file_name)[0]
        if not stem:
            return []
        model_type = type_of_kind(ref.kind)
        found: list[Candidate] = []
        try:
            for query in search_queries(stem):
                for meta in self.civitai.search_models(query=query, type=model_type, limit=10):
                    if any(name_matches(ref.file_name, f.name) for f in meta.files) or (
                        not meta.files and name_matches(stem, meta.name)
                    ):
                        evidence = f"CivitAI search for {query!r} found {meta.name!r}"
                        found.append(from_metadata(meta, ref, evidence, 0.6))
                if found:
                    break
        except HubloaderError as exc:
            reasons.append(f"CivitAI search failed: {exc.message}")
        try:
            found.extend(self._search_hf(ref, stem))
        except HubloaderError as exc:
            reasons.append(f"HuggingFace search failed: {exc.message}")
        found = weigh_by_short_hash(ref, found, reasons)
        if not found:
            reasons.append(f"no CivitAI or HuggingFace result has a file named {ref.file_name!r}")
        files = {c.sha256 or c.url for c in found}
        if len(files) > 1 and all(c.confidence < 0.9 for c in found):
            reasons.append(
                f"{len(files)} different files are named {ref.file_name!r} ("
                + "; ".join(c.evidence for c in found)
                + "): give the workflow entry a URL or hash to say which"
            )
            for candidate in found:
                candidate.confidence = min(candidate.confidence, 0.3)
        return found

    def _search_hf(self, ref: ModelReference, stem: str) -> list[Candidate]:
        """The first file named like the reference in each of the top HuggingFace repositories for its stem."""
        found = []
        for meta in self.huggingface.search_models(stem, limit=5):
            for path in self._repo_files(meta.model_id):
                if name_matches(ref.file_name, path.rsplit("/", 1)[-1]):
                    parsed = parse_hf_path(f"{meta.model_id}/{path}")
                    evidence = f"HuggingFace search for {stem!r} found {meta.model_id}/{path}"
                    found.append(self._hf_candidate(parsed, ref, 0.55, evidence))
                    break
        return found

    def _repo_files(self, repo_id: str) -> list[str]:
        """A repository's files; none when it cannot be read (the next search hit may be the one)."""
        try:
            return self.huggingface.repo_files(repo_id)
        except HubloaderError:
            return []

    # -- fetching -------------------------------------------------------------------------------

    def fetch(
        self,
        report: ResolutionReport,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ResolutionReport:
        """Download every RESOLVED item into its folder, a few at a time; update the items in place."""
        todo = report.by_status(Status.RESOLVED)
        if todo:
            with ThreadPoolExecutor(
                max_workers=min(self.max_workers, len(todo)), thread_name_prefix="hubloader-fetch"
            ) as pool:
                list(pool.map(lambda item: self._fetch_one(item, progress, cancel), todo))
        return report

    def _fetch_one(self, item: ModelStatus, progress: ProgressCallback | None, cancel: threading.Event | None) -> None:
        candidate, ref = item.chosen, item.reference
        assert candidate is not None
        try:
            expected = expected_sha256(ref, candidate)
            dest = self._destination(ref, candidate)
            result = download_candidate(
                candidate,
                dest,
                expected,
                progress=(lambda p: progress(item, p)) if progress else None,
                cancel=cancel,
                shared_cache=self.shared_cache,
                confirmed_hosts=self.confirmed_hosts,
            )
            check_short_hashes(ref, result.sha256, result.path)
        except AuthRequired as exc:
            item.status, item.reason = Status.FAILED, _needs_token(_model_label(item), candidate, exc)
            return
        except HubloaderError as exc:
            item.status, item.reason = Status.FAILED, f"{_model_label(item)}: {exc}"
            return
        item.status, item.path, item.sha256, item.size_bytes = (
            Status.FETCHED,
            result.path,
            result.sha256,
            result.size_bytes,
        )
        item.use_as = relative_to(result.path, self.folders.target(ref.kind or candidate.kind))

    def destination(self, ref: ModelReference, candidate: Candidate) -> Path:
        """Where fetching ``candidate`` for ``ref`` writes (what an install plan shows before it is fetched)."""
        return self._destination(ref, candidate)

    def _destination(self, ref: ModelReference, candidate: Candidate) -> Path:
        """``<first folder of the kind>/<subfolders as in the workflow>/<safe file name>``."""
        kind = ref.kind or candidate.kind
        if not kind:
            raise HubloaderError(
                f"Cannot tell which folder {ref.name!r} belongs in.",
                hint="Download it by hand, or give the workflow entry a 'directory'.",
            )
        root = self.folders.target(kind)
        parts = [p for p in norm_name(ref.name).split("/") if p not in ("", ".", "..")]
        name = parts[-1] if parts and is_model_file(parts[-1]) else candidate.file_name
        subdirs = [safe_filename(p, default_ext="").rstrip(".") or "_" for p in parts[:-1]]
        return root.joinpath(*subdirs, safe_filename(name))

    def run(
        self,
        workflow: WorkflowInput,
        *,
        download: bool = False,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ResolutionReport:
        """check → resolve → (optionally) fetch, the whole flow the faces call."""
        report = self.resolve(workflow)
        return self.fetch(report, progress=progress, cancel=cancel) if download else report


_SERVICE_NAMES = {CIVITAI: "CivitAI", HUGGINGFACE: "HuggingFace"}


def _model_label(item: ModelStatus) -> str:
    """The model an item's download concerns, as its source names it (else as the workflow does)."""
    chosen = item.chosen
    return chosen.model if chosen is not None and chosen.model else repr(item.reference.name)


def _needs_token(label: str, candidate: Candidate, exc: AuthRequired) -> str:
    """One line: which model needs whose token, and what the service answered."""
    service = _SERVICE_NAMES.get(exc.service or candidate.source)
    needed = f"a {service} token" if service else "a token with access to it"
    return f"{label} needs {needed} ({exc.message.rstrip('.')})."


def resolve_workflow(
    workflow: WorkflowInput,
    folders: ModelFolders | None = None,
    *,
    download: bool = False,
    **resolver_options: Unpack[ResolverOptions],
) -> ResolutionReport:
    """One-call form: ``resolve_workflow("wf.json", standalone_folders(dir), download=True)``."""
    return Resolver(folders, **resolver_options).run(workflow, download=download)
