"""HuggingFace Hub: search, download, cache and delete models, on the huggingface_hub library.

Model ids (``model_id``) for HuggingFace are:

* ``owner/repo`` — the whole repository (a diffusers folder, a LoRA repo …), fetched with
  ``snapshot_download``; :meth:`HuggingFaceHubService.download_model` returns the snapshot folder.
* ``owner/repo/path/in/repo.safetensors`` — one file of it; returns the file's path in the cache.
* ``owner/repo@revision`` or ``owner/repo@revision/path`` — the same, pinned to a branch, tag or commit.
* ``https://huggingface.co/owner/repo/resolve/<rev>/<path>`` or ``…/blob/<rev>/<path>`` (also on
  hf.co and the ``HF_ENDPOINT`` host, so mirrors work) — one file at that revision; ``…/tree/<rev>``
  or a bare repo URL — the repository. Parsing is :func:`hubloader.sources.references.parse_reference`'s.

Everything lands in the standard HuggingFace cache layout (``models--owner--repo/blobs``,
``snapshots/<commit>``, ``refs/<rev>``), so diffusers and transformers find the same files; use
:func:`link_into` to place a cached file into a host's model folder without a second copy.

Why not ``hf_hub_download`` for every file: since 1.0 it no longer resumes a partial file across
calls or processes. So LFS files asked for one by one, and LFS files of at least
:data:`RESUMABLE_MIN_BYTES` inside a repository, go through our download engine (resume from
``blobs/<sha256>.part``, parallel ranges, SHA256 verified against the Hub's etag) and are then linked
into the cache exactly as huggingface_hub would have done; small git files and the rest of a
repository go through huggingface_hub itself (``hf_hub_download``, several at once as snapshot_download
does, each checking the cancel event before it starts; what is already in the snapshot is skipped).
With a site's shared cache (:mod:`hubloader.sharedcache.cache`) every LFS file of a download goes through the
engine and the cache: copied from it, or fetched by the one worker the site elects and published.
Next to each repo we keep ``.hubloader/<commit>.json``, the commit's file list, so a download
pinned to a commit can prove itself complete from the disk alone and make no request.

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, at import, so every call here
passes ``endpoint=`` and ``token=`` explicitly and checks offline mode itself.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import posixpath
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from hubloader.core import settings as config
from hubloader.core.errors import (
    AuthRequired,
    Cancelled,
    FileNotFoundOnHub,
    GatedModel,
    HubloaderError,
    InvalidFile,
    InvalidReference,
    NetworkError,
    NotFound,
    OfflineError,
    RateLimited,
    RevisionNotFound,
    network_reason,
)
from hubloader.core.folders import looks_like_path
from hubloader.core.metadata import (
    BaseModel,
    ModelFile,
    ModelFilter,
    ModelFormat,
    ModelMetadata,
    ModelType,
    Source,
)
from hubloader.core.settings import Secret
from hubloader.gate.fetch import fetch_file
from hubloader.gate.policy import check_commit, check_repo_path, check_sha256
from hubloader.gate.request import FileRequest
from hubloader.sources.references import HUGGINGFACE, ModelRef, parse_reference

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi

    from hubloader.sharedcache.cache import SharedCache

logger = logging.getLogger(__name__)

#: The seed's default ``cache_dir``: it means "huggingface_hub's own cache", resolved at call time.
SEED_CACHE_DIR = Path("~/.cache/huggingface")

#: LFS files at least this large are fetched by our resumable engine even inside a repo snapshot.
RESUMABLE_MIN_BYTES = 32 * 1024 * 1024
SMALL_FILE_WORKERS = 8  # huggingface_hub's snapshot_download default

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNREACHABLE_HINT = "Check the connection (and HF_ENDPOINT, if set) and try again; downloads resume."
#: What :func:`_cached_pointer` returns for a file huggingface_hub recorded as absent at a commit (``.no_exist``).
_KNOWN_MISSING = object()
_MARKER_DIR = ".hubloader"  # per-repo folder in the HF cache: the file list of each fully fetched commit

# diffusers pipeline classes (tag ``diffusers:<Class>``) that name the architecture outright.
_PIPELINE_BASES = {
    "stablediffusionpipeline": BaseModel.SD15,
    "stablediffusionxlpipeline": BaseModel.SDXL,
    "stablediffusion3pipeline": BaseModel.SD3,
    "fluxpipeline": BaseModel.FLUX1,
}
# Component folders of a diffusers repo, for a single file taken out of one.
_COMPONENT_TYPES = {
    "unet": ModelType.DIFFUSION_MODEL,
    "transformer": ModelType.DIFFUSION_MODEL,
    "vae": ModelType.VAE,
    "text_encoder": ModelType.TEXT_ENCODER,
    "text_encoder_2": ModelType.TEXT_ENCODER,
    "text_encoder_3": ModelType.TEXT_ENCODER,
    "controlnet": ModelType.CONTROLNET,
}


# --- version compatibility ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _HubCompat:
    """What differs between the huggingface_hub versions we support (0.26.x … 2.x)."""

    metadata_takes_endpoint: bool  # get_hf_file_metadata(endpoint=) appeared with the httpx client
    transport_errors: tuple[type[BaseException], ...]  # connection/timeout errors of its HTTP stack


class _EndpointOption(TypedDict, total=False):
    """``get_hf_file_metadata``'s ``endpoint`` keyword, given only to the versions that take it."""

    endpoint: str


@functools.lru_cache(maxsize=1)
def _hub_compat() -> _HubCompat:
    """The one place that looks at the installed huggingface_hub. (``list_models(filter=)`` works in all.)"""
    from huggingface_hub import get_hf_file_metadata

    errors: list[type[BaseException]] = []
    for module, name in (("requests", "RequestException"), ("httpx2", "TransportError"), ("httpx", "TransportError")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return _HubCompat(
        metadata_takes_endpoint="endpoint" in inspect.signature(get_hf_file_metadata).parameters,
        transport_errors=tuple(errors),
    )


# --- model ids --------------------------------------------------------------------------------------


def parse_model_id(model_id: str) -> ModelRef:
    """A HuggingFace model id or URL (see the module docstring) as a :class:`~hubloader.sources.references.ModelRef`."""
    if looks_like_path(str(model_id)):
        raise InvalidReference(f"{str(model_id).strip()!r} is a local file path, not a HuggingFace repository id.")
    ref = parse_reference(model_id)
    if ref.kind != HUGGINGFACE or ref.repo_type != "model":
        raise InvalidReference(f"{ref.text!r} is not a HuggingFace model repository or file.")
    return ref


def is_commit_hash(revision: str | None) -> bool:
    return bool(revision and _COMMIT.fullmatch(revision))


# --- cache paths ----------------------------------------------------------------------------------


def default_hub_cache() -> Path:
    """huggingface_hub's cache dir, read from the environment now (the library froze it at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def _repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def _scratch_name(path: Path) -> Path:
    """A sibling name no other thread or process is using, for build-then-rename."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.hubloader-tmp")


def link_into(path: Path | str, dest: Path | str) -> Path:
    """Make ``dest`` show the cached file ``path`` without a second copy when the filesystem allows.

    Hardlink first (survives the HF cache being cleaned), then a symlink, a copy only as last resort.
    ``dest`` appears atomically; an existing ``dest`` that is a different file is an error.
    """
    source = Path(os.path.realpath(path))
    dest = Path(dest)
    if dest.exists():
        if os.path.samefile(source, dest):
            return dest
        raise HubloaderError(
            f"{dest} already exists and is a different file.", hint="Move it away or pick another name."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch_name(dest)
    tmp.unlink(missing_ok=True)
    for make in (os.link, os.symlink, shutil.copyfile):
        try:
            make(source, tmp)
        except OSError as exc:
            logger.debug("%s %s -> %s failed: %s", make.__name__, source, dest, exc)
            continue
        os.replace(tmp, dest)
        return dest
    raise HubloaderError(f"Could not place {source.name} at {dest}.", hint="Check that the folder is writable.")


def _link_pointer(blob: Path, pointer: Path) -> None:
    """Point ``snapshots/<commit>/<path>`` at its blob the way huggingface_hub does (relative symlink)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch_name(pointer)
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp)
        os.replace(tmp, pointer)
    except OSError:  # no symlinks here (Windows without developer mode): fall back like the library does
        link_into(blob, pointer)


def _snapshot_file(repo_folder: Path, commit: str, path: str) -> Path:
    """Where a repository file lands in the cache, once the server's commit id and file name are checked."""
    return repo_folder / "snapshots" / check_commit(commit) / check_repo_path(path)


def _write_ref(repo_folder: Path, revision: str, commit: str) -> None:
    """Remember which commit a branch or tag named, so offline and pinned lookups work."""
    if revision == commit:
        return
    ref = repo_folder / "refs" / revision
    if ref.is_file() and ref.read_text(encoding="utf-8").strip() == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch_name(ref)
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, ref)


# --- the service ------------------------------------------------------------------------------------


class HuggingFaceHubService:
    """Search the Hub, download repos and files into the HF cache, list and delete what is cached."""

    def __init__(self, token: str | Secret | None = None, cache_dir: Path | str | None = SEED_CACHE_DIR) -> None:
        if isinstance(token, Secret):
            self._token: Secret | None = token or None
        else:
            self._token = Secret(token.strip()) if token and token.strip() else config.hf_token()
        self.cache_dir = cache_dir
        self._used_caches: dict[Path, None] = {}  # cache dirs this service downloaded into (ordered set)
        self._client: HfApi | None = None

    def __repr__(self) -> str:
        return f"HuggingFaceHubService(token={'set' if self._token else 'not set'}, cache_dir={self.cache_dir!r})"

    # -- plumbing

    @property
    def client(self) -> HfApi:
        """An ``HfApi`` for the endpoint configured right now (a new one when ``HF_ENDPOINT`` changes)."""
        from huggingface_hub import HfApi

        from hubloader.core.version import __version__

        endpoint = config.hf_endpoint()
        if self._client is None or self._client.endpoint != endpoint:
            self._client = HfApi(
                endpoint=endpoint, token=self._hf_token(), library_name="hubloader", library_version=__version__
            )
        return self._client

    def _hf_token(self) -> str | bool:
        """What huggingface_hub's ``token=`` gets: ours, or False so it never falls back to its own lookup."""
        return self._token.reveal() if self._token else False

    def _cache(self, cache_dir: Path | str | None = None) -> Path:
        chosen = cache_dir if cache_dir is not None else self.cache_dir
        if chosen is None or Path(chosen) == SEED_CACHE_DIR:
            return default_hub_cache()
        return Path(chosen).expanduser()

    def _known_caches(self) -> list[Path]:
        return list(dict.fromkeys([self._cache(), *self._used_caches]))

    @contextmanager
    def _hub_errors(self, repo_id: str, *, path: str | None = None, revision: str | None = None) -> Iterator[None]:
        """Turn huggingface_hub's exceptions into ours: distinct, actionable, without the token."""
        from huggingface_hub import errors as hf

        endpoint = config.redact_url(config.hf_endpoint())
        what = f"{repo_id}/{path}" if path else repo_id
        try:
            yield
        except HubloaderError:
            raise
        except hf.GatedRepoError as exc:
            raise GatedModel(repo_id, endpoint=endpoint) from exc
        except hf.RepositoryNotFoundError as exc:
            if self._token:
                raise NotFound(f"{repo_id} was not found on {endpoint}, or your token cannot see it.") from exc
            raise RepoNotFoundOrPrivate(
                f"{repo_id} was not found on {endpoint}.",
                service=HUGGINGFACE,
                hint="Check the name; a private repository needs a HuggingFace token with access to it.",
            ) from exc
        except hf.RevisionNotFoundError as exc:
            raise RevisionNotFound(f"Revision {revision!r} does not exist in {repo_id}.") from exc
        except hf.LocalEntryNotFoundError as exc:
            if config.hf_offline() or isinstance(exc.__cause__, hf.OfflineModeIsEnabled):
                raise OfflineError(f"{what} is not in the local cache and HF_HUB_OFFLINE is set.") from exc
            raise NetworkError(
                f"Could not reach {endpoint} for {what} ({network_reason(exc)}), and it is not in the local cache.",
                hint=_UNREACHABLE_HINT,
            ) from exc
        except hf.EntryNotFoundError as exc:
            raise FileNotFoundOnHub(
                f"{path or 'The file'} does not exist in {repo_id} at {revision or 'main'}."
            ) from exc
        except hf.OfflineModeIsEnabled as exc:
            raise OfflineError(f"{what}: huggingface_hub is in offline mode.") from exc
        except hf.HfHubHTTPError as exc:
            raise _http_error(exc, what, endpoint, has_token=bool(self._token)) from exc
        except _hub_compat().transport_errors as exc:
            raise NetworkError(
                f"Could not reach {endpoint} for {what} ({network_reason(exc)}).", hint=_UNREACHABLE_HINT
            ) from exc
        except hf.HFValidationError as exc:
            raise InvalidReference(f"{what!r} is not a valid HuggingFace repository or file name.") from exc

    def whoami(self) -> str:
        """The user the token belongs to (the Hub's ``/api/whoami-v2``); AuthRequired when none is set or it is
        refused (``hubloader login`` checks a token before saving it)."""
        if not self._token:
            raise AuthRequired("No HuggingFace token is set.", service=HUGGINGFACE)
        endpoint = config.redact_url(config.hf_endpoint())
        with self._hub_errors("the token check"):
            try:
                info = self.client.whoami(token=self._token.reveal())
            except Exception as exc:  # huggingface_hub < 1.0 re-raises a 401 as a plain requests.HTTPError
                if getattr(getattr(exc, "response", None), "status_code", None) in (401, 403):
                    raise _http_error(exc, "the token check", endpoint, has_token=True) from exc
                raise
        return str(info.get("name") or "")

    # -- search and metadata

    def search_models(
        self, query: str | None = None, filter: ModelFilter | None = None, limit: int = 20
    ) -> list[ModelMetadata]:
        """Search the Hub; results are :class:`ModelMetadata` with ``source == Source.HUGGINGFACE``.

        ``filter.library`` and ``filter.tags`` become Hub tag filters (the Hub treats library names as
        tags), ``filter.task`` the pipeline tag. Base model and model type have no exact Hub filter:
        they are checked on the mapped results, scanning a few more than ``limit`` to fill the page.
        """
        if config.hf_offline():
            raise OfflineError("Searching the Hub needs the network.", hint="Unset HF_HUB_OFFLINE to search.")
        wanted = filter or ModelFilter()
        tags = [t for t in [wanted.library, *wanted.tags] if t]
        if wanted.model_type in (ModelType.LORA, ModelType.LYCORIS):
            tags.append("lora")
        post_filter = wanted.base_model is not None or wanted.model_type is not None
        check_reachable(config.hf_endpoint(), f"the search {query or ''!r}")
        with self._hub_errors(f"the search {query or ''!r}"):
            infos = self.client.list_models(
                search=query or None,
                author=wanted.author or None,
                pipeline_tag=wanted.task or None,
                filter=tags or None,
                sort=wanted.sort.huggingface() if wanted.sort else None,
                limit=limit * 5 if post_filter else limit,
                full=True,
                cardData=True,
                token=self._hf_token(),
            )
            results: list[ModelMetadata] = []
            for info in infos:
                meta = self._metadata_from_info(info)
                if _matches(meta, wanted):
                    results.append(meta)
                if len(results) >= limit:
                    break
        return results

    def model_info(self, model_id: str, revision: str = "main") -> ModelMetadata:
        """Everything the Hub says about a repo (or one file of it), with file sizes and SHA256s."""
        ref = parse_model_id(model_id)
        revision = ref.revision or revision
        assert ref.repo_id is not None  # parse_model_id: a HuggingFace reference names its repository
        if config.hf_offline():
            raise OfflineError(f"Reading {ref}'s details needs the network.", hint="Unset HF_HUB_OFFLINE.")
        with self._hub_errors(ref.repo_id, path=ref.filename, revision=revision):
            info = self.client.model_info(ref.repo_id, revision=revision, files_metadata=True, token=self._hf_token())
        meta = self._metadata_from_info(info)
        return _narrow_to_file(meta, ref.filename) if ref.filename else meta

    def repo_files(self, repo_id: str, revision: str = "main") -> list[str]:
        """The path of every file in a repository, from one light request (no per-file metadata)."""
        with self._hub_errors(repo_id, revision=revision):
            info = self.client.model_info(repo_id, revision=revision, token=self._hf_token())
        return [s.rfilename for s in info.siblings or []]

    def file_size_and_sha256(
        self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model"
    ) -> tuple[int, str]:
        """(size, SHA256 or "") of one file, from one HEAD request: an LFS file's ETag is its SHA256."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        endpoint = config.hf_endpoint()
        extra: _EndpointOption = {"endpoint": endpoint} if _hub_compat().metadata_takes_endpoint else {}
        with self._hub_errors(repo_id, path=path, revision=revision):
            url = hf_hub_url(repo_id, path, repo_type=repo_type, revision=revision, endpoint=endpoint)
            meta = get_hf_file_metadata(url, token=self._hf_token(), **extra)
        etag = (meta.etag or "").strip('"').lower()
        return int(meta.size or 0), etag if _SHA256.fullmatch(etag) else ""

    def _metadata_from_info(self, info: Any) -> ModelMetadata:
        """Map a huggingface_hub ``ModelInfo`` (any version) to our :class:`ModelMetadata`."""
        repo_id: str = info.id
        tags = list(info.tags or [])
        card = info.card_data
        card_bases = card.get("base_model") if card is not None else None
        card_bases = [card_bases] if isinstance(card_bases, str) else list(card_bases or [])
        files = [_model_file(s, repo_id, info.sha) for s in info.siblings or []]
        model_type, model_format = _classify(tags, info.library_name, info.pipeline_tag, [f.name for f in files])
        created = info.created_at or info.last_modified or datetime.now(timezone.utc)
        primary = _primary_weight(files) if model_format is not ModelFormat.DIFFUSERS else None
        return ModelMetadata(
            model_id=repo_id,
            name=repo_id.split("/")[-1],
            source=Source.HUGGINGFACE,
            type=model_type,
            base_model=_base_model(repo_id, tags, card_bases),
            version=info.sha or "",
            format=model_format,
            size_bytes=sum(f.size_bytes for f in files),
            sha256=primary.sha256 if primary else "",
            tags=tags,
            download_count=info.downloads or 0,
            like_count=info.likes or 0,
            remote_url=f"{config.hf_endpoint()}/{repo_id}",
            created_at=created,
            updated_at=info.last_modified or created,
            version_id=info.sha or "",
            files=files,
            author=info.author or repo_id.split("/")[0],
            extra={
                "pipeline_tag": info.pipeline_tag,
                "library_name": info.library_name,
                "gated": info.gated,
                "private": info.private,
                "base_models": card_bases,
            },
        )

    def peek_safetensors(self, model_id: str, revision: str = "main") -> dict[str, Any]:
        """The raw safetensors header of a remote file (``__metadata__`` and tensor entries), read by Range.

        Lets the caller learn architecture, type and training metadata before downloading gigabytes.
        """
        ref = parse_model_id(model_id)
        if not ref.filename:
            raise InvalidReference(f"{model_id!r} names a repository; name one file (owner/repo/file.safetensors).")
        revision = ref.revision or revision
        assert ref.repo_id is not None  # parse_model_id: a HuggingFace reference names its repository
        if config.hf_offline():
            raise OfflineError(f"Reading {ref}'s header needs the network.", hint="Unset HF_HUB_OFFLINE.")
        from huggingface_hub.errors import SafetensorsParsingError

        with self._hub_errors(ref.repo_id, path=ref.filename, revision=revision):
            try:
                parsed = self.client.parse_safetensors_file_metadata(
                    ref.repo_id, ref.filename, revision=revision, token=self._hf_token()
                )
            except SafetensorsParsingError as exc:
                raise InvalidFile(f"{ref} on the Hub is not a readable safetensors file.") from exc
        header: dict[str, Any] = {"__metadata__": dict(parsed.metadata or {})} if parsed.metadata else {}
        for name, tensor in parsed.tensors.items():
            header[name] = {
                "dtype": tensor.dtype,
                "shape": list(tensor.shape),
                "data_offsets": list(tensor.data_offsets),
            }
        return header

    # -- download

    def download_model(
        self,
        model_id: str,
        revision: str = "main",
        allow_patterns: list[str] | None = None,
        ignore_patterns: list[str] | None = None,
        cache_dir: Path | str | None = None,
        *,
        prefer_safetensors: bool = True,
        progress: Callable[[Any], None] | None = None,
        cancel: threading.Event | None = None,
        shared_cache: SharedCache | str | None = None,
    ) -> Path:
        """Download a repo (→ its snapshot folder) or one file (→ its path) into the HF cache.

        A second call for the same revision downloads nothing; with a commit hash (in the id or as
        ``revision``) it makes no HTTP request at all. With ``prefer_safetensors`` (default), pickle
        weights (.bin/.ckpt/.pt) are skipped in folders that also hold .safetensors, unless an
        ``allow_patterns`` entry names their extension. Setting ``cancel`` stops the download engine
        mid-file (its ``.part`` is kept to resume) and huggingface_hub between small files; both raise
        Cancelled. ``shared_cache`` (a :class:`~hubloader.sharedcache.cache.SharedCache` or its URL; default
        ``HUBLOADER_SHARED_CACHE``, else the ``shared_cache`` setting) lets one worker of a site ask the
        Hub for each LFS file; small git-stored files (no SHA256 known up front) always come from the Hub.
        """
        ref = parse_model_id(model_id)
        revision = ref.revision or revision or "main"
        assert ref.repo_id is not None  # parse_model_id: a HuggingFace reference names its repository
        cache = self._cache(cache_dir)
        self._used_caches[cache] = None
        # Before huggingface_hub is even imported: a pinned or offline re-get is a look at the disk.
        settled = self._settled_file(ref.repo_id, ref.filename, revision, cache) if ref.filename else None
        if settled is not None:
            return settled
        with self._hub_errors(ref.repo_id, path=ref.filename, revision=revision):
            if ref.filename:
                return self._download_file(ref.repo_id, ref.filename, revision, cache, progress, cancel, shared_cache)
            return self._download_repo(
                ref.repo_id,
                revision,
                cache,
                allow_patterns,
                ignore_patterns,
                prefer_safetensors,
                progress,
                cancel,
                shared_cache,
            )

    def _download_file(
        self,
        repo_id: str,
        path: str,
        revision: str,
        cache: Path,
        progress: Callable[[Any], None] | None,
        cancel: threading.Event | None,
        shared_cache: SharedCache | str | None,
    ) -> Path:
        if config.hf_offline():  # download_model looked in the cache already
            raise OfflineError(f"{repo_id}/{path} is not in the local cache and HF_HUB_OFFLINE is set.")
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        endpoint = config.hf_endpoint()
        extra: _EndpointOption = {"endpoint": endpoint} if _hub_compat().metadata_takes_endpoint else {}
        meta = get_hf_file_metadata(
            hf_hub_url(repo_id, path, revision=revision, endpoint=endpoint), token=self._hf_token(), **extra
        )
        if not meta.commit_hash or not meta.etag:
            raise NetworkError(f"{endpoint} did not answer like a HuggingFace Hub for {repo_id}/{path}.")
        check_commit(meta.commit_hash)
        if _SHA256.fullmatch(meta.etag):
            pointer = self._fetch_lfs(
                repo_id, path, meta.commit_hash, meta.etag, meta.size, cache, progress, cancel, shared_cache
            )
        else:  # a small git-stored file: the library is simplest, and cannot need resuming
            pointer = self._fetch_small(repo_id, path, meta.commit_hash, cache, cancel)
        _write_ref(_repo_folder(cache, repo_id), revision, meta.commit_hash)
        return pointer

    def cached_file(self, model_id: str, revision: str = "main", cache_dir: Path | str | None = None) -> Path | None:
        """One file's path in the cache, from the disk alone and without a request, when asking the Hub could
        not change the answer: pinned to a commit (in the id or as ``revision``), or offline. None otherwise."""
        ref = parse_model_id(model_id)
        if not ref.filename or not ref.repo_id:
            return None
        return self._settled_file(ref.repo_id, ref.filename, ref.revision or revision or "main", self._cache(cache_dir))

    def _settled_file(self, repo_id: str, path: str, revision: str, cache: Path) -> Path | None:
        """:meth:`cached_file` for a parsed id; a file the cache knows to be missing at that commit raises."""
        if not (is_commit_hash(revision) or config.hf_offline()):
            return None
        cached = _cached_pointer(cache, repo_id, path, revision)
        if cached is _KNOWN_MISSING:
            raise FileNotFoundOnHub(f"{path} does not exist in {repo_id} at {revision}.")
        return cached if isinstance(cached, Path) else None

    def _fetch_lfs(
        self,
        repo_id: str,
        path: str,
        commit: str,
        sha256: str,
        size: int | None,
        cache: Path,
        progress: Callable[[Any], None] | None,
        cancel: threading.Event | None,
        shared_cache: SharedCache | str | None,
    ) -> Path:
        """Put one LFS file into the cache through the gate: ``blobs/<sha256>`` + snapshot link.

        Through the site's shared cache when there is one: the blob is copied from it, or this worker is
        elected to download it and publish it there.
        """
        from huggingface_hub import hf_hub_url

        folder = _repo_folder(cache, repo_id)
        pointer = _snapshot_file(folder, commit, path)
        if pointer.exists():
            return pointer
        blob = folder / "blobs" / check_sha256(sha256)
        if not blob.exists():
            # The resolve URL pinned to the commit (not the CDN location): it redirects to a fresh
            # signed URL on every attempt, so a resume days later still works.
            url = hf_hub_url(repo_id, path, revision=commit, endpoint=config.hf_endpoint())
            request = FileRequest(
                url=url,
                folder=blob.parent,
                name=blob.name,  # the blob is named by its hash; the record keeps the file's own name
                sha256=blob.name,
                size=size,
                token_service="huggingface",
                token=self._token,
                source="huggingface",
                format_name=posixpath.basename(path),
                allow_pickle=True,  # which pickles to take is the caller's choice, made on the file's name
                expect="model" if ModelFormat.from_filename(path) is not ModelFormat.OTHER else "any",
                record={"source": "huggingface", "url": url},
            )
            fetch_file(request, progress=progress, cancel=cancel, shared_cache=shared_cache)
        _link_pointer(blob, pointer)
        return pointer

    def _fetch_small(self, repo_id: str, path: str, commit: str, cache: Path, cancel: threading.Event | None) -> Path:
        """One small file through huggingface_hub, which cannot be stopped mid-file: ``cancel`` is checked first."""
        from huggingface_hub import hf_hub_download

        if cancel is not None and cancel.is_set():
            raise Cancelled(f"Download of {repo_id} cancelled before {path}.")
        _snapshot_file(_repo_folder(cache, repo_id), commit, path)  # the gate's checks on what the server named
        return Path(
            hf_hub_download(
                repo_id, path, revision=commit, cache_dir=cache, endpoint=config.hf_endpoint(), token=self._hf_token()
            )
        )

    def _download_repo(
        self,
        repo_id: str,
        revision: str,
        cache: Path,
        allow_patterns: list[str] | None,
        ignore_patterns: list[str] | None,
        prefer_safetensors: bool,
        progress: Callable[[Any], None] | None,
        cancel: threading.Event | None,
        shared_cache: SharedCache | str | None,
    ) -> Path:
        from huggingface_hub import snapshot_download

        from hubloader.sharedcache.cache import resolve_shared_cache

        select = functools.partial(
            _select_files, allow=allow_patterns, ignore=ignore_patterns, prefer_safetensors=prefer_safetensors
        )
        if is_commit_hash(revision) or config.hf_offline():
            complete = _complete_snapshot(cache, repo_id, revision, select)
            if complete is not None:
                return complete
            if config.hf_offline():
                # Fetched by someone else (diffusers, transformers): trust the library's own lookup.
                return Path(
                    snapshot_download(
                        repo_id, revision=revision, cache_dir=cache, local_files_only=True, token=self._hf_token()
                    )
                )
        info = self.client.model_info(repo_id, revision=revision, files_metadata=True, token=self._hf_token())
        commit: str = check_commit(info.sha or "")
        siblings = {check_repo_path(s.rfilename): s for s in info.siblings or []}
        wanted = select(list(siblings))
        if not wanted:
            raise FileNotFoundOnHub(
                f"No file of {repo_id} at {revision} matches the given patterns.",
                hint="Check allow_patterns / ignore_patterns against the repository's file list.",
            )
        folder = _repo_folder(cache, repo_id)
        snapshot = folder / "snapshots" / commit
        missing = [p for p in wanted if not (snapshot / p).exists()]  # a branch's second call: none
        site = resolve_shared_cache(shared_cache) if any(siblings[p].lfs for p in missing) else None
        # Large LFS files go to our engine; with a site cache every LFS file does (its SHA256 is known),
        # so a fleet asks the Hub for each once.
        by_engine = [
            p
            for p in missing
            if (lfs := siblings[p].lfs) and (site is not None or lfs.get("size", 0) >= RESUMABLE_MIN_BYTES)
        ]
        small = [p for p in missing if p not in by_engine]
        # Small files in parallel, as snapshot_download does (latency, not bandwidth, bounds them); each
        # checks ``cancel`` before it starts. The engine's go one by one: it parallelises each itself.
        with ThreadPoolExecutor(max_workers=SMALL_FILE_WORKERS, thread_name_prefix="hubloader-hf") as pool:
            futures = [pool.submit(self._fetch_small, repo_id, p, commit, cache, cancel) for p in small]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        for path in by_engine:
            lfs = siblings[path].lfs
            assert lfs is not None  # by_engine holds LFS files only
            self._fetch_lfs(repo_id, path, commit, lfs["sha256"], lfs["size"], cache, progress, cancel, site)
        _write_ref(folder, revision, commit)
        _write_file_list(folder, commit, list(siblings))
        return snapshot

    # -- the local cache

    def list_cached_models(self) -> list[ModelMetadata]:
        """What is in the HF cache(s): a whole-repo entry for diffusers folders, one per weight file otherwise."""
        from huggingface_hub import scan_cache_dir

        models: list[ModelMetadata] = []
        for cache in self._known_caches():
            if not cache.is_dir():
                continue
            info = scan_cache_dir(cache)
            for warning in info.warnings:
                logger.debug("HF cache %s: %s", cache, warning)
            for repo in sorted(info.repos, key=lambda r: r.repo_id):
                if repo.repo_type == "model" and repo.revisions:
                    models.extend(_cached_entries(repo))
        return models

    def delete_cached_model(self, model_id: str) -> bool:
        """Delete a cached repo (every revision) or one cached file, freeing blobs no one else uses.

        Returns False when nothing matching was cached.
        """
        from huggingface_hub import scan_cache_dir

        ref = parse_model_id(model_id)
        deleted = False
        for cache in self._known_caches():
            if not cache.is_dir():
                continue
            info = scan_cache_dir(cache)
            for repo in info.repos:
                if repo.repo_type != "model" or repo.repo_id != ref.repo_id:
                    continue
                revisions = [r for r in repo.revisions if not ref.revision or ref.revision in (r.commit_hash, *r.refs)]
                if ref.filename:
                    removed = [_delete_file(repo, r, ref.filename) for r in revisions]
                    deleted = deleted or any(removed)
                    info = scan_cache_dir(cache)  # the emptied revisions are now those without files
                    revisions = [r for again in info.repos if again.repo_id == ref.repo_id for r in again.revisions]
                    revisions = [r for r in revisions if not r.files]
                if revisions:
                    strategy = info.delete_revisions(*(r.commit_hash for r in revisions))
                    logger.info("Freeing %d bytes of %s in %s", strategy.expected_freed_size, str(ref), cache)
                    strategy.execute()
                    deleted = True
        return deleted


# --- errors ---------------------------------------------------------------------------------------


class RepoNotFoundOrPrivate(NotFound, AuthRequired):
    """The Hub hides private repos from anonymous callers: missing and private look the same."""


def check_reachable(endpoint: str, what: str) -> None:
    """One TCP connect to ``endpoint``, NetworkError at once when it is refused or the host unknown.

    huggingface_hub >= 1.0 retries such a connection five times with backoff (23 s) before a search fails;
    a connect first makes a dead endpoint one immediate error. Skipped when a proxy carries the requests
    (the endpoint itself may be unreachable directly, yet fine through the proxy)."""
    import socket
    import urllib.request

    parts = urlsplit(endpoint)
    if not parts.hostname:
        return
    proxies = urllib.request.getproxies()
    if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(parts.hostname):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=10).close()
    except OSError as exc:
        raise NetworkError(
            f"Could not reach {config.redact_url(endpoint)} for {what} ({network_reason(exc)}).", hint=_UNREACHABLE_HINT
        ) from exc


def _http_error(exc: Any, what: str, endpoint: str, *, has_token: bool) -> HubloaderError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        if has_token:
            return AuthRequired(
                f"{endpoint} refused the HuggingFace token for {what} (HTTP {status}).",
                service=HUGGINGFACE,
                hint="The token is invalid, expired or lacks read access; a new token with read access is needed.",
            )
        return AuthRequired(f"{endpoint} requires a token for {what} (HTTP {status}).", service=HUGGINGFACE)
    if status == 429:
        retry_after = getattr(exc.response, "headers", {}).get("Retry-After")
        return RateLimited(
            f"{endpoint} is rate limiting requests for {what}.",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    return NetworkError(f"{endpoint} answered HTTP {status} for {what}.")


# --- mapping helpers --------------------------------------------------------------------------------


def _classify(
    tags: list[str], library: str | None, pipeline_tag: str | None, files: list[str]
) -> tuple[ModelType, ModelFormat]:
    """What kind of repo this is, from its tags, library, pipeline tag and file names."""
    lowered = {t.lower() for t in tags}
    weights = [f for f in files if ModelFormat.from_filename(f) is not ModelFormat.OTHER]
    single_format = ModelFormat.from_filename(_primary_name(weights)) if weights else ModelFormat.SAFETENSORS
    if "lora" in lowered or library == "peft" or any(t.startswith("base_model:adapter:") for t in lowered):
        return ModelType.LORA, single_format
    if lowered & {"textual_inversion", "textual-inversion", "embedding", "embeddings"}:
        return ModelType.EMBEDDING, single_format
    diffusers = "model_index.json" in files or library == "diffusers" or "diffusers" in lowered
    if "controlnet" in lowered:
        return ModelType.CONTROLNET, ModelFormat.DIFFUSERS if diffusers else single_format
    if diffusers:
        return ModelType.BASE_MODEL, ModelFormat.DIFFUSERS
    if pipeline_tag in ("text-to-image", "image-to-image") or (weights and library is None):
        return ModelType.BASE_MODEL, single_format
    return ModelType.OTHER, ModelFormat.OTHER


def _base_model(repo_id: str, tags: list[str], card_bases: list[str]) -> BaseModel:
    """``base_model:`` entries and card data first (what it was made from), then the repo's own tags and id."""
    for tag in tags:
        lowered = tag.lower()
        if lowered.startswith("diffusers:") and lowered[len("diffusers:") :] in _PIPELINE_BASES:
            return _PIPELINE_BASES[lowered[len("diffusers:") :]]
    declared = [t for t in tags if t.lower().startswith("base_model:")] + [f"base_model:{b}" for b in card_bases]
    for hints in (declared, tags, [repo_id]):
        found = BaseModel.from_hf_tags(hints)
        if found is not BaseModel.UNKNOWN:
            return found
    return BaseModel.UNKNOWN


def _model_file(sibling: Any, repo_id: str, commit: str | None) -> ModelFile:
    lfs = sibling.lfs or {}
    return ModelFile(
        name=sibling.rfilename,
        size_bytes=lfs.get("size") or sibling.size or 0,
        url=f"{config.hf_endpoint()}/{repo_id}/resolve/{commit or 'main'}/{sibling.rfilename}",
        sha256=lfs.get("sha256") or "",
        format=ModelFormat.from_filename(sibling.rfilename),
    )


def _primary_name(names: list[str]) -> str:
    """The file a single-file repo is about: a root .safetensors before anything else."""
    return sorted(names, key=lambda n: ("/" in n, ModelFormat.from_filename(n) is not ModelFormat.SAFETENSORS, n))[0]


def _primary_weight(files: list[ModelFile]) -> ModelFile | None:
    weights = [f for f in files if f.format is not ModelFormat.OTHER]
    if not weights:
        return None
    name = _primary_name([f.name for f in weights])
    return next(f for f in weights if f.name == name)


def file_type(repo: ModelMetadata, path: str) -> ModelType:
    """The type of one file of a repo: its diffusers component folder's (``vae/`` …), else the repo's (the root
    weights of a diffusers repo are a base model)."""
    component = _COMPONENT_TYPES.get(path.split("/")[0]) if "/" in path else None
    return component or (repo.type if repo.format is not ModelFormat.DIFFUSERS else ModelType.BASE_MODEL)


def _narrow_to_file(meta: ModelMetadata, path: str) -> ModelMetadata:
    """A repo's metadata, turned into the metadata of one of its files."""
    match = next((f for f in meta.files if f.name == path), None)
    if match is None:
        raise FileNotFoundOnHub(f"{path} does not exist in {meta.model_id} at {meta.version or 'main'}.")
    return dataclasses.replace(
        meta,
        model_id=f"{meta.model_id}/{path}",
        name=posixpath.basename(path),
        type=file_type(meta, path),
        format=match.format,
        size_bytes=match.size_bytes,
        sha256=match.sha256,
        files=[match],
        remote_url=match.url,
    )


def _matches(meta: ModelMetadata, wanted: ModelFilter) -> bool:
    if wanted.base_model is not None and not meta.base_model.compatible_with(wanted.base_model):
        return False
    loras = (ModelType.LORA, ModelType.LYCORIS)  # the Hub does not tell LoCon from LoRA
    if (
        wanted.model_type is not None
        and meta.type is not wanted.model_type
        and not {meta.type, wanted.model_type} <= set(loras)
    ):
        return False
    return True


# --- file selection and completeness ----------------------------------------------------------------


def _select_files(
    paths: list[str], *, allow: list[str] | None, ignore: list[str] | None, prefer_safetensors: bool
) -> list[str]:
    """The repo files a download wants: the patterns (as snapshot_download applies them), minus
    pickle weights sitting next to safetensors ones unless an allow pattern names their extension."""
    from huggingface_hub.utils import filter_repo_objects

    selected = list(filter_repo_objects(paths, allow_patterns=allow, ignore_patterns=ignore))
    if not prefer_safetensors:
        return selected
    safe_folders = {posixpath.dirname(p) for p in selected if ModelFormat.from_filename(p) is ModelFormat.SAFETENSORS}
    asked = {Path(p).suffix.lower() for p in allow or []}

    def redundant(path: str) -> bool:
        return (
            ModelFormat.from_filename(path).is_pickle
            and posixpath.dirname(path) in safe_folders
            and Path(path).suffix.lower() not in asked
        )

    return [p for p in selected if not redundant(p)]


def _write_file_list(folder: Path, commit: str, paths: list[str]) -> None:
    """Record a commit's full file list: with it, a pinned download can prove itself complete offline."""
    target = folder / _MARKER_DIR / f"{commit}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch_name(target)
    tmp.write_text(json.dumps({"files": sorted(paths)}), encoding="utf-8")
    os.replace(tmp, target)


def _complete_snapshot(
    cache: Path, repo_id: str, revision: str, select: Callable[[list[str]], list[str]]
) -> Path | None:
    """The snapshot folder if every wanted file of that revision is on disk, from the cache alone."""
    folder = _repo_folder(cache, repo_id)
    commit = revision if is_commit_hash(revision) else _read_ref(folder, revision)
    if commit is None:
        return None
    try:
        listing = json.loads((folder / _MARKER_DIR / f"{commit}.json").read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    snapshot = folder / "snapshots" / commit
    wanted = select(listing)
    return snapshot if wanted and all((snapshot / p).exists() for p in wanted) else None


def _read_ref(folder: Path, revision: str) -> str | None:
    try:
        commit = (folder / "refs" / revision).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if is_commit_hash(commit) else None


def _cached_pointer(cache: Path, repo_id: str, path: str, revision: str) -> Path | object | None:
    """The cached file (a Path), :data:`_KNOWN_MISSING`, or None, read from the cache layout as
    huggingface_hub's ``try_to_load_from_cache`` reads it, without importing the library (a pinned re-get
    pays neither its import nor a request)."""
    folder = _repo_folder(cache, repo_id)
    commit = revision if is_commit_hash(revision) else _read_ref(folder, revision)
    if commit is None:
        return None
    pointer = _snapshot_file(folder, commit, path)
    if pointer.is_file():
        return pointer
    return _KNOWN_MISSING if (folder / ".no_exist" / commit / path).is_file() else None


# --- cached entries and deletion --------------------------------------------------------------------


def _cached_entries(repo: Any) -> list[ModelMetadata]:
    """Entries for one cached repo, from its newest revision."""
    revision = max(repo.revisions, key=lambda r: r.last_modified)
    names = {str(f.file_path.relative_to(revision.snapshot_path)).replace(os.sep, "/"): f for f in revision.files}
    modified = datetime.fromtimestamp(revision.last_modified, timezone.utc)
    base = ModelMetadata(
        model_id=repo.repo_id,
        name=repo.repo_id.split("/")[-1],
        source=Source.HUGGINGFACE,
        base_model=_base_model(repo.repo_id, [], []),
        version=revision.commit_hash,
        version_id=revision.commit_hash,
        size_bytes=revision.size_on_disk,
        local_path=revision.snapshot_path,
        remote_url=f"{config.hf_endpoint()}/{repo.repo_id}",
        author=repo.repo_id.split("/")[0],
        created_at=modified,
        updated_at=modified,
        extra={"refs": sorted(revision.refs)},
    )
    files = [
        ModelFile(
            name=name,
            size_bytes=f.size_on_disk,
            sha256=f.blob_path.name if _SHA256.fullmatch(f.blob_path.name) else "",
            format=ModelFormat.from_filename(name),
        )
        for name, f in sorted(names.items())
    ]
    weights = [f for f in files if f.format is not ModelFormat.OTHER]
    if "model_index.json" in names or not weights:
        kind, fmt = _classify([], None, None, list(names))
        return [dataclasses.replace(base, type=kind, format=fmt, files=files)]
    return [
        dataclasses.replace(
            base,
            model_id=f"{repo.repo_id}/{f.name}",
            name=posixpath.basename(f.name),
            type=_COMPONENT_TYPES.get(f.name.split("/")[0], ModelType.OTHER) if "/" in f.name else ModelType.OTHER,
            format=f.format,
            size_bytes=f.size_bytes,
            sha256=f.sha256,
            files=[f],
            local_path=Path(names[f.name].file_path),
        )
        for f in weights
    ]


def _delete_file(repo: Any, revision: Any, path: str) -> bool:
    """Remove one file from a cached revision, and its blob when no other snapshot uses it."""
    pointer = revision.snapshot_path / path
    target = next((f for f in revision.files if Path(f.file_path) == pointer), None)
    if target is None:
        return False
    shared = any(
        f.blob_path == target.blob_path and Path(f.file_path) != pointer for r in repo.revisions for f in r.files
    )
    pointer.unlink()
    if not shared:
        Path(target.blob_path).unlink(missing_ok=True)
    return True
