"""Asking a source, without downloading, what fetching one file will need: the first answer of its download URL.

A HuggingFace ``resolve`` URL answers a HEAD with the commit (``X-Repo-Commit``), the LFS size and SHA256
(``X-Linked-Size``/``X-Linked-Etag``) and a redirect to storage, or ``GatedRepo``/``RepoNotFound``/
``EntryNotFound``. CivitAI's download route answers a GET (not followed) with a 307 to signed storage, or its
JSON refusal: login required (401), downloads disabled (401), early access (403), archived (410), gone (404)
(reference civitai.md §4). Neither transfers a byte of the file. The token goes only where the gate's
:func:`~hubloader.gate.policy.token_for` allows (its own service's endpoint, https or loopback), and only hosts
the gate allows are asked at all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from hubloader.core.settings import civitai_endpoint, hf_endpoint, redact_text, redact_url
from hubloader.core.version import USER_AGENT
from hubloader.engine.ratelimit import limiter_for
from hubloader.gate import policy
from hubloader.gate.request import FileRequest

#: A renamed HuggingFace repo redirects its old name (307) within the Hub; followed this many times.
MAX_HOPS = 3
_CIVITAI_DOWNLOAD = re.compile(r"/api/download/models/(\d+)")
_HF_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class Need:
    """One thing fetching a file needs. ``what``: ``token`` (``service``'s), ``licence`` (accept a gated repo's
    terms at ``url``), ``early_access`` (buy or wait, page ``url``), ``login`` (the creator requires a logged-in
    account: a CivitAI token), ``downloads_disabled``, ``archived``, ``confirmation`` (a host outside the known
    ones). ``met``: we have it (a token is configured and was accepted); an unmet need blocks the fetch."""

    what: str
    service: str = ""
    detail: str = ""
    url: str = ""
    met: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Probe:
    """What the download URL answered. ``ok``: it would serve the bytes now. ``gone``: it never will (deleted,
    archived, renamed away), with ``reason``. ``revision``: the HF commit it serves, or ``version_id``/``file_id``
    of CivitAI. ``size``/``sha256``: what it states (0/"" when it does not)."""

    ok: bool = False
    gone: bool = False
    reason: str = ""
    needs: list[Need] = field(default_factory=list)
    revision: str = ""
    version_id: int | None = None
    file_id: int | None = None
    size: int = 0
    sha256: str = ""
    moved_to: str = ""  # a renamed HF repo's new id


def civitai_ids(url: str) -> tuple[int | None, int | None]:
    """(version id, file id) a CivitAI download URL names."""
    match = _CIVITAI_DOWNLOAD.search(urlsplit(url).path)
    if match is None:
        return None, None
    file_id = (parse_qs(urlsplit(url).query).get("fileId") or [""])[0]
    return int(match.group(1)), int(file_id) if file_id.isdigit() else None


def _service_of(url: str) -> str:
    netloc = urlsplit(url).netloc.lower()
    for service, endpoint in (("huggingface", hf_endpoint()), ("civitai", civitai_endpoint())):
        if netloc == urlsplit(endpoint).netloc.lower():
            return service
    return ""


def probe(url: str) -> Probe:
    """Ask ``url`` what fetching it needs (see the module docstring). Network failures are a reason, not a raise."""
    import requests

    service = _service_of(url)
    if not policy.host_allowed(url):
        return Probe(
            reason=f"{policy.host_of(url)} is not a known model host",
            needs=[Need("confirmation", detail="a download from another host needs its SHA256 and your confirmation")],
        )
    request = FileRequest(url=url, folder=Path("."), name="probe", token_service=service or None)
    limiter_for(service or "url").wait_if_needed()  # a plan of many models must not hammer a hub
    try:
        if service == "huggingface":
            return _probe_hf(requests, url, request)
        if service == "civitai" and _CIVITAI_DOWNLOAD.search(urlsplit(url).path):
            return _probe_civitai(requests, url, request)
        with requests.head(url, allow_redirects=False, timeout=(10, 30), headers={"User-Agent": USER_AGENT}) as r:
            ok = r.status_code < 400
            size = int(r.headers.get("Content-Length") or 0) if r.status_code == 200 else 0
            return Probe(
                ok=ok, gone=r.status_code in (404, 410), reason="" if ok else f"HTTP {r.status_code}", size=size
            )
    except requests.RequestException as exc:
        return Probe(reason=redact_text(f"{policy.host_of(url)} could not be asked ({type(exc).__name__})"))


def _headers(request: FileRequest, url: str) -> tuple[dict[str, str], bool]:
    token = policy.token_for(request, url)
    headers = {"User-Agent": USER_AGENT}
    if token is not None:
        headers["Authorization"] = f"Bearer {token.reveal()}"
    return headers, token is not None


def _probe_hf(requests: Any, url: str, request: FileRequest) -> Probe:
    found = Probe()
    for _ in range(MAX_HOPS + 1):
        headers, has_token = _headers(request, url)
        with requests.head(url, allow_redirects=False, timeout=(10, 30), headers=headers) as r:
            status, h = r.status_code, r.headers
        match = _HF_RESOLVE.match(urlsplit(url).path)
        repo = match.group("repo") if match else ""
        token_need = Need("token", "huggingface", "a HuggingFace token", met=has_token)
        if status == 307 and match and _HF_RESOLVE.match(urlsplit(urljoin(url, h.get("Location", ""))).path):
            url = urljoin(url, h["Location"])
            if not policy.host_allowed(url):  # every hop is checked, as the gate checks a download's
                return Probe(reason=f"the Hub redirected {repo} to {policy.host_of(url)}, not a known model host")
            found.moved_to = _HF_RESOLVE.match(urlsplit(url).path).group("repo")  # type: ignore[union-attr]  # matched above
            continue
        code = h.get("X-Error-Code", "")
        found.revision = h.get("X-Repo-Commit", "")
        if status < 400:
            found.ok = True
            found.size = int(h.get("X-Linked-Size") or h.get("Content-Length") or 0)
            etag = (h.get("X-Linked-Etag") or "").strip('"').lower()
            found.sha256 = etag if re.fullmatch(r"[0-9a-f]{64}", etag) else ""
            if has_token:
                found.needs.append(token_need)  # sent and accepted: maybe needed, certainly met
            return found
        if code == "GatedRepo":
            page = f"{redact_url(hf_endpoint()).rstrip('/')}/{repo}"
            found.reason = f"{repo} is a gated repository"
            found.needs = [token_need, Need("licence", "huggingface", f"accept {repo}'s terms on its page", page)]
            return found
        if code == "RepoNotFound" or (status == 401 and not has_token):
            found.reason = f"{repo} does not exist on the Hub (or is private)"
            found.gone = has_token  # without a token a private repo answers the same
            if not has_token:
                found.needs = [token_need]
            return found
        found.gone = status in (404, 410)
        found.reason = f"the Hub answered {status}" + (f" ({code})" if code else "")
        return found
    found.reason = "the Hub redirects too many times"
    return found


def _probe_civitai(requests: Any, url: str, request: FileRequest) -> Probe:
    version_id, file_id = civitai_ids(url)
    found = Probe(version_id=version_id, file_id=file_id)
    headers, has_token = _headers(request, url)
    with requests.get(url, allow_redirects=False, stream=True, timeout=(10, 30), headers=headers) as r:
        status = r.status_code
        try:
            body: Any = r.json() if "json" in r.headers.get("Content-Type", "") and status >= 400 else {}
        except ValueError:
            body = {}
    message = str(body.get("message") or body.get("error") or "") if isinstance(body, dict) else ""
    token_need = Need("token", "civitai", "a CivitAI API key", met=has_token)
    page = f"{redact_url(civitai_endpoint()).rstrip('/')}/model-versions/{version_id}"
    lowered = message.lower()
    if status in (301, 302, 303, 307, 308) or status == 200:
        found.ok = True
        if has_token:
            found.needs.append(token_need)
    elif "disabled downloads" in lowered:
        found.reason, found.gone = "the creator disabled downloads", True
        found.needs = [Need("downloads_disabled", "civitai", message, page)]
    elif status == 403 and "early access" in lowered:
        deadline = body.get("deadline") if isinstance(body, dict) else None
        found.reason = "in early access" + (f" until {deadline}" if deadline else "")
        found.needs = [Need("early_access", "civitai", found.reason, page)]
    elif status == 401 and "logged in" in lowered:
        found.reason = "the creator requires a logged-in account"
        found.needs = [Need("login", "civitai", "a CivitAI API key (the creator requires login)", page, met=False)]
    elif status in (401, 403):
        found.reason = f"CivitAI refused it ({message or status})"
        found.needs = [token_need]
    elif status == 410:
        found.reason, found.gone = "archived on CivitAI", True
        found.needs = [Need("archived", "civitai", message or "archived", page)]
    elif status == 404:
        found.reason, found.gone = "deleted from CivitAI (the download answers 404)", True
    else:
        found.reason = f"CivitAI answered {status}"
    return found
