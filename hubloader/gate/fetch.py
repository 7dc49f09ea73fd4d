"""The one entry point of every download: :func:`fetch_file` (and, under the same host and token rules, the small
reads that are not downloads: :func:`fetch_preview_bytes`, :func:`read_byte_range`).

In this order, in one place: the source's host (and every redirect hop's), the destination (a plain name
inside its folder, never over a different file), trust (the published SHA256, the pickle policy on the name
and on the bytes), free space for the published size, the shared cache, then the engine.
"""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from hubloader.core.errors import AuthRequired, HubloaderError, NetworkError, NotFound
from hubloader.core.metadata import DownloadResult
from hubloader.core.settings import Secret, redact_url
from hubloader.engine.download import DownloadProgress, check_free_space, download_file
from hubloader.engine.partfile import partial_ranges
from hubloader.engine.speeds import record_download
from hubloader.gate import policy
from hubloader.gate.request import FileRequest
from hubloader.sharedcache.cache import SharedCache, fetch_via_shared_cache

if TYPE_CHECKING:
    import requests

Progress = Callable[[DownloadProgress], None]
#: Redirects a preview may take (each hop checked like a download's).
MAX_PREVIEW_HOPS = 5
#: The faults of a destination folder (rather than of the network): a name or path too long, a read-only or
#: forbidden folder, a file where a folder should be.
STORAGE_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR})


def fetch_file(
    request: FileRequest,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    shared_cache: SharedCache | str | None = None,
) -> DownloadResult:
    """Fetch what ``request`` describes to ``request.dest`` (or reuse the same file there), or refuse it
    before the first byte. ``shared_cache``: a site cache or its URL (None: the configured one). A folder that
    cannot take the file (read-only, a name or path too long for its file system) is one
    :class:`~hubloader.core.errors.HubloaderError` naming the file; a ``.part`` already written is kept."""
    try:
        return _fetch(request, progress, cancel, shared_cache)
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        where = exc.filename or request.folder
        raise HubloaderError(
            f"{request.name} cannot be saved ({where}: {exc.strerror or exc}); nothing was downloaded.",
            hint="Choose a writable folder (and HUBLOADER_HOME, which holds the download locks), or a shorter name.",
        ) from None


def _fetch(
    request: FileRequest,
    progress: Progress | None,
    cancel: threading.Event | None,
    shared_cache: SharedCache | str | None,
) -> DownloadResult:
    request = _checked(request)
    reused = policy.check_destination(request)
    if reused is not None:
        return reused
    policy.check_pickle_name(request)
    _check_space(request)
    request.folder.mkdir(parents=True, exist_ok=True)

    def from_origin(target: Path) -> DownloadResult:
        fetched = _from_origin(request, target, progress, cancel)
        record_download(fetched)  # every transfer from the internet: what an install plan's estimate uses
        return fetched

    result = fetch_via_shared_cache(
        request.sha256,
        request.dest,
        from_origin,
        cache=shared_cache,
        size=request.size,
        record={"file_name": Path(request.shown_name).name, **request.record},
        progress=progress,
        cancel=cancel,
    )
    _check_bytes(request, result.path)
    return result


def _checked(request: FileRequest) -> FileRequest:
    """The request's own data, validated: its SHA256, and its host when the origin is the only way to the bytes.

    A file known by its SHA256 may come from the shared cache, which never asks the origin: then the host is
    judged by :func:`_from_origin`, before the origin is asked (a URL resolved later is judged there too)."""
    if request.sha256:
        policy.check_sha256(request.sha256)
    elif request.url or request.resolve is None:
        policy.check_host(request, request.url)
    return request


def _check_space(request: FileRequest) -> None:
    """Refuse before the first byte when the size the source publishes does not fit (minus a ``.part``'s bytes)."""
    total = request.size or request.published_size
    if total:
        _, done = partial_ranges(request.dest)
        check_free_space(request.dest, total - sum(end - start for start, end in done))


def _from_origin(
    request: FileRequest, target: Path, progress: Progress | None, cancel: threading.Event | None
) -> DownloadResult:
    """The engine, with the host rule applied at every redirect hop and the token only where it belongs."""
    url = request.url or request.resolve()  # type: ignore[misc]  # _checked: one of them is given
    policy.check_host(request, url)
    return download_file(
        url,
        target,
        expected_sha256=request.sha256 or None,
        expected_size=request.size,
        token=policy.token_for(request, url),
        service=request.source,
        resolve_url=request.resolve,
        expect=request.expect,
        check_url=lambda hop: policy.check_host(request, hop),
        check_part=lambda part: policy.check_saved_bytes(request, part),
        progress=progress,
        cancel=cancel,
    )


def _check_bytes(request: FileRequest, path: Path) -> None:
    """The pickle policy on what arrived from the shared cache (the origin's bytes were judged on their ``.part``,
    before they got their name, by the engine's ``check_part``); a refused file is removed."""
    try:
        policy.check_saved_bytes(request, path)
    except Exception:
        path.unlink(missing_ok=True)
        raise


def fetch_preview_bytes(url: str, limit: int) -> bytes | None:
    """A preview image (at most ``limit`` bytes; None: too big) from an allowed host, every redirect hop
    checked, no token sent. Raises what :mod:`requests` raises, or :class:`~hubloader.gate.policy.DownloadRefused`."""
    import requests

    from hubloader.core.version import USER_AGENT

    first = url
    for _ in range(MAX_PREVIEW_HOPS + 1):
        if not policy.host_allowed(url, storage=url != first and policy.is_civitai_url(first)):
            raise policy.DownloadRefused(f"{policy.host_of(url) or url} is not a known model host; no preview.")
        headers = {"User-Agent": USER_AGENT}
        with requests.get(url, timeout=(10, 30), stream=True, headers=headers, allow_redirects=False) as r:
            if r.is_redirect:
                url = urljoin(url, r.headers["Location"])
                continue
            r.raise_for_status()
            data = r.raw.read(limit + 1, decode_content=True)
        return data if len(data) <= limit else None
    raise requests.TooManyRedirects(f"more than {MAX_PREVIEW_HOPS} redirects")


def read_byte_range(
    url: str,
    start: int,
    stop: int,
    *,
    token_service: str | None = None,
    token: Secret | None = None,
    timeout: float = 30.0,
) -> tuple[bytes, int | None]:
    """Bytes ``start`` to ``stop`` (exclusive) of a file on an allowed host, and the file's size when the server
    says it (``Content-Range``, else a 200's ``Content-Length``): a header read, never a download.

    The gate's rules apply as to a download: the host of the URL and of every redirect hop must be allowed, and
    ``token_service``'s token (``token``, else the configured one) goes only to that service's own endpoint, over
    https or loopback. A server that ignores Range is read from byte 0 and closed once ``stop`` bytes arrived.
    Raises DownloadRefused (host), AuthRequired (401/403), NotFound (404) or NetworkError.
    """
    import requests

    from hubloader.core.version import USER_AGENT

    name = redact_url(url)
    request = FileRequest(url=url, folder=Path(), name=name, token_service=token_service, token=token)
    for _ in range(MAX_PREVIEW_HOPS + 1):
        policy.check_host(request, url)
        headers = {"User-Agent": USER_AGENT, "Range": f"bytes={start}-{stop - 1}"}
        secret = policy.token_for(request, url)
        if secret:
            headers["Authorization"] = f"Bearer {secret.reveal()}"
        try:
            with requests.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=False) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                _raise_for_status(response.status_code, name)
                skip = start if response.status_code == 200 else 0  # Range ignored: the whole body from byte 0
                return _read_exactly(response, skip + stop - start)[skip:], _total_size(response)
        except requests.RequestException as exc:
            raise NetworkError(f"Could not read {name}: {type(exc).__name__}.") from None
    raise NetworkError(f"{name} redirected more than {MAX_PREVIEW_HOPS} times.")


def _raise_for_status(status: int, name: str) -> None:
    if status in (401, 403):
        raise AuthRequired(f"{name} refused access (HTTP {status}).")
    if status == 404:
        raise NotFound(f"{name} does not exist (HTTP 404).")
    if status not in (200, 206):
        raise NetworkError(f"{name} answered HTTP {status} to a ranged read.")


def _read_exactly(response: requests.Response, count: int) -> bytes:
    """Up to ``count`` bytes of a streamed body (fewer when it ends first)."""
    chunks, remaining = [], count
    while remaining > 0:
        chunk = response.raw.read(min(remaining, 1 << 20), decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _total_size(response: requests.Response) -> int | None:
    """File size from ``Content-Range: bytes a-b/TOTAL`` (206) or Content-Length (200)."""
    match = re.search(r"/(\d+)\s*$", response.headers.get("Content-Range", ""))
    if match:
        return int(match.group(1))
    if response.status_code == 200 and response.headers.get("Content-Length", "").isdigit():
        return int(response.headers["Content-Length"])
    return None
