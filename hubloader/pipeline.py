"""One model into a host's folders, described and recorded: the pipeline every face runs.

The ComfyUI nodes and routes, the command line and the Model Hub app (A1111 tab, standalone) all do
the same steps: :func:`fetch` resolves what the user named (a reference, a search result, a plain
URL) and lets the source's own service download and verify it — HuggingFace into its cache and then
linked into the folder, CivitAI straight into the folder, a plain URL through the engine; then
:func:`describe_and_register` reads the file's header, merges what the source said, writes the
sidecars beside it and records it in the registry. Faces only choose the folders, adapt progress and
say what happened.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict
from urllib.parse import urlsplit

from hubloader.core.errors import HubloaderError, InvalidReference, NotFound
from hubloader.core.folders import ModelFolders, kind_of, safe_filename
from hubloader.core.metadata import ModelFormat, ModelMetadata, ModelType, Source
from hubloader.core.settings import load_settings, redact_url
from hubloader.gate.fetch import fetch_file, fetch_preview_bytes
from hubloader.gate.policy import check_destination, place_apart
from hubloader.gate.request import FileRequest
from hubloader.sources.references import (
    CIVITAI,
    HASH,
    HUGGINGFACE,
    ModelRef,
    civitai_download_url,
    civitai_id,
    hf_resolve_url,
    parse_reference,
)

if TYPE_CHECKING:  # pragma: no cover
    from hubloader.engine.download import DownloadProgress
    from hubloader.sharedcache.cache import SharedCache

log = logging.getLogger(__name__)

#: The engine's progress events (:class:`~hubloader.engine.download.DownloadProgress`).
Progress = Callable[["DownloadProgress"], None]


class ModelIndex(Protocol):
    """What the pipeline records into: the library index (:class:`~hubloader.library.index.LibraryIndex`),
    or :class:`~hubloader.registry.ModelRegistry`, which offers the same methods."""

    def find_model(self, ref: str | int | ModelMetadata) -> ModelMetadata | None: ...
    def mark_used(self, model: str | ModelMetadata) -> ModelMetadata: ...
    def register_model(self, metadata: ModelMetadata, *, managed: bool = False) -> ModelMetadata: ...
    def set_paths(
        self, model: str | ModelMetadata, *, sidecar_path: Path | None = None, preview_path: Path | None = None
    ) -> ModelMetadata: ...


class _Transfer(TypedDict):
    """How a source's download runs: the engine's progress and cancel, and the site's shared cache."""

    progress: Progress | None
    cancel: threading.Event | None
    shared_cache: SharedCache | str | None


class _CivitaiTransfer(_Transfer):
    """A CivitAI download also takes the pickle policy (HuggingFace's is checked on its metadata)."""

    allow_pickle: bool | None


#: Largest preview image taken from a source: a preview is a thumbnail, not a download.
MAX_PREVIEW_BYTES = 16 * 1024 * 1024


@dataclass
class Placed:
    """A model file (or a diffusers snapshot folder) now where its host loads it, and what its source says."""

    path: Path
    kind: str  # the host folder kind it went to ("loras", "checkpoints", …)
    source: ModelMetadata | None = None  # None: only the bytes are known
    reused: bool = False  # the same file was there already: nothing was downloaded
    url: str = ""  # where another machine downloads the same file (workflow properties, lockfiles)
    sha256: str = ""


def fetch(
    what: str | ModelRef | ModelMetadata,
    folders: ModelFolders | Path,
    *,
    kind: ModelType | str | None = None,
    file: str | None = None,
    save_as: str | None = None,
    revision: str | None = None,
    allow_pickle: bool | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    shared_cache: SharedCache | str | None = None,
    confirmed: bool = False,
) -> Placed:
    """Make the model ``what`` names present in its folder; download only what is missing or different.

    ``what``: anything :func:`~hubloader.sources.references.parse_reference` reads, a plain http(s) URL (needs
    ``kind``), a search result with ``file`` naming which of its files, or a registry row of a plain
    URL (fetched from its ``remote_url``, checked against its SHA256). ``folders``: the host's
    folders (the folder of ``kind``, else of the source's type, receives the file) or one folder for
    everything. ``save_as`` keeps the name a workflow uses. ``allow_pickle`` None means the setting.
    ``shared_cache`` (a site cache, :mod:`hubloader.sharedcache.cache`, or its URL; None: the configured one) applies
    to CivitAI files and HuggingFace LFS files. ``confirmed``: a local user confirmed a plain URL of a host
    outside the known ones (the gate still needs its published SHA256).
    """
    folder_kind = kind_of(kind) if isinstance(kind, ModelType) else kind
    if isinstance(what, ModelMetadata):
        folder_kind = folder_kind or kind_of(what.type)
        if what.source not in (Source.HUGGINGFACE, Source.CIVITAI) and what.remote_url:
            save_as = save_as or (what.files[0].name if what.files else None)
            plain = _PlainUrl(what.remote_url, save_as, allow_pickle, confirmed, known=what)
            return _fetch_url(plain, folders, folder_kind, progress, cancel)
        ref = reference_of(what, file)
    elif isinstance(what, ModelRef):
        ref = what
    else:
        parsed = _parse_or_url(what)
        if parsed is None:
            plain = _PlainUrl(str(what).strip(), save_as, allow_pickle, confirmed)
            return _fetch_url(plain, folders, folder_kind, progress, cancel)
        ref = parsed
    if ref.kind == HUGGINGFACE:
        if revision and not ref.revision:
            ref = dataclasses.replace(ref, revision=revision)
        transfer = _Transfer(progress=progress, cancel=cancel, shared_cache=shared_cache)
        return _fetch_huggingface(ref, folders, folder_kind, save_as, allow_pickle, transfer)
    options = _CivitaiTransfer(allow_pickle=allow_pickle, progress=progress, cancel=cancel, shared_cache=shared_cache)
    return _fetch_civitai(ref, folders, folder_kind, save_as, _version_id(revision), options)


def reference_of(meta: ModelMetadata, file: str | None = None) -> ModelRef:
    """The reference that downloads ``file`` (default: the one the source prefers) of a search result."""
    if meta.source is Source.HUGGINGFACE:
        return parse_reference(f"{meta.model_id}/{file}" if file else meta.model_id)
    if meta.source is not Source.CIVITAI:
        raise InvalidReference(f"{meta.name} has no source to download it from.")
    raw = meta.extra.get("civitai_files") or []
    return _civitai_file_ref(meta, next((f.get("id") for f in raw if file and f.get("name") == file), None))


def download_url(meta: ModelMetadata) -> str:
    """The URL that downloads a model's file again: a CivitAI version's download link, else its remote URL."""
    if meta.source is Source.CIVITAI and meta.version_id:
        return civitai_download_url(meta.version_id)
    return meta.remote_url


def _parse_or_url(text: str) -> ModelRef | None:
    """The hub reference ``text`` names, or None for a plain http(s) URL of another host."""
    try:
        return parse_reference(text)
    except InvalidReference:
        if urlsplit(str(text).strip()).scheme in ("http", "https"):
            return None
        raise


def _folder(folders: ModelFolders | Path, kind: str) -> Path:
    folder = Path(folders).expanduser() if isinstance(folders, (str, Path)) else folders.target(kind)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pickle_allowed(allow_pickle: bool | None) -> bool:
    return bool(load_settings().get("allow_pickle")) if allow_pickle is None else allow_pickle


# --- HuggingFace ---------------------------------------------------------------------------------------


def _fetch_huggingface(
    ref: ModelRef,
    folders: ModelFolders | Path,
    kind: str | None,
    save_as: str | None,
    allow_pickle: bool | None,
    options: _Transfer,
) -> Placed:
    """Into the HuggingFace cache (shared with diffusers and every HF tool), then linked into the folder.

    ``options`` (progress, cancel, shared_cache) go to :meth:`HuggingFaceHubService.download_model`."""
    from hubloader.core.errors import PickleNotAllowed
    from hubloader.sources.huggingface import HuggingFaceHubService, link_into

    service = HuggingFaceHubService()
    revision = ref.revision or "main"
    if not ref.filename:
        repo = service.model_info(str(ref), revision=revision)
        weights = root_weights(repo)
        if len(weights) != 1:
            if any(f.name == "model_index.json" for f in repo.files):
                # A diffusers folder stays in the HF cache, where diffusers (and ComfyUI's loaders) read it.
                snapshot = service.download_model(str(ref), revision=revision, **options)
                return Placed(Path(snapshot), kind or kind_of(repo.type), repo, url=repo.remote_url)
            raise NotFound(
                f"{ref.repo_id} has {'no' if not weights else 'several'} model files at its root"
                + (f" ({', '.join(weights)})." if weights else "."),
                hint="Name one: owner/repo/path/file.safetensors.",
            )
        ref = dataclasses.replace(ref, filename=weights[0])
    assert ref.filename is not None and ref.repo_id is not None  # a HuggingFace file reference names both
    cached = service.cached_file(str(ref), revision=revision)  # pinned or offline: the disk alone
    source = service.model_info(str(ref), revision=revision) if cached is None else _cached_source(ref, cached)
    if source.format.is_pickle and not _pickle_allowed(allow_pickle):
        raise PickleNotAllowed(f"{ref.filename} in {ref.repo_id} is a pickle file ({source.format.value}).")
    kind = kind or kind_of(source.type)
    url = hf_resolve_url(ref)
    request = _hf_request(ref, _folder(folders, kind), source, save_as)
    dest = request.dest
    if source.sha256 and check_destination(request) is not None:  # link_into judges a small git file
        return Placed(dest, kind, source, reused=True, url=url, sha256=source.sha256)
    if cached is None:
        cached = service.download_model(str(ref), revision=revision, **options)
    return Placed(Path(link_into(cached, dest)), kind, source, url=url, sha256=source.sha256)


def _hf_request(ref: ModelRef, folder: Path, source: ModelMetadata, save_as: str | None) -> FileRequest:
    """Where a HuggingFace file lands in ``folder``: ``save_as``, else its own name unless a different file has
    it (another repo's model.safetensors stays; this one goes apart, :func:`hf_apart`). Without a published
    SHA256 (a small git file) the plain name, which link_into judges."""
    assert ref.filename is not None and ref.repo_id is not None  # a HuggingFace file reference names both
    name = safe_filename(save_as or Path(ref.filename).name)
    request = FileRequest(url=hf_resolve_url(ref), folder=folder, name=name, sha256=(source.sha256 or "").lower())
    if source.sha256 and not save_as:
        request = place_apart(request, hf_apart(ref.repo_id, ref.filename))
    return request


def _cached_source(ref: ModelRef, cached: Path) -> ModelMetadata:
    """What the HuggingFace cache alone says of a file: its header, and its SHA256 when its blob is named by one
    (an LFS file), so that a pinned or offline re-get asks the Hub nothing."""
    from hubloader.library.scan import describe_file

    meta = describe_file(cached)
    blob = Path(os.path.realpath(cached)).name
    meta.sha256 = blob if re.fullmatch(r"[0-9a-f]{64}", blob) else meta.sha256
    meta.source = Source.HUGGINGFACE
    meta.model_id = f"{ref.repo_id}/{ref.filename}"
    meta.remote_url = hf_resolve_url(ref)
    return meta


def hf_apart(repo_id: str, filename: str) -> str:
    """The relative path a HuggingFace file takes when its plain name is taken: ``owner__repo/<path in repo>``."""
    return f"{repo_id.replace('/', '__')}/{filename}"  # the gate's check_repo_path keeps it inside the folder


def root_weights(repo: ModelMetadata) -> list[str]:
    """A repo's top-level weight files, safetensors preferred: exactly one means "the" single-file model."""
    weights = [f for f in repo.files if "/" not in f.name and f.format is not ModelFormat.OTHER]
    safe = [f for f in weights if f.format is ModelFormat.SAFETENSORS]
    return [f.name for f in safe or weights]


# --- CivitAI -------------------------------------------------------------------------------------------


def _fetch_civitai(
    ref: ModelRef,
    folders: ModelFolders | Path,
    kind: str | None,
    save_as: str | None,
    version: int | None,
    options: _CivitaiTransfer,
) -> Placed:
    """CivitAIService picks the file (or takes the one named), verifies its SHA256 and names it; we give the folder."""
    from hubloader.sources.civitai import CivitAIService

    service = CivitAIService()
    if ref.kind == HASH:  # CivitAI's by-hash lookup names the version; keep the very file with that hash
        ref = civitai_file_with_hash(service.lookup(ref), ref.hash or "")
    if kind is None:  # the model's type decides the folder, before any byte is written
        kind = kind_of(service.get_model_details(ref, version).type)
    result = service.download_model(ref, version, download_dir=_folder(folders, kind), **options)
    path = Path(result.path)
    if save_as and path.name != save_as:  # a workflow names the file: keep its name so it loads as written
        wanted = path.with_name(safe_filename(save_as))
        if not wanted.exists():
            path = path.replace(wanted)
    source = result.metadata
    if source is not None:
        source.local_path = path
    url = download_url(source) if source is not None else ""
    return Placed(path, kind, source, reused=result.reused, url=url, sha256=result.sha256)


def present_pinned(
    text: str, index: ModelIndex, folders: ModelFolders | Path, kind: ModelType | str | None = None
) -> Placed | None:
    """A CivitAI version (``civitai:M@V``, its AIR, a download URL of that version) already placed in the folder
    it would go to and recorded with its size: nothing to ask CivitAI, so a re-``get`` makes no request and works
    offline. None otherwise (not pinned, not recorded, elsewhere, gone or of another size: the source decides)."""
    ref = _parse_or_url(text)
    if ref is None or ref.kind != CIVITAI or ref.version_id is None or ref.model_id is None:
        return None
    meta = index.find_model(civitai_id(ref.model_id, ref.version_id))
    path = Path(meta.local_path) if meta is not None and meta.local_path else None
    if meta is None or path is None or not path.is_file() or path.stat().st_size != meta.size_bytes:
        return None
    kind = kind_of(kind) if isinstance(kind, ModelType) else kind or kind_of(meta.type)
    folder = Path(folders).expanduser() if isinstance(folders, (str, Path)) else folders.target(kind)
    if not path.absolute().is_relative_to(folder.absolute()):
        return None
    if ref.file_id is not None:
        files = meta.extra.get("civitai_files") or []
        if not any(f.get("id") == ref.file_id and f.get("name") == path.name for f in files):
            return None
    return Placed(path, kind, meta, reused=True, url=download_url(meta), sha256=meta.sha256)


def civitai_file_with_hash(found: ModelMetadata, sha: str) -> ModelRef:
    """The CivitAI reference of the very file whose hash was given (a version may hold several files)."""
    file_id = next(
        (
            f.get("id")
            for f in found.extra.get("civitai_files") or []
            if sha.lower() in {str(v).lower() for v in (f.get("hashes") or {}).values()}
        ),
        None,
    )
    return _civitai_file_ref(found, file_id)


def _civitai_file_ref(version: ModelMetadata, file_id: int | str | None) -> ModelRef:
    """One file (None: the one the service prefers) of a CivitAI version the metadata describes."""
    model_id = version.extra.get("civitai_model_id")
    return ModelRef(
        CIVITAI,
        text=version.model_id,
        model_id=int(model_id) if model_id else None,
        version_id=int(version.version_id),
        file_id=int(file_id) if file_id else None,
    )


def _version_id(revision: str | None) -> int | None:
    if revision is None:
        return None
    if not str(revision).strip().isdigit():
        raise InvalidReference(f"Revision {revision!r} is not a CivitAI version id (a number).")
    return int(revision)


# --- the plan: where a file will land, before any byte ----------------------------------------------


@dataclass
class Planned:
    """Where :func:`fetch` would place a hub file and what another machine needs to fetch the same one."""

    path: Path  # after the collision rule (a same-named different file sends it apart)
    kind: str
    url: str
    sha256: str = ""
    exists: bool = False  # the very file is there already


def plan(what: str | ModelRef, folders: ModelFolders | Path, *, kind: str | None = None) -> Planned:
    """Where :func:`fetch` would place the one file ``what`` names (a HuggingFace file or a CivitAI model,
    version, file, AIR or hash), asking the source for its metadata only: nothing is downloaded or created.
    A workflow can then carry the file's name, URL and hash before it runs (ComfyUI's ``properties.models``)."""
    ref = what if isinstance(what, ModelRef) else parse_reference(what)
    if ref.kind == HUGGINGFACE:
        return _plan_huggingface(ref, folders, kind)
    from hubloader.sources.civitai import CivitAIService

    service = CivitAIService()
    if ref.kind == HASH:
        ref = civitai_file_with_hash(service.lookup(ref), ref.hash or "")
    if kind is None:
        kind = kind_of(service.get_model_details(ref).type)
    meta, _file, request = service.file_request(ref, download_dir=_target(folders, kind))
    return Planned(request.dest, kind, download_url(meta), request.sha256, _same_file(request))


def _plan_huggingface(ref: ModelRef, folders: ModelFolders | Path, kind: str | None) -> Planned:
    from hubloader.sources.huggingface import HuggingFaceHubService

    if not ref.filename:
        raise InvalidReference(
            f"{ref.text!r} names a whole repository.",
            hint="Name one file in it: owner/repo/file.safetensors (or paste the file's URL).",
        )
    source = HuggingFaceHubService().model_info(str(ref), revision=ref.revision or "main")
    kind = kind or kind_of(source.type)
    request = _hf_request(ref, _target(folders, kind), source, None)
    return Planned(request.dest, kind, hf_resolve_url(ref), request.sha256, _same_file(request))


def _target(folders: ModelFolders | Path, kind: str) -> Path:
    """``kind``'s folder, not created (a plan writes nothing)."""
    return Path(folders).expanduser() if isinstance(folders, (str, Path)) else folders.target(kind)


def _same_file(request: FileRequest) -> bool:
    """The request's file is at its destination already (a different one there is the collision rule's)."""
    try:
        return request.sha256 != "" and check_destination(request) is not None
    except HubloaderError:
        return False


# --- a plain URL ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PlainUrl:
    """A plain URL to fetch and what the caller said about it."""

    url: str
    save_as: str | None
    allow_pickle: bool | None
    confirmed: bool
    known: ModelMetadata | None = None


def _fetch_url(
    plain: _PlainUrl,
    folders: ModelFolders | Path,
    kind: str | None,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> Placed:
    """Any other http(s) address, through the gate: checked against ``known``'s SHA256 when it has one (a host
    outside the known ones needs it, and ``confirmed``); ``known`` stays the description of what came."""
    url, known = plain.url, plain.known
    if kind is None:
        raise InvalidReference(
            f"{redact_url(url)} is neither a HuggingFace nor a CivitAI address, so nothing says what kind of model it is.",
            hint="Say which type (folder) it is.",
        )
    request = FileRequest(
        url=url,
        folder=_folder(folders, kind),
        name=safe_filename(plain.save_as or Path(urlsplit(url).path).name),
        sha256=(known.sha256 if known is not None else "").lower(),
        allow_pickle=plain.allow_pickle,
        confirmed=plain.confirmed,
    )
    result = fetch_file(request, progress=progress, cancel=cancel)
    dest = request.dest
    if known is not None:
        source = dataclasses.replace(known, sha256=result.sha256, size_bytes=result.size_bytes)
        source.hashes = dict(known.hashes)
    else:
        source = ModelMetadata(
            model_id=redact_url(url),
            name=dest.stem,
            source=Source.URL,
            remote_url=redact_url(url),
            sha256=result.sha256,
            size_bytes=result.size_bytes,
        )
    source.hashes.update({k: v for k, v in result.hashes.items() if v})
    return Placed(result.path, kind, source, reused=result.reused, url=source.remote_url, sha256=result.sha256)


# --- describe, sidecars, registry ----------------------------------------------------------------------


def describe_and_register(
    path: Path,
    source: ModelMetadata | None,
    registry: ModelIndex,
    *,
    raw: dict[str, object] | None = None,
    preview: bytes | None = None,
    reused: bool = False,
    model_type: ModelType | None = None,
) -> ModelMetadata:
    """Header + source metadata → the sidecars beside the file (A1111 ``<stem>.json``, preview, frozen
    ``<stem>.hubloader.json``) and the registry entry, which is returned.

    ``raw`` is the source's own record to freeze (default: ``source`` as a dict); ``preview`` the image
    bytes (default: the source's first preview URL, when no preview sits beside the file yet). A file
    that was already there (``reused``) stays the user's: it is not put under the cache limit.
    ``model_type`` overrides what the header and source say. Sidecars that cannot be written lose
    nothing: the model is registered all the same.
    """
    from hubloader.engine.hashing import file_hashes
    from hubloader.library.scan import describe_file

    path = Path(path)
    sha = source.sha256 if source is not None else ""
    known = registry.find_model(sha) if reused and sha else None
    if known is not None and known.local_path == path.absolute() and model_type in (None, known.type):
        return registry.mark_used(known)  # described when it was fetched: nothing new to read
    if path.is_dir():  # a diffusers snapshot: no single header, no sidecars
        meta = source if source is not None else describe_file(path)
        meta.local_path = path
    else:
        meta = describe_file(path, source=source)
        meta.sha256 = meta.sha256 or sha or file_hashes(path)["sha256"]
    if model_type is not None:
        meta.type = model_type
    written = _write_sidecars(path, meta, source, raw, preview) if path.is_file() else False
    registered = registry.register_model(meta, managed=not reused)
    if not written:
        return registered
    from hubloader.library.sidecars import find_preview, sidecar_path

    return registry.set_paths(registered, sidecar_path=sidecar_path(path, ".json"), preview_path=find_preview(path))


def record(placed: Placed, registry: ModelIndex, *, model_type: ModelType | None = None) -> ModelMetadata:
    """:func:`describe_and_register` what :func:`fetch` placed, in ``registry``."""
    return describe_and_register(placed.path, placed.source, registry, reused=placed.reused, model_type=model_type)


def _write_sidecars(
    path: Path, meta: ModelMetadata, source: ModelMetadata | None, raw: dict[str, object] | None, preview: bytes | None
) -> bool:
    """True when the sidecars were written (a failure is logged: the model is registered all the same)."""
    from hubloader.library import sidecars

    try:
        if preview is None and source is not None and source.preview_urls and sidecars.find_preview(path) is None:
            preview = fetch_preview(source.preview_urls[0])
        record = raw if raw is not None else source.to_dict() if source is not None else None
        sidecars.write_download_sidecars(path, meta, raw=record, preview=preview)
    except (HubloaderError, OSError) as exc:
        log.warning("hubloader: the sidecar files of %s were not written: %s", path.name, exc)
        return False
    return True


def fetch_preview(url: str) -> bytes | None:
    """A source's preview image (capped in size); None when it cannot be had: a preview never fails a download."""
    import requests

    try:
        return fetch_preview_bytes(url, MAX_PREVIEW_BYTES)
    except (requests.RequestException, OSError, HubloaderError) as exc:
        log.info("hubloader: preview %s not fetched (%s)", redact_url(url), type(exc).__name__)
        return None


def progress_in_bytes(progress: Callable[[int, int], None] | None) -> Progress | None:
    """Adapt a ``(done_bytes, total_bytes)`` callback (job queues, ComfyUI's bar) to the engine's events."""
    if progress is None:
        return None

    def report(event: DownloadProgress) -> None:
        progress(int(event.bytes_done or 0), int(event.total or 0))

    return report
