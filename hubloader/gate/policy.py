"""The gate's rules, each a small function: which hosts, which token, which destination, which bytes.

Allowed hosts are the configured HuggingFace and CivitAI endpoints, the storage/CDN hosts the real services
redirect to (CivitAI's buckets only as CivitAI's redirect), and the hosts of the ``allowed_hosts`` setting
(``HUBLOADER_ALLOWED_HOSTS``, comma-separated: a mirror's own storage). Any other host needs a published SHA256
and a local user's confirmation of that host (:func:`confirmed`), checked at every redirect hop.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from hubloader.core.errors import InvalidReference, PickleNotAllowed, UnsafeFile
from hubloader.core.metadata import DownloadResult, ModelFormat
from hubloader.core.settings import (
    Secret,
    civitai_endpoint,
    civitai_token,
    hf_endpoint,
    hf_token,
    load_settings,
    redact_url,
)
from hubloader.engine.download import file_hashes
from hubloader.gate.request import FileRequest

ENV_ALLOWED_HOSTS = "HUBLOADER_ALLOWED_HOSTS"
#: Where huggingface.co and civitai.com send the bytes (LFS/Xet CDNs, CivitAI's storage buckets).
KNOWN_STORAGE_SUFFIXES = ("huggingface.co", "hf.co", "civitai.com")
CIVITAI_BUCKET = re.compile(r"civitai-[a-z0-9-]+\.[a-z0-9]+\.r2\.cloudflarestorage\.com")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class DownloadRefused(UnsafeFile):
    """The gate refused a download before fetching a byte of it. ``confirmable_host``: the host a local user could
    confirm for it (the file has a published SHA256), for a face to say how; "" otherwise."""

    confirmable_host: str = ""


# --- hosts -----------------------------------------------------------------------------------------


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), host_of(url), parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoints() -> dict[str, str]:
    """The configured endpoint of each token service."""
    return {"huggingface": hf_endpoint(), "civitai": civitai_endpoint()}


def _configured_hosts() -> set[str]:
    """Hosts (``host`` or ``host:port``) of the endpoints and the ``allowed_hosts`` setting."""
    extra = os.environ.get(ENV_ALLOWED_HOSTS) or load_settings().get("allowed_hosts") or ""
    names = extra if isinstance(extra, list) else str(extra).split(",")
    hosts = {urlsplit(n.strip()).netloc or n.strip() for n in names if n.strip()}
    return {h.lower() for h in hosts} | {urlsplit(e).netloc.lower() for e in endpoints().values()}


def host_key(url: str) -> str:
    """How a user names a URL's host when confirming it: ``host`` or ``host:port`` (no user info), lowercase."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1].lower()


def _names(url: str) -> set[str]:
    """The names a setting or a confirmation may give a URL's host by: ``host:port`` and bare ``host``."""
    return {host_key(url), host_of(url)} - {""}


def host_allowed(url: str, *, storage: bool = True) -> bool:
    """True for the configured endpoints and extra hosts (with their port) and the services' known storage.

    ``storage``: whether CivitAI's storage buckets count. Their names (``civitai-*.<account>.r2.cloudflarestorage.com``)
    are a pattern anyone with a Cloudflare account can match, so they are trusted only where CivitAI itself sent
    the download (a redirect hop or a re-resolved URL of a CivitAI request), never as a URL a workflow names."""
    parts = urlsplit(url)
    host = host_of(url)
    if host_key(url) in _configured_hosts():
        return True
    if parts.scheme.lower() != "https":
        return False
    return any(host == s or host.endswith("." + s) for s in KNOWN_STORAGE_SUFFIXES) or (
        storage and bool(CIVITAI_BUCKET.fullmatch(host))
    )


def is_civitai_url(url: str) -> bool:
    """Whether ``url`` is on the configured CivitAI endpoint or civitai.com: a host whose redirects are CivitAI's."""
    host = host_of(url)
    return (
        host_key(url) == urlsplit(civitai_endpoint()).netloc.lower()
        or host == "civitai.com"
        or (host.endswith(".civitai.com"))
    )


def from_the_service(request: FileRequest, url: str) -> bool:
    """Whether CivitAI sent the download to ``url``: a CivitAI request, and not the URL it was asked for (a
    redirect hop or a re-resolved signed URL)."""
    civitai = request.source == "civitai" or is_civitai_url(request.url)
    return civitai and url != request.url


def confirmed(request: FileRequest, url: str) -> bool:
    """Whether a local user confirmed ``url``'s host for this request: the request carries the file's published
    SHA256 and names the host in ``confirmed_hosts`` (``confirmed``: the host of the request's own URL)."""
    if not request.sha256:
        return False
    names = _names(url)
    return bool(names & {h.lower() for h in request.confirmed_hosts}) or (
        request.confirmed and bool(request.url) and host_key(url) == host_key(request.url)
    )


def host_to_confirm(url: str) -> str | None:
    """The host (``host[:port]``) a user would have to confirm before ``url`` is fetched; None when it is known.
    Judged as a URL a workflow names (storage buckets are not known here)."""
    return None if host_allowed(url, storage=False) else host_key(url) or None


def check_host(request: FileRequest, url: str) -> None:
    """Refuse ``url`` (the request's or a redirect hop's) unless its host is allowed or a user confirmed it."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise InvalidReference(f"Not an http(s) download URL: {redact_url(url)}.")
    if host_allowed(url, storage=from_the_service(request, url)) or confirmed(request, url):
        return
    if not request.sha256:
        hint = "Downloads from other hosts need the file's published SHA256, then your confirmation."
    else:
        hint = f"Its SHA256 is published: confirm {host_key(url)} on this machine if you trust it."
    refused = DownloadRefused(
        f"{host_of(url) or redact_url(url)} is not a known model host; {request.name} was not downloaded.", hint=hint
    )
    refused.confirmable_host = host_key(url) if request.sha256 else ""
    raise refused


# --- tokens ----------------------------------------------------------------------------------------


def token_for(request: FileRequest, url: str) -> Secret | None:
    """The service's token, only for its own endpoint, only over https (or loopback); else None."""
    service = request.token_service
    if service not in endpoints():
        return None
    scheme, host, port = _origin(url)
    if (scheme, host, port) != _origin(endpoints()[service]):
        return None
    if scheme != "https" and not is_loopback(host):
        return None
    return request.token or (hf_token() if service == "huggingface" else civitai_token())


# --- server data used in paths ---------------------------------------------------------------------


def check_commit(commit: str) -> str:
    """A HuggingFace commit id is 40 lowercase hex digits, nothing else."""
    if not _HEX40.fullmatch(commit or ""):
        raise DownloadRefused(f"The server gave {commit!r} as a commit id; not a commit hash.")
    return commit


def check_sha256(sha256: str) -> str:
    """A SHA256 used as a file name or a check: 64 hex digits (returned lowercase)."""
    value = (sha256 or "").lower()
    if not _HEX64.fullmatch(value):
        raise DownloadRefused(f"The server gave {sha256!r} as a SHA256; not 64 hex digits.")
    return value


def check_repo_path(path: str) -> str:
    """A repository file name (``dir/file.ext``) that stays inside its folder: relative, no ``..``, no ``\\``."""
    parts = (path or "").split("/")
    if "\\" in path or ":" in parts[0] or any(p in ("..", ".", "") for p in parts):
        raise DownloadRefused(f"The server named a file {path!r}, which would land outside its folder.")
    return path


def check_name(name: str) -> str:
    """A plain file name: no folder part, not ``.``/``..``, not empty."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise DownloadRefused(f"{name!r} is not a plain file name.")
    return name


# --- destination -----------------------------------------------------------------------------------


def place_apart(request: FileRequest, apart: str) -> FileRequest:
    """Where the file lands, decided before its first byte: its own name in its folder unless a different file
    already has that name, then ``apart``, a relative path under the folder that names the source
    (``owner__repo/style-0.safetensors``, ``style-0-123.safetensors``): files of one name from different
    sources both land (ComfyUI and A1111 list subfolders)."""
    dest = request.folder / check_name(request.name)
    if not (dest.exists() or dest.is_symlink()) or _holds(dest, request):
        return request
    target = request.folder / check_repo_path(apart)
    return dataclasses.replace(request, folder=target.parent, name=target.name)


def _holds(dest: Path, request: FileRequest) -> bool:
    """Whether ``dest`` is a file with the request's published SHA256 (and size)."""
    if not dest.is_file() or not request.sha256:
        return False
    size_ok = request.size is None or request.size == dest.stat().st_size
    return size_ok and file_hashes(dest)["sha256"] == request.sha256


def check_destination(request: FileRequest) -> DownloadResult | None:
    """The same file already at the destination (reused), else None; a different file there is refused."""
    dest = request.folder.resolve() / check_name(request.name)
    if dest.parent != request.folder.resolve():
        raise DownloadRefused(f"{request.name} would land outside {request.folder}.")
    if not dest.exists() and not dest.is_symlink():
        return None
    if not dest.is_file():
        raise DownloadRefused(f"{dest} exists and is not a file; nothing was downloaded.")
    if _holds(dest, request):
        return DownloadResult(path=request.dest, sha256=request.sha256, size_bytes=dest.stat().st_size, reused=True)
    raise DownloadRefused(
        f"A different file already exists at {dest}; it was kept and nothing was downloaded.",
        hint="Move or delete it, or save the download under another name.",
    )


# --- trust -----------------------------------------------------------------------------------------


def pickle_allowed(request: FileRequest) -> bool:
    return bool(load_settings().get("allow_pickle")) if request.allow_pickle is None else request.allow_pickle


def check_pickle_name(request: FileRequest) -> None:
    """The pickle policy on the name, before any byte: a pickle name needs pickles allowed."""
    if ModelFormat.from_filename(request.shown_name).is_pickle and not pickle_allowed(request):
        raise PickleNotAllowed(f"{request.shown_name} is a pickle file and pickles are not allowed.")


def check_saved_bytes(request: FileRequest, path: Path) -> None:
    """The pickle policy on the bytes themselves: pickle bytes need a pickle name, permission and a clean
    picklescan (a pickle under a .safetensors name would be loaded by whatever trusts the name)."""
    from hubloader.engine.sniff import HEAD_BYTES, detect_format

    with open(path, "rb") as fh:
        if detect_format(fh.read(HEAD_BYTES)) is not ModelFormat.PICKLE:
            return
    name = request.shown_name
    if not ModelFormat.from_filename(name).is_pickle:
        raise UnsafeFile(f"{name} holds pickle bytes under a name that promises no pickle; it was removed.")
    if not pickle_allowed(request):
        raise PickleNotAllowed(f"{name} holds pickle bytes and pickles are not allowed.")
    from picklescan.scanner import SafetyLevel, scan_bytes

    try:
        with open(path, "rb") as fh:
            result = scan_bytes(fh, name, file_ext=Path(name).suffix.lower())
    except Exception as exc:  # picklescan raises what its readers raise (a corrupt zip: BadZipFile)
        result = None
        reason = f"{type(exc).__name__}: {exc}"
    if result is None or result.scan_err:
        why = reason if result is None else "picklescan reported an error"
        raise UnsafeFile(f"{name} holds pickle bytes that could not be scanned ({why}); it was removed.")
    dangerous = [f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous]
    if dangerous:
        raise UnsafeFile(f"{name} would run code when loaded: it imports {', '.join(dangerous)}.")
