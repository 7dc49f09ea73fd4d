"""CivitAI over its REST API v1: search, details, by-hash lookup and verified downloads.

Why over 600 lines: this is one class, the specification's ``CivitAIService`` (its methods are the
contract) and the HTTP client it needs; the JSON mapping lives in ``civitai_metadata``.

Every answer becomes a :class:`~hubloader.core.metadata.ModelMetadata` for ONE model version, whose
``model_id`` is ``civitai:<modelId>@<versionId>`` (see :func:`hubloader.sources.references.civitai_id`).

Protocol facts (routes, error bodies, the browser sniffing that turns errors into login pages)
are in the project's CivitAI reference. The client speaks to ``hubloader.core.settings.civitai_endpoint()``
read at call time, sends a non-browser User-Agent so failures come back as JSON reasons, and sends
the API key only as an ``Authorization`` header to that host, never in a URL.

The mapping of CivitAI's JSON to :class:`~hubloader.core.metadata.ModelMetadata` (AIRs, files, recommended
weights) is :mod:`hubloader.sources.civitai_metadata`'s; its public names are importable from here too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from hubloader.core.errors import (
    AuthRequired,
    DownloadsDisabled,
    EarlyAccess,
    HubloaderError,
    InvalidReference,
    NetworkError,
    NotFound,
    RateLimited,
    network_reason,
)
from hubloader.core.metadata import (
    BaseModel,
    DownloadResult,
    ModelFile,
    ModelMetadata,
    ModelType,
    SortBy,
)
from hubloader.core.settings import Secret, civitai_endpoint, civitai_token, load_settings, redact_text, redact_url
from hubloader.core.version import USER_AGENT
from hubloader.engine.hashing import verify_checksum
from hubloader.engine.ratelimit import RateLimiter, limiter_for, retry_after_seconds
from hubloader.gate.fetch import fetch_file
from hubloader.gate.policy import place_apart
from hubloader.gate.request import FileRequest
from hubloader.sources.civitai_metadata import (
    WEIGHTED_TYPES,
    describe_file,
    file_with_hash,
    files_with_hashes,
    html_to_text,
    merge_versions,
    metadata_from_civitai,
    model_for,
    pick_file,
    pick_version,
    search_hit,
    thumbs_rating,
)
from hubloader.sources.references import (
    CIVITAI,
    HASH,
    ModelRef,
    civitai_download_url,
    parse_hash,
    parse_reference,
)

__all__ = [
    "PERIODS",
    "WEIGHTED_TYPES",
    "CivitAIService",
    "html_to_text",
    "metadata_from_civitai",
    "pick_file",
    "thumbs_rating",
]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from hubloader.engine.download import DownloadProgress
    from hubloader.sharedcache.cache import SharedCache

#: The periods CivitAI's search takes (``period=``), in its spelling.
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")


#: Connection failures a retry does not cure (the endpoint is down or misnamed): reported without retrying.
_DEAD_ENDPOINT = ("connection refused", "host name not found")


class CivitAIService:
    """Client of CivitAI's REST API v1 (``BASE_URL``, or the ``CIVITAI_ENDPOINT`` mirror/test server).

    ``rate_limit``: requests per second for this client's API calls (the download route included).
    ``None`` shares the process-wide CivitAI limiter (``hubloader.engine.ratelimit.limiter_for("civitai")``,
    1 request/s), so the registry, the CLI and the UI stay polite together; a number gives this
    client its own limiter, as the seed's ``RateLimiter(rate_limit)``.
    ``cache_dir`` is kept for the seed's signature: answers are not cached here (stats change; the
    registry is the cache of what CivitAI said).
    """

    BASE_URL = "https://civitai.com/api/v1"
    #: Retries of a request that failed with 429/503 or a network error.
    max_retries = 3
    #: First back-off in seconds when the server gives no Retry-After (doubles each retry).
    retry_backoff = 1.0
    #: Longest Retry-After we wait out; beyond it RateLimited is raised at once.
    max_retry_after = 60.0
    timeout = (10.0, 60.0)
    #: Hashes per batched by-hash request (the API's cap).
    hash_batch = 100
    #: Pages a search may read while local filtering discards results.
    max_search_pages = 10

    def __init__(
        self,
        api_key: str | Secret | None = None,
        cache_dir: Path = Path("~/.cache/civitai"),
        rate_limit: float | None = None,
    ) -> None:
        if isinstance(api_key, str):
            api_key = Secret(api_key.strip()) if api_key.strip() else None
        self._api_key = api_key or None
        self.cache_dir = Path(cache_dir).expanduser()
        self.rate_limiter = limiter_for("civitai") if rate_limit is None else RateLimiter(rate_limit)
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"CivitAIService(api_url={self.api_url!r}, api_key={'set' if self.api_key else 'not set'})"

    # --- configuration ---------------------------------------------------------------------------

    @property
    def api_key(self) -> Secret | None:
        """The key given to the constructor, else ``CIVITAI_API_TOKEN``/``CIVITAI_API_KEY``/the settings file."""
        return self._api_key or civitai_token()

    @property
    def site_url(self) -> str:
        return civitai_endpoint()

    @property
    def api_url(self) -> str:
        """Where requests go now: ``CIVITAI_ENDPOINT`` + ``/api/v1`` (``BASE_URL`` by default)."""
        return f"{self.site_url}/api/v1"

    def whoami(self) -> str:
        """The user the API key belongs to (``/api/v1/me``); AuthRequired when none is set or CivitAI refuses it."""
        if not self.api_key:
            raise AuthRequired("No CivitAI API key is set.", service=CIVITAI)
        me = self._get("me", what="The CivitAI token check")
        return str(me.get("username") or "") if isinstance(me, dict) else ""

    # --- lookups ---------------------------------------------------------------------------------

    def search_models(
        self,
        query: str | None = None,
        type: ModelType | str | None = None,
        base_model: BaseModel | str | None = None,
        sort: SortBy | str = SortBy.POPULARITY,
        limit: int = 20,
        nsfw: bool | None = None,
        period: str | None = None,
    ) -> list[ModelMetadata]:
        """Search models; every result really has the ``type`` and ``base_model`` asked for.

        CivitAI's filters are looser than ours (its "SDXL" family, LoCon among LoRAs …), so results
        are filtered again here, and pages are read (by cursor) until ``limit`` results are found.
        Each result describes the newest version that matches ``base_model``.
        """
        wanted_type = ModelType.parse(type) if type else None
        wanted_base = BaseModel.parse(base_model) if base_model else None
        nsfw = load_settings().get("nsfw") if nsfw is None else nsfw
        params: dict[str, Any] = {
            "limit": min(100, max(limit, 20)),
            "sort": SortBy.parse(sort).civitai(),
            "nsfw": "true" if nsfw else "false",
        }
        if query:
            params["query"] = query
        if wanted_type and wanted_type.civitai_names():
            params["types"] = wanted_type.civitai_names()
        if wanted_base and wanted_base.civitai_names():
            params["baseModels"] = wanted_base.civitai_names()
        if period:
            params["period"] = _parse_period(period)
        results: list[ModelMetadata] = []
        seen: set[int] = set()
        for _ in range(self.max_search_pages):
            page = self._get("models", params, what=f"search {query or ''}".strip())
            for model in page.get("items") or []:
                if model.get("id") in seen:
                    continue
                seen.add(model.get("id"))
                meta = search_hit(model, wanted_type, wanted_base, self.site_url)
                if meta is not None:
                    results.append(meta)
            cursor = _next_cursor(page.get("metadata") or {})
            if len(results) >= limit or not cursor or not page.get("items"):
                break
            params["cursor"] = cursor
        return results[:limit]

    def get_model_details(self, model_id: int | str | ModelRef, version_id: int | None = None) -> ModelMetadata:
        """One model (its newest version, or ``version_id``); ``model_id`` may also be any CivitAI reference."""
        ref = _civitai_ref(model_id, version_id)
        if ref.model_id is None:
            # _civitai_ref: a reference without a model id names a version
            return self.get_model_version(ref.version_id)  # type: ignore[arg-type]
        model = self._get(f"models/{ref.model_id}", what=f"CivitAI model {ref.model_id}")
        version = pick_version(model, ref.version_id)
        return self._describe(model, version)

    def get_model_version(self, version_id: int | str) -> ModelMetadata:
        """One model version (the version document, completed with its model's tags and description)."""
        version = self._get(f"model-versions/{int(version_id)}", what=f"CivitAI model version {version_id}")
        return self._with_model(version)

    def find_by_hash(self, file_hash: str) -> ModelMetadata | None:
        """The version whose file has this hash (SHA256, AutoV1/V2/V3, BLAKE3, CRC32); None if CivitAI has none.

        The metadata describes the matching file (``sha256``, ``hashes``, ``size_bytes``), not the primary one.
        """
        ref = parse_hash(file_hash)
        version = self._version_by_hash(ref.hash or "")
        return self._with_model(version, file_hash=ref.hash) if version is not None else None

    def _version_by_hash(self, value: str) -> dict[str, Any] | None:
        """The version document of the file with this hash (any kind CivitAI stores), None if it has none."""
        try:
            version: dict[str, Any] = self._get(f"model-versions/by-hash/{value.upper()}", what=f"hash {value}")
        except NotFound:
            return None
        return version

    def find_by_hashes(self, hashes: Iterable[str]) -> dict[str, ModelMetadata]:
        """Look many hashes up: ``{hash (lower-case): metadata}``, unknown ones absent.

        CivitAI's batch endpoint takes SHA256s only (64 hex, at most 100 a request) and refuses a whole request
        with any other element, so SHA256s go in batches of ``hash_batch`` and shorter hashes (AutoV2 from an A1111
        infotext, AutoV3, CRC32 …) one ``GET …/by-hash/{hash}`` each, as does every hash of a batch it refused.
        """
        wanted = list(dict.fromkeys(parse_hash(h).hash or "" for h in hashes))
        full = [h for h in wanted if len(h) == 64]
        found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # hash → (version doc, matched file)
        singles = [h for h in wanted if len(h) != 64]
        for start in range(0, len(full), self.hash_batch):
            batch = full[start : start + self.hash_batch]
            answer = self._batch_by_hash(batch)
            if answer is None:
                singles += batch
                continue
            found.update(files_with_hashes(answer, set(batch)))
        for value in singles:
            version = self._version_by_hash(value)
            found.update(files_with_hashes([version] if version else [], {value}))
        models = self._models_by_id({v.get("modelId") for v, _ in found.values()})
        return {
            h: self._from_version_document(version, models.get(version.get("modelId", 0)), file)
            for h, (version, file) in found.items()
        }

    def _batch_by_hash(self, batch: list[str]) -> list[dict[str, Any]] | None:
        """The version documents the batch endpoint finds for these SHA256s; None when it refuses the request
        (a 400, 404 or 405 from a CivitAI that changed the route): the caller then asks for each hash alone."""
        try:
            answer = self._request("POST", "model-versions/by-hash", json=[h.upper() for h in batch], what="hashes")
        except (AuthRequired, RateLimited):
            raise
        except (NotFound, NetworkError) as exc:
            log.info("hubloader: CivitAI's batch by-hash lookup failed (%s); asking hash by hash", exc)
            return None
        except HubloaderError as exc:  # 400: the batch was refused as a whole
            log.info("hubloader: CivitAI refused a batch by-hash lookup (%s); asking hash by hash", exc)
            return None
        return answer if isinstance(answer, list) else []

    def lookup(self, reference: str | ModelRef) -> ModelMetadata:
        """Any CivitAI reference or hash (id, AIR, URL, ``civitai:M@V``) → metadata; NotFound if unknown."""
        ref = reference if isinstance(reference, ModelRef) else parse_reference(str(reference))
        if ref.kind == HASH:
            meta = self.find_by_hash(ref.hash or "")
            if meta is None:
                raise NotFound(f"CivitAI knows no file with hash {ref.hash}.")
            return meta
        if ref.kind != CIVITAI:
            raise InvalidReference(f"{ref.text} is not a CivitAI reference.")
        if ref.version_id is not None:
            return self.get_model_version(ref.version_id)
        # parse_reference: a CivitAI reference without a version id names a model
        return self.get_model_details(ref.model_id)  # type: ignore[arg-type]

    # --- downloads -------------------------------------------------------------------------------

    def file_request(
        self,
        model_id: int | str | ModelRef,
        version_id: int | None = None,
        download_dir: Path | str | None = None,
        *,
        allow_pickle: bool | None = None,
    ) -> tuple[ModelMetadata, ModelFile, FileRequest]:
        """What :meth:`download_model` would fetch, decided before any byte: the version's metadata, the file
        it picks, and the gate's request with its destination after the collision rule (a same-named different
        file already there sends it to ``<stem>-<version><suffix>``). Asks CivitAI for the version only; a
        workflow can name the file as it will be placed before it runs."""
        from hubloader.core.folders import folder_for, safe_filename

        ref = _civitai_ref(model_id, version_id)
        meta = self.get_model_details(ref)
        chosen = pick_file(
            meta.extra.get("civitai_files") or [], meta.type, file_id=ref.file_id, params=dict(ref.download_params)
        )
        if chosen is None:
            raise NotFound(
                f"CivitAI model {meta.name!r} version {meta.version!r} has no downloadable model file.",
                hint="It may be archived, or the file asked for does not exist; pick another on its page.",
            )
        file = describe_file(chosen)
        version = int(meta.version_id)

        def resolve() -> str:
            return self._signed_url(version, chosen.get("id"))

        request = FileRequest(
            url="",  # the signed storage URL, asked for only when the bytes come from CivitAI
            folder=Path(download_dir).expanduser() if download_dir is not None else folder_for(meta.type),
            name=safe_filename(file.name or f"{meta.name}-{meta.version_id}"),
            sha256=(file.sha256 or "").lower(),
            published_size=file.size_bytes or None,
            token_service="civitai",
            token=self.api_key,
            source="civitai",
            allow_pickle=allow_pickle,
            resolve=resolve,
            # With a shared cache only the worker the site elects asks CivitAI (sharedcache).
            record={"source": "civitai", "air": meta.air},
        )
        name = Path(request.name)  # a same-named different file stays: this one gets its version id in its name
        request = place_apart(request, f"{name.stem}-{version}{name.suffix}")
        return meta, file, request

    def download_model(
        self,
        model_id: int | str | ModelRef,
        version_id: int | None = None,
        download_dir: Path | str | None = None,
        *,
        allow_pickle: bool | None = None,
        progress: Callable[[DownloadProgress], None] | None = None,
        cancel: threading.Event | None = None,
        shared_cache: SharedCache | str | None = None,
    ) -> DownloadResult:
        """Download a version's model file, verify its SHA256 and place it; ``result.metadata`` describes it.

        The file is the creator's primary one unless a better one exists (SafeTensor over pickle;
        pruned fp16 for checkpoints), or the one a download URL/AIR named (``?type=..``, ``+fileId``).
        Without ``download_dir`` it goes to the host's folder for its type (loras, checkpoints …).
        A file already there with the same SHA256 is kept (``reused``). Pickle files (.ckpt/.pt) need
        ``allow_pickle`` (default: the ``allow_pickle`` setting). ``progress`` and ``cancel`` go to the
        download engine (``cancel`` keeps the ``.part`` for a later resume). ``shared_cache`` (a
        :class:`~hubloader.sharedcache.cache.SharedCache` or its URL; default ``HUBLOADER_SHARED_CACHE``) lets one
        worker of a site ask CivitAI for the file.
        """
        meta, file, request = self.file_request(model_id, version_id, download_dir, allow_pickle=allow_pickle)
        result = fetch_file(request, progress=progress, cancel=cancel, shared_cache=shared_cache)
        meta.sha256 = result.sha256
        meta.hashes = {**file.hashes, "SHA256": result.sha256}
        meta.size_bytes = result.size_bytes
        meta.format = file.format
        meta.local_path = result.path
        result.metadata = meta
        return result

    def _signed_url(self, version_id: int, file_id: int | None) -> str:
        """Ask the download route for the file's short-lived storage URL (a 307), raising its reason."""
        url = civitai_download_url(version_id, endpoint=self.site_url)
        params = {"fileId": file_id} if file_id else None
        response = self._send("GET", url, params=params, allow_redirects=False, stream=True)
        with response:
            if response.is_redirect or response.status_code in (301, 302, 303, 307, 308):
                location = response.headers.get("Location", "")
                if location:
                    return requests.compat.urljoin(response.url, location)
            if response.status_code == 200 and not _is_text(response):
                return response.url  # a mirror serving the file itself
            raise self._error(response, f"the download of CivitAI version {version_id}")

    # --- integrity -------------------------------------------------------------------------------

    def verify_checksum(self, file_path: Path | str, expected_hash: str) -> bool:
        """True if the file's SHA256 is ``expected_hash`` (64 hex) or starts with it (AutoV2, 10 hex).

        Case-insensitive; any other value is never a match. A missing file raises FileNotFoundError.
        """
        return verify_checksum(file_path, expected_hash)

    # --- HTTP ------------------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None, *, what: str) -> Any:
        return self._request("GET", path, params=params, what=what)

    def _request(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """One API call → its JSON, or the matching Hubloader error with the server's reason."""
        response = self._send(method, f"{self.api_url}/{path}", **kwargs)
        with response:
            if response.status_code >= 400 or _is_html(response):
                raise self._error(response, what)
            try:
                return response.json()
            except ValueError:
                raise NetworkError(f"CivitAI sent an unreadable answer for {what}.") from None

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with rate limiting, the key header, and retries on 429/503 and network errors."""
        headers = self._auth_headers(url)
        attempt = 0
        while True:
            self.rate_limiter.wait_if_needed()
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                # a refused connection or an unknown host will not answer a second later: say so at once
                if attempt < self.max_retries and network_reason(exc) not in _DEAD_ENDPOINT:
                    time.sleep(self.retry_backoff * 2**attempt)
                    attempt += 1
                    continue
                raise NetworkError(
                    f"CivitAI at {redact_url(self.site_url)} is unreachable ({network_reason(exc)}).",
                    hint="Check the connection (and CIVITAI_ENDPOINT, if set), then try again.",
                ) from exc
            if response.status_code in (429, 503) and attempt < self.max_retries:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is not None and wait > self.max_retry_after:
                    return response  # too long to wait here: the caller raises RateLimited with it
                response.close()
                time.sleep(wait if wait is not None else self.retry_backoff * 2**attempt)
                attempt += 1
                continue
            return response

    def _auth_headers(self, url: str) -> dict[str, str]:
        """The key goes only to the CivitAI host itself."""
        key = self.api_key
        if not key or urlsplit(url).netloc != urlsplit(self.site_url).netloc:
            return {}
        return {"Authorization": f"Bearer {key.reveal()}"}

    def _error(self, response: requests.Response, what: str) -> HubloaderError:
        """The exception for a failed answer, carrying the server's own reason (never the key)."""
        status = response.status_code
        body = _json_or_none(response)
        error = body.get("error") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(error, str) and error is not None:
            error = str(error)[:300]  # a validation error object
        reason = redact_text(str(message or error or response.reason or f"HTTP {status}"), self.api_key)
        text = f"{what}: {reason}"
        if _is_html(response):
            if status in (200, 401, 403):
                return AuthRequired(
                    f"{what}: CivitAI answered with a login page (HTTP {status}), not the file.", service=CIVITAI
                )
            return NetworkError(f"{what}: CivitAI answered with a web page (HTTP {status}), not JSON.")
        lowered = reason.lower()
        if "disabled downloads" in lowered:
            return DownloadsDisabled(text)
        if status == 403 and ((error or "").lower() == "early access" or "early access" in lowered):
            deadline = body.get("deadline") if isinstance(body, dict) else None
            return EarlyAccess(f"{text}{f' (until {deadline})' if deadline else ''}")
        if status in (401, 403):
            if self.api_key and status == 401:
                return AuthRequired(
                    f"{what}: CivitAI refused the API key ({reason}).",
                    service=CIVITAI,
                    hint="The API key is invalid or expired.",
                )
            return AuthRequired(text, service=CIVITAI)
        if status in (404, 410):
            return NotFound(text)
        if status == 429:
            return RateLimited(text, retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if status == 400:
            return HubloaderError(f"CivitAI rejected the request for {text}.", hint="Check the ids and filters given.")
        return NetworkError(f"{what}: CivitAI answered HTTP {status} ({reason}).")

    # --- assembling metadata ---------------------------------------------------------------------

    def _with_model(self, version: dict[str, Any], file_hash: str | None = None) -> ModelMetadata:
        """A version document plus its model's document (tags, description, creator, thumbs-down)."""
        model_id = version.get("modelId")
        try:
            model = self._get(f"models/{int(model_id)}", what=f"CivitAI model {model_id}") if model_id else None
        except NotFound:  # hidden or archived model; the version document alone still says a lot
            model = None
        file = file_with_hash(version, file_hash) if file_hash else None
        return self._from_version_document(version, model, file)

    def _from_version_document(
        self, version: dict[str, Any], model: dict[str, Any] | None, file: dict[str, Any] | None
    ) -> ModelMetadata:
        model = model or model_for(version, {})
        in_model: dict[str, Any] = next(
            (v for v in model.get("modelVersions") or [] if v.get("id") == version.get("id")), {}
        )
        return self._describe(model, merge_versions(in_model, version), file=file, complete=True)

    def _models_by_id(self, ids: set[Any]) -> dict[int, dict[str, Any]]:
        """Model documents for many ids, 100 per list request (``ids=`` filter, NSFW included)."""
        wanted = sorted(int(i) for i in ids if i)
        models: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), 100):
            batch = wanted[start : start + 100]
            params = {"ids": ",".join(map(str, batch)), "limit": len(batch), "nsfw": "true"}
            for model in self._get("models", params, what="models by id").get("items") or []:
                models[int(model["id"])] = model
        return models

    def _describe(
        self,
        model: dict[str, Any],
        version: dict[str, Any],
        *,
        file: dict[str, Any] | None = None,
        complete: bool = False,
    ) -> ModelMetadata:
        """Metadata for a version. Unless ``complete`` (already the version document), the version document
        is fetched when only its example images' generation data, missing here, can still give a weight."""
        meta = metadata_from_civitai(model, version, file=file, site_url=self.site_url)
        images_known = any(isinstance(i, dict) and i.get("meta") for i in version.get("images") or [])
        if (
            not complete
            and not images_known
            and meta.recommended_weight is None
            and meta.type in WEIGHTED_TYPES
            and version.get("id")
        ):
            try:
                full = self._get(f"model-versions/{int(version['id'])}", what=f"CivitAI model version {version['id']}")
            except NotFound:
                return meta
            meta = metadata_from_civitai(model, merge_versions(version, full), file=file, site_url=self.site_url)
        return meta


def _civitai_ref(model_id: int | str | ModelRef, version_id: int | None = None) -> ModelRef:
    """A model id as int, digits or any CivitAI reference (``civitai:M@V``, AIR, URL); ``version_id`` wins."""
    if isinstance(model_id, ModelRef):
        ref = model_id
    elif isinstance(model_id, int) or str(model_id).strip().isdigit():
        ref = ModelRef(CIVITAI, text=str(model_id), model_id=int(model_id))
    else:
        ref = parse_reference(str(model_id))
        if ref.kind != CIVITAI:
            raise InvalidReference(f"{ref.text} is not a CivitAI model.", hint="Give a CivitAI id, URL or AIR.")
    if version_id is not None:
        ref = ModelRef(
            CIVITAI,
            text=ref.text,
            model_id=ref.model_id,
            version_id=int(version_id),
            file_id=ref.file_id,
            download_params=ref.download_params,
        )
    if ref.model_id is None and ref.version_id is None:
        raise InvalidReference(f"{ref.text!r} names no CivitAI model or version.")
    return ref


# --- small helpers ---------------------------------------------------------------------------------


def _parse_period(period: str) -> str:
    for name in PERIODS:
        if name.lower() == str(period).strip().lower():
            return name
    raise ValueError(f"period {period!r} is not one of {', '.join(PERIODS)}")


def _next_cursor(metadata: dict[str, Any]) -> str | None:
    """``nextCursor``, else the ``cursor`` inside ``nextPage`` (older answers); None on the last page."""
    if metadata.get("nextCursor") not in (None, ""):
        return str(metadata["nextCursor"])
    next_page = metadata.get("nextPage")
    if next_page:
        from urllib.parse import parse_qs

        values = parse_qs(urlsplit(str(next_page)).query).get("cursor")
        return values[0] if values else None
    return None


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_html(response: requests.Response) -> bool:
    return "text/html" in response.headers.get("Content-Type", "").lower()


def _is_text(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    return content_type.startswith(("text/", "application/json"))
