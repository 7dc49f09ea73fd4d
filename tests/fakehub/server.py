"""FakeHub: loopback HuggingFace and CivitAI servers plus a "CDN" host, in one background thread.

Three aiohttp apps on three ports of 127.0.0.1 (so redirects really cross hosts):
``hf_url`` (HF Hub API + resolve), ``civitai_url`` (CivitAI site root; API under /api/v1) and
``cdn_url`` (signed storage URLs for both, plain files, images). Every app also answers the
``/_fake/`` admin routes, so a server started with ``python -m tests.fakehub`` can be driven from
another process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

from aiohttp import web

from . import admin, whoami
from .bodies import login_page, send_blob
from .civitai import CivitaiCatalog
from .faults import Faults
from .hf import HfCatalog
from .storage import Blob, GeneratedBlob, StoredObject, make_blob

HOSTS = ("hf", "civitai", "cdn")
_SIGNING_KEY = b"fakehub-signing-key"
HOST_NAME = web.AppKey("host_name", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SeenRequest(NamedTuple):
    """One request as the fake saw it. ``host`` is "hf", "civitai" or "cdn"; ``query`` the raw query string."""

    method: str
    path: str
    headers: dict[str, str]
    query: str
    host: str


class RequestLog(list):
    """The requests seen, oldest first; a plain list, but it forgets the oldest half past ``limit`` entries."""

    limit = 100_000

    def append(self, item: SeenRequest) -> None:
        super().append(item)
        if len(self) > self.limit:
            del self[: self.limit // 2]


@dataclass
class PlainFile:
    blob: Blob
    login_required: bool = False
    content_type: str = "application/octet-stream"
    headers: dict[str, str] | None = None


def request_token(request: web.Request) -> str | None:
    """The token a client sent: ``Authorization: Bearer`` or ``?token=`` (CivitAI accepts both)."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.query.get("token") or None


class FakeHub:
    """In-process fake hubs. ``with FakeHub() as hub:`` or ``hub.start()`` ... ``hub.stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, ports: dict[str, int] | None = None) -> None:
        self.host = host
        self.ports = {name: 0 for name in HOSTS}
        if port:
            self.ports = {name: port + i for i, name in enumerate(HOSTS)}
        self.ports.update(ports or {})
        self.faults = Faults()
        self.requests = RequestLog()
        self.bytes_sent: Counter[str] = Counter()  # file-body bytes per request path; .total() for all
        self.valid_hf_tokens: set[str] = set()
        self.civitai_tokens: set[str] = set()
        self.token_owners: dict[str, str] = {}  # token → user name (whoami); a valid token's default: fake-user
        self.grants: dict[str | int, set[str]] = {}
        self.files: dict[tuple[str, str], PlainFile] = {}
        self.redirects: dict[tuple[str, str], tuple[str, int]] = {}
        self.storage: dict[str, StoredObject] = {}
        self.seed_demo = False
        self._drops = self._trickles = 0
        self._total_clock = 0.0
        self._signed_epoch = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self.hf = HfCatalog(self)
        self.civitai = CivitaiCatalog(self)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeHub:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fakehub", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            self._thread = None
            raise RuntimeError(f"fakehub could not start: {failure[0]}") from failure[0]
        return self

    async def _serve(self) -> None:
        for name in HOSTS:
            app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
            app[HOST_NAME] = name
            app.add_routes(admin.routes(self))
            if name in ("hf", "civitai"):  # before the catalogs' catch-all routes
                app.add_routes(whoami.hf_routes(self) if name == "hf" else whoami.civitai_routes(self))
            app.add_routes({"hf": self.hf.routes, "civitai": self.civitai.routes, "cdn": self._cdn_routes}[name]())
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.ports[name], reuse_address=True)
            await site.start()
            self.ports[name] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._runners.append(runner)

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return

        async def shutdown() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
        self._thread = self._loop = None
        self._runners = []

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Back to a fresh state: faults off, logs and counters empty, tokens and catalogs as at start."""
        self.faults.__init__()  # in place: callers may hold a reference to hub.faults
        self.requests.clear()
        self.bytes_sent.clear()
        self.valid_hf_tokens.clear()
        self.civitai_tokens.clear()
        self.token_owners.clear()
        self.grants.clear()
        self.files.clear()
        self.redirects.clear()
        self.storage.clear()
        self._drops = self._trickles = 0
        self._signed_epoch = 0.0
        self.hf.__init__(self)  # in place: the running apps' routes are bound to these objects
        self.civitai.__init__(self)
        if self.seed_demo:
            from .demo import seed_demo

            seed_demo(self)

    # --- addresses -----------------------------------------------------------------------------

    def url(self, host: str = "cdn") -> str:
        return f"http://{self.host}:{self.ports[host]}"

    @property
    def hf_url(self) -> str:
        return self.url("hf")

    @property
    def civitai_url(self) -> str:
        return self.url("civitai")

    @property
    def cdn_url(self) -> str:
        return self.url("cdn")

    # --- catalog -------------------------------------------------------------------------------

    def add_file(
        self,
        path: str,
        data: bytes | Path | None = None,
        *,
        size: int | None = None,
        seed: int | str | None = None,
        host: str = "cdn",
        login_required: bool = False,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``data`` (or ``size`` generated bytes, streamed) at ``path`` on ``host``; returns the URL.

        ``login_required``: requests without a token get the HTML login page (200, text/html), like a
        site that wants a browser session.
        """
        if (data is None) == (size is None):
            raise ValueError("pass exactly one of data= or size=")
        path = "/" + path.lstrip("/")
        blob = make_blob(data) if data is not None else GeneratedBlob(size or 0, path if seed is None else seed)
        self.files[(host, path)] = PlainFile(blob, login_required, content_type, headers)
        return self.url(host) + quote(path)

    def add_redirect(self, path: str, location: str, *, status: int = 302, host: str = "cdn") -> str:
        """Answer ``path`` on ``host`` with a redirect to ``location``; returns the URL."""
        path = "/" + path.lstrip("/")
        self.redirects[(host, path)] = (location, status)
        return self.url(host) + quote(path)

    def blob(self, url_or_path: str, host: str = "cdn") -> Blob:
        """The blob behind a plain-file path (to read its size or sha256 in a test)."""
        path = url_or_path.split(f":{self.ports[host]}", 1)[-1] if "://" in url_or_path else url_or_path
        return self.files[(host, "/" + path.lstrip("/"))].blob

    def add_hf_repo(self, repo_id: str, files: dict | None = None, **kwargs: object) -> str:
        """See ``HfCatalog.add_repo``. Returns the commit sha."""
        return self.hf.add_repo(repo_id, files, **kwargs)  # type: ignore[arg-type]

    def rename_hf_repo(self, old_id: str, new_id: str) -> None:
        """Requests for ``old_id`` answer 307 to ``new_id`` (as the Hub does for renamed repos)."""
        self.hf.renames[old_id] = new_id

    def add_civitai_model(self, name: str, **kwargs: object) -> tuple[int, int]:
        """See ``CivitaiCatalog.add_model``. Returns ``(model_id, version_id)``."""
        return self.civitai.add_model(name, **kwargs)  # type: ignore[arg-type]

    def add_civitai_version(self, model_id: int, name: str, **kwargs: object) -> int:
        """See ``CivitaiCatalog.add_version``. Returns the new (newest) version id."""
        return self.civitai.add_version(model_id, name, **kwargs)  # type: ignore[arg-type]

    def delete_civitai_version(self, version_id: int) -> None:
        """See ``CivitaiCatalog.delete_version``: the version answers 404 everywhere from now on."""
        self.civitai.delete_version(version_id)

    def delete_hf_repo(self, repo_id: str) -> None:
        """The repo is gone: the Hub answers RepoNotFound (401 without a token, 404 with one) for it."""
        self.hf.repos.pop(repo_id, None)

    def grant(self, target: str | int, token: str) -> None:
        """Give ``token`` access to a gated/private HF repo (repo id) or an early-access CivitAI version (id)."""
        self.grants.setdefault(target, set()).add(token)

    def has_access(self, target: str | int, token: str | None) -> bool:
        return token is not None and token in self.grants.get(target, set())

    # --- signed CDN URLs -----------------------------------------------------------------------

    def signed_url(self, key: str, obj: StoredObject) -> str:
        """A URL on the CDN host valid for ``faults.signed_url_ttl`` seconds (or until ``expire_signed_urls``)."""
        self.storage[key] = obj
        issued = time.time()
        expires = int((issued + self.faults.signed_url_ttl) * 1000)
        params = {"X-Amz-Date": str(int(issued * 1000)), "X-Amz-Expires": str(expires)}
        if obj.filename is not None:
            params["response-content-disposition"] = content_disposition(obj.filename)
        params["X-Amz-Signature"] = self._signature(key, params)
        return f"{self.cdn_url}/storage/{key}?{urlencode(params, quote_via=quote)}"

    def _signature(self, key: str, params: dict[str, str]) -> str:
        text = "|".join([key, params["X-Amz-Date"], params["X-Amz-Expires"]])
        return hmac.new(_SIGNING_KEY, text.encode(), hashlib.sha256).hexdigest()

    def expire_signed_urls(self) -> None:
        """Every signed URL issued so far stops working (the client must ask the API for a new one)."""
        self._signed_epoch = time.time()

    def _cdn_routes(self) -> list[web.RouteDef]:
        return [
            web.get("/storage/{key}", self._storage),
            web.get("/images/{tail:.*}", self.civitai.image),
        ]

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        obj = self.storage.get(key)
        params = {name: request.query.get(name, "") for name in ("X-Amz-Date", "X-Amz-Expires")}
        signature = request.query.get("X-Amz-Signature", "")
        if obj is None or not hmac.compare_digest(signature, self._signature(key, params)):
            return _s3_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
        issued, expires = int(params["X-Amz-Date"] or 0) / 1000, int(params["X-Amz-Expires"] or 0) / 1000
        if time.time() >= expires or issued < self._signed_epoch:
            return _s3_error(403, "AccessDenied", "Request has expired")
        headers = {}
        disposition = request.query.get("response-content-disposition")
        if disposition:
            headers["Content-Disposition"] = disposition
        return await send_blob(self, request, obj.blob, etag=obj.etag, headers=headers)

    # --- bookkeeping used by the handlers ------------------------------------------------------

    def count_bytes(self, path: str, n: int) -> None:
        self.bytes_sent[path] += n

    def take_drop(self) -> bool:
        """Whether this response should be cut by ``drop_after_bytes`` (honours ``drop_count``)."""
        if self.faults.drop_after_bytes is None:
            return False
        if self.faults.drop_count is not None and self._drops >= self.faults.drop_count:
            return False
        self._drops += 1
        return True

    def take_trickle(self) -> int | None:
        """The bytes/s this response is paced at by ``trickle_bytes_s`` (honours ``trickle_count``), else None."""
        rate, count = self.faults.trickle_bytes_s, self.faults.trickle_count
        if rate is None or (count is not None and self._trickles >= count):
            return None
        self._trickles += 1
        return rate

    def reserve_total_bandwidth(self, n: int, rate: int) -> float:
        """Shared virtual clock of the total bandwidth cap: the time at which ``n`` more bytes may go."""
        self._total_clock = max(self._total_clock, time.monotonic()) + n / rate
        return self._total_clock

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.app[HOST_NAME]
        self.requests.append(
            SeenRequest(request.method, request.path, dict(request.headers), request.query_string, host)
        )
        if request.path.startswith("/_fake/"):
            return await handler(request)
        response = await self._request_faults(request)
        if response is None:
            response = await self._plain(request, host)
        if response is None:
            response = await handler(request)
        return response

    async def _request_faults(self, request: web.Request) -> web.StreamResponse | None:
        faults = self.faults
        if not faults.applies_to(request.path):
            return None
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.server_errors > 0:
            faults.server_errors -= 1
            return web.json_response({"error": "Service Unavailable"}, status=503)
        if faults.rate_limit > 0:
            faults.rate_limit -= 1
            return web.json_response(
                {"error": "Too Many Requests"}, status=429, headers={"Retry-After": str(faults.retry_after)}
            )
        if faults.require_token is not None and request_token(request) != faults.require_token:
            return web.json_response({"error": "Unauthorized"}, status=401)
        return None

    async def _plain(self, request: web.Request, host: str) -> web.StreamResponse | None:
        redirect = self.redirects.get((host, request.path))
        if redirect is not None:
            return web.Response(status=redirect[1], headers={"Location": redirect[0]})
        plain = self.files.get((host, request.path))
        if plain is None:
            return None
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405)
        if plain.login_required and request_token(request) is None:
            return login_page()
        return await send_blob(self, request, plain.blob, content_type=plain.content_type, headers=plain.headers)


def content_disposition(filename: str) -> str:
    """``attachment; filename="..."``, plus RFC 5987 ``filename*`` when the name is not ASCII."""
    if filename.isascii():
        return f'attachment; filename="{filename}"'
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return web.Response(status=status, text=body, content_type="application/xml")
