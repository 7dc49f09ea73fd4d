"""HuggingFace Hub: search, download, cache and delete models, on the huggingface_hub library.

Why over 600 lines: this is one class, the specification's ``HuggingFaceHubService``, whose public methods
are the contract; what is not the service lives beside it (``hf_cache``, ``hf_metadata``, ``hf_errors``).

Model ids (``model_id``) for HuggingFace are:

* ``owner/repo`` — the whole repository (a diffusers folder, a LoRA repo …), fetched as
  ``snapshot_download`` would; :meth:`HuggingFaceHubService.download_model` returns the snapshot folder.
* ``owner/repo/path/in/repo.safetensors`` — one file of it; returns the file's path in the cache.
* ``owner/repo@revision`` or ``owner/repo@revision/path`` — the same, pinned to a branch, tag or commit.
* ``https://huggingface.co/owner/repo/resolve/<rev>/<path>`` or ``…/blob/<rev>/<path>`` (also on
  hf.co and the ``HF_ENDPOINT`` host, so mirrors work) — one file at that revision; ``…/tree/<rev>``
  or a bare repo URL — the repository. Parsing is :func:`hubloader.sources.references.parse_reference`'s.

Everything lands in the standard HuggingFace cache layout (``models--owner--repo/blobs``,
``snapshots/<commit>``, ``refs/<rev>``), so diffusers and transformers find the same files; use
:func:`link_into` to place a cached file into a host's model folder without a second copy.

Why not ``hf_hub_download``: since 1.0 it no longer resumes a partial file across calls or processes, and
what it fetches would bypass the gate (:func:`hubloader.gate.fetch.fetch_file`: allowed hosts at every
redirect hop, the destination, the pickle policy on the bytes, the shared cache). So every file, LFS or small
git-stored, goes through the gate and our download engine (resume from ``blobs/<id>.part``, parallel ranges,
an LFS file's SHA256 verified against the Hub's etag, a small file's bytes against its git blob id) and is
then linked into the cache exactly as huggingface_hub would have done. Inside a repository, LFS files of at
least :data:`RESUMABLE_MIN_BYTES` go one by one (the engine parallelises each), the rest several at once as
snapshot_download does; what is already in the snapshot is skipped.
With a site's shared cache (:mod:`hubloader.sharedcache.cache`) every LFS file of a download goes through the
engine and the cache: copied from it, or fetched by the one worker the site elects and published.
The cache layout is :mod:`hubloader.sources.hf_cache`'s, the mapping of the Hub's answers
:mod:`hubloader.sources.hf_metadata`'s, huggingface_hub's versions and exceptions :mod:`hubloader.sources.hf_errors`'s;
the public names of those (``link_into``, ``default_hub_cache``, ``is_commit_hash``, ``RepoNotFoundOrPrivate``) are
importable from here too.

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, at import, so every call here
passes ``endpoint=`` and ``token=`` explicitly and checks offline mode itself.
"""

from __future__ import annotations

import functools
import logging
import posixpath
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hubloader.core import settings as config
from hubloader.core.errors import (
    AuthRequired,
    FileNotFoundOnHub,
    GatedModel,
    InvalidFile,
    InvalidReference,
    NetworkError,
    OfflineError,
)
from hubloader.core.folders import looks_like_path
from hubloader.core.metadata import ModelFilter, ModelFormat, ModelMetadata, ModelType
from hubloader.core.settings import Secret
from hubloader.gate.fetch import fetch_file
from hubloader.gate.policy import check_commit, check_repo_path
from hubloader.gate.request import FileRequest
from hubloader.sources.hf_cache import (
    KNOWN_MISSING,
    SHA256_HEX,
    cached_pointer,
    check_blob_id,
    check_git_blob,
    complete_snapshot,
    default_hub_cache,
    delete_cached_file,
    is_commit_hash,
    link_into,
    link_pointer,
    repo_cache_folder,
    snapshot_file,
    write_file_list,
    write_ref,
)
from hubloader.sources.hf_errors import (
    EndpointOption,
    RepoNotFoundOrPrivate,
    check_reachable,
    http_error,
    hub_compat,
    hub_errors,
)
from hubloader.sources.hf_metadata import (
    cached_entries,
    file_type,
    matches_filter,
    metadata_from_info,
    narrow_to_file,
    select_files,
)
from hubloader.sources.references import HUGGINGFACE, ModelRef, parse_reference

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi

    from hubloader.sharedcache.cache import SharedCache

__all__ = [
    "file_type",
    "RESUMABLE_MIN_BYTES",
    "SEED_CACHE_DIR",
    "HuggingFaceHubService",
    "RepoNotFoundOrPrivate",
    "default_hub_cache",
    "is_commit_hash",
    "link_into",
    "parse_model_id",
]

logger = logging.getLogger(__name__)
_Answer = TypeVar("_Answer")

#: The seed's default ``cache_dir``: it means "huggingface_hub's own cache", resolved at call time.
SEED_CACHE_DIR = Path("~/.cache/huggingface")

#: LFS files at least this large are fetched by our resumable engine even inside a repo snapshot.
RESUMABLE_MIN_BYTES = 32 * 1024 * 1024
SMALL_FILE_WORKERS = 8  # huggingface_hub's snapshot_download default


# --- model ids --------------------------------------------------------------------------------------


def parse_model_id(model_id: str) -> ModelRef:
    """A HuggingFace model id or URL (see the module docstring) as a :class:`~hubloader.sources.references.ModelRef`."""
    if looks_like_path(str(model_id)):
        raise InvalidReference(f"{str(model_id).strip()!r} is a local file path, not a HuggingFace repository id.")
    ref = parse_reference(model_id)
    if ref.kind != HUGGINGFACE or ref.repo_type != "model":
        raise InvalidReference(f"{ref.text!r} is not a HuggingFace model repository or file.")
    return ref


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

    def _hub_errors(
        self, repo_id: str, *, path: str | None = None, revision: str | None = None
    ) -> AbstractContextManager[None]:
        """:func:`~hubloader.sources.hf_errors.hub_errors` for this service's token."""
        return hub_errors(repo_id, path=path, revision=revision, has_token=bool(self._token))

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
                    raise http_error(exc, "the token check", endpoint, has_token=True) from exc
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
                meta = metadata_from_info(info)
                if matches_filter(meta, wanted):
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
        meta = metadata_from_info(info)
        return narrow_to_file(meta, ref.filename) if ref.filename else meta

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
        extra: EndpointOption = {"endpoint": endpoint} if hub_compat().metadata_takes_endpoint else {}
        with self._hub_errors(repo_id, path=path, revision=revision):
            url = hf_hub_url(repo_id, path, repo_type=repo_type, revision=revision, endpoint=endpoint)
            meta = get_hf_file_metadata(url, token=self._hf_token(), **extra)
        etag = (meta.etag or "").strip('"').lower()
        return int(meta.size or 0), etag if SHA256_HEX.fullmatch(etag) else ""

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

        A second call for the same revision downloads nothing; with a commit hash (in the id or as ``revision``)
        it makes no HTTP request at all; with the Hub unreachable, a branch's cached copy serves. With
        ``prefer_safetensors`` (default), pickle weights (.bin/.ckpt/.pt) are skipped in folders that also hold
        .safetensors, unless an ``allow_patterns`` entry names their extension. Setting ``cancel`` stops the
        download mid-file (its ``.part`` is kept to resume) and raises Cancelled. ``shared_cache`` (a
        :class:`~hubloader.sharedcache.cache.SharedCache` or its URL; default ``HUBLOADER_SHARED_CACHE``, else the
        ``shared_cache`` setting) lets one worker of a site ask the Hub for each LFS file; small git-stored files
        (no SHA256 known up front) always come from the Hub.
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
        select = functools.partial(
            select_files, allow=allow_patterns, ignore=ignore_patterns, prefer_safetensors=prefer_safetensors
        )
        with self._hub_errors(ref.repo_id, path=ref.filename, revision=revision):
            if ref.filename:
                return self._download_file(ref.repo_id, ref.filename, revision, cache, progress, cancel, shared_cache)
            return self._download_repo(ref.repo_id, revision, cache, select, progress, cancel, shared_cache)

    def _hub_or_cache(
        self, repo_id: str, path: str | None, revision: str, ask: Callable[[], _Answer], known: Callable[[], object]
    ) -> _Answer | Path:
        """``ask()``, the one question that names a branch or tag's commit; when the Hub cannot be asked (unreachable
        or failing), what the cache last saw of that revision (``known()``, a Path) serves, as hf_hub_download
        does. Failures after that question (the transfer itself) are not covered: they never serve an old commit."""
        try:
            with self._hub_errors(repo_id, path=path, revision=revision):
                return ask()
        except NetworkError:
            cached = known()
            if not isinstance(cached, Path):
                raise
            logger.warning("hubloader: the Hub could not be asked about %s; using the cached copy", repo_id)
            return cached

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
        extra: EndpointOption = {"endpoint": endpoint} if hub_compat().metadata_takes_endpoint else {}
        answer = self._hub_or_cache(
            repo_id,
            path,
            revision,
            lambda: get_hf_file_metadata(
                hf_hub_url(repo_id, path, revision=revision, endpoint=endpoint), token=self._hf_token(), **extra
            ),
            lambda: cached_pointer(cache, repo_id, path, revision),
        )
        if isinstance(answer, Path):
            return answer
        meta = answer
        if not meta.commit_hash or not meta.etag:
            raise NetworkError(f"{endpoint} did not answer like a HuggingFace Hub for {repo_id}/{path}.")
        check_commit(meta.commit_hash)
        # An LFS file's ETag is its SHA256; a small git-stored file's is its git blob id.
        sha256 = meta.etag if SHA256_HEX.fullmatch(meta.etag) else ""
        pointer = self._fetch_blob(
            repo_id,
            path,
            meta.commit_hash,
            meta.etag,
            sha256=sha256,
            size=meta.size,
            cache=cache,
            progress=progress,
            cancel=cancel,
            shared_cache=shared_cache,
        )
        write_ref(repo_cache_folder(cache, repo_id), revision, meta.commit_hash)
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
        cached = cached_pointer(cache, repo_id, path, revision)
        if cached is KNOWN_MISSING:
            raise FileNotFoundOnHub(f"{path} does not exist in {repo_id} at {revision}.")
        return cached if isinstance(cached, Path) else None

    def _fetch_blob(
        self,
        repo_id: str,
        path: str,
        commit: str,
        blob_id: str,
        *,
        sha256: str,
        size: int | None,
        cache: Path,
        progress: Callable[[Any], None] | None,
        cancel: threading.Event | None,
        shared_cache: SharedCache | str | None,
    ) -> Path:
        """Put one repository file into the cache through the gate: ``blobs/<blob_id>`` + snapshot link.

        LFS files: ``blob_id`` and ``sha256`` are the file's SHA256, the engine verifies it, and a site's shared
        cache serves it (copied from it, or fetched by the one worker elected and published). Small git-stored
        files: ``blob_id`` is the git blob id (what huggingface_hub names their blobs by), no SHA256 is published,
        and the bytes are checked against that id here (the gate's trust step knows SHA256s only).
        """
        from huggingface_hub import hf_hub_url

        folder = repo_cache_folder(cache, repo_id)
        pointer = snapshot_file(folder, commit, path)
        if pointer.exists():
            return pointer
        blob = folder / "blobs" / check_blob_id(blob_id)
        if not blob.exists():
            # The resolve URL pinned to the commit (not the CDN location): it redirects to a fresh
            # signed URL on every attempt, so a resume days later still works.
            url = hf_hub_url(repo_id, path, revision=commit, endpoint=config.hf_endpoint())
            request = FileRequest(
                url=url,
                folder=blob.parent,
                name=blob.name,  # the blob is named by its hash; the record keeps the file's own name
                sha256=sha256,
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
            if not sha256:
                check_git_blob(blob, blob_id, f"{repo_id}/{path}")
        link_pointer(blob, pointer)
        return pointer

    def _download_repo(
        self,
        repo_id: str,
        revision: str,
        cache: Path,
        select: Callable[[list[str]], list[str]],
        progress: Callable[[Any], None] | None,
        cancel: threading.Event | None,
        shared_cache: SharedCache | str | None,
    ) -> Path:
        from huggingface_hub import snapshot_download

        from hubloader.sharedcache.cache import resolve_shared_cache

        if is_commit_hash(revision) or config.hf_offline():
            complete = complete_snapshot(cache, repo_id, revision, select)
            if complete is not None:
                return complete
            if config.hf_offline():
                # Fetched by someone else (diffusers, transformers): trust the library's own lookup.
                return Path(
                    snapshot_download(
                        repo_id, revision=revision, cache_dir=cache, local_files_only=True, token=self._hf_token()
                    )
                )
        answer = self._hub_or_cache(
            repo_id,
            None,
            revision,
            lambda: self.client.model_info(repo_id, revision=revision, files_metadata=True, token=self._hf_token()),
            lambda: complete_snapshot(cache, repo_id, revision, select),
        )
        if isinstance(answer, Path):
            return answer
        info = answer
        commit: str = check_commit(info.sha or "")
        siblings = {check_repo_path(s.rfilename): s for s in info.siblings or []}
        wanted = select(list(siblings))
        if not wanted:
            raise FileNotFoundOnHub(
                f"No file of {repo_id} at {revision} matches the given patterns.",
                hint="Check allow_patterns / ignore_patterns against the repository's file list.",
            )
        folder = repo_cache_folder(cache, repo_id)
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
        rest = [p for p in missing if p not in by_engine]

        def fetch(path: str, progress: Callable[[Any], None] | None) -> Path:
            sibling = siblings[path]
            lfs = sibling.lfs
            return self._fetch_blob(
                repo_id,
                path,
                commit,
                lfs["sha256"] if lfs else sibling.blob_id or "",
                sha256=lfs["sha256"] if lfs else "",
                size=lfs["size"] if lfs else sibling.size,
                cache=cache,
                progress=progress,
                cancel=cancel,
                shared_cache=site,
            )

        # Small files in parallel, as snapshot_download does (latency, not bandwidth, bounds them), each
        # through the gate like the large ones. The large go one by one: the engine parallelises each itself.
        try:
            with ThreadPoolExecutor(max_workers=SMALL_FILE_WORKERS, thread_name_prefix="hubloader-hf") as pool:
                futures = [pool.submit(fetch, p, None) for p in rest]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
            for path in by_engine:
                fetch(path, progress)
        except AuthRequired as exc:
            if info.gated:  # the Hub shows a gated repo's file list to all; its files need the terms accepted
                raise GatedModel(repo_id, endpoint=config.redact_url(config.hf_endpoint())) from exc
            raise
        write_ref(folder, revision, commit)
        write_file_list(folder, commit, list(siblings))
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
                    models.extend(cached_entries(repo))
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
                    removed = [delete_cached_file(repo, r, ref.filename) for r in revisions]
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
