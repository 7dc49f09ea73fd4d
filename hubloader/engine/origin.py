"""Where a download's bytes come from: the source URL, the storage URL it redirects to (re-resolved
when a signed URL expires), which host may receive the token, and what the hosts' refusals mean.

The token goes in an ``Authorization`` header to the source URL's own origin only; redirects are
followed by hand and the header is dropped for any other origin. URLs in messages are redacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from hubloader.core import errors
from hubloader.core.settings import Secret, redact_text, redact_url
from hubloader.engine.failures import Expired, Transient
from hubloader.engine.ratelimit import limiter_for

if TYPE_CHECKING:
    import aiohttp

logger = logging.getLogger("hubloader.engine.download")

MAX_REDIRECTS = 10
MAX_RESOLVES = 3
_REDIRECTS = (301, 302, 303, 307, 308)


def refuse_non_http(url: str) -> None:
    """Refuse at once what is not an http(s) address (aiohttp would fail it as a network error, retried)."""
    parts = urlsplit(str(url).strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise errors.InvalidReference(
            f"Not an http(s) download URL: {redact_url(str(url))}.",
            hint="Give an http:// or https:// address (a hub reference such as civitai:1@2 goes to fetch, not here).",
        )


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the port made explicit."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _invalid_url_errors(aiohttp: Any) -> tuple[type[BaseException], ...]:
    """aiohttp's "this URL cannot be fetched" exceptions; the non-http one exists only since 3.10."""
    names = ("InvalidURL", "NonHttpUrlClientError")
    return tuple(getattr(aiohttp, name) for name in names if hasattr(aiohttp, name))


class Origin:
    """The URLs and the token of one download. ``source_url`` is what the caller gave (or ``resolve_url``
    gave since); ``file_url`` is where the bytes are after redirects, with ``file_token`` the token it
    may receive (None once a redirect left the source's origin)."""

    def __init__(
        self,
        url: str,
        *,
        token: Secret | None,
        service: str,
        resolve_url: Callable[[], str] | None,
        check_url: Callable[[str], None] | None = None,
    ) -> None:
        self.token = token
        self.check_url = check_url  # the gate's rule for every hop (hubloader.gate); raises to refuse
        self.resolve_url = resolve_url
        self.shown_url = redact_url(url)
        self.auth_origin = origin_of(url)
        self.limiter = limiter_for(service)
        self.source_url = url  # what redirects to the storage URL; replaced by resolve_url()
        self.file_url = url
        self.file_token = token
        self.resolves = 0
        self.resolve_lock = asyncio.Lock()

    @property
    def host(self) -> str:
        """The host serving the bytes (after redirects)."""
        return origin_of(self.file_url)[1]

    def at_source(self) -> bool:
        """Whether the bytes are asked from the source URL itself (no storage redirect in between)."""
        return self.file_url == self.source_url

    async def open(self, session: aiohttp.ClientSession, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET the file with ``headers``, following redirects by hand (the token stays with its own host);
        the final response, whatever its status. Connection failures raise :class:`Transient`."""
        import aiohttp

        url, token = self.file_url, self.file_token
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if token is not None and origin_of(url) == self.auth_origin:
                sent["Authorization"] = f"Bearer {token.reveal()}"
            if origin_of(url) == self.auth_origin:
                await self.limiter.acquire()
            refuse_non_http(url)  # a redirect or a re-resolved URL may lead anywhere
            if self.check_url is not None:
                self.check_url(url)
            try:
                response = await session.get(url, headers=sent, allow_redirects=False)
            except _invalid_url_errors(aiohttp):
                raise errors.InvalidReference(f"Not a valid download URL: {redact_url(url)}.") from None
            except aiohttp.ClientSSLError as exc:
                raise errors.NetworkError(
                    f"TLS failed with {origin_of(url)[1]}: {redact_text(str(exc), self.token)}.",
                    hint="Check the system certificates or the endpoint setting.",
                ) from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise Transient(self.describe(exc, url)) from None
            if response.status in _REDIRECTS and "Location" in response.headers:
                response.release()
                url = urljoin(url, response.headers["Location"])
                if origin_of(url) != self.auth_origin:
                    token = None  # a storage host or CDN: the token stays with its own host
                continue
            self.file_url, self.file_token = url, token
            return response
        raise errors.NetworkError(f"{self.shown_url} redirects more than {MAX_REDIRECTS} times.")

    async def renew(self, expired: Expired, *, just_renewed: bool) -> None:
        """A fresh storage URL after ``expired``, or the host's refusal when there is no fresh one to get."""
        can_resolve = self.resolve_url is not None or expired.url != self.source_url
        if just_renewed or not can_resolve or self.resolves >= MAX_RESOLVES:
            raise self.expired_refusal(expired) from None
        async with self.resolve_lock:
            if self.file_url == expired.url:  # not already replaced by another connection
                await self._resolve()

    def served(self) -> None:
        """The current URL served the file: ``MAX_RESOLVES`` counts only resolves that served nothing in between
        (a long download outlives many signed URLs; every connection opened after one expired needs a fresh one)."""
        self.resolves = 0

    def expired_refusal(self, expired: Expired) -> errors.HubloaderError:
        """The error for a storage URL that stays refused after re-resolving (or cannot be re-resolved).

        An expired signed URL is no token problem: a fresh one is needed, not credentials."""
        if "expired" not in expired.reason.lower():
            return self.refusal(expired.status, expired.reason)
        return errors.NetworkError(
            f"{self.host} answered {expired.status} for {self.shown_url}: {expired.reason}; "
            "no fresh download URL could be obtained.",
            hint="The source gives a fresh URL on each request; rerun to resume.",
        )

    async def _resolve(self) -> None:
        """A fresh storage URL: ask ``resolve_url`` (or go back to the source URL, which redirects anew)."""
        self.resolves += 1
        if self.resolve_url is not None:
            self.source_url = await asyncio.to_thread(self.resolve_url)
        logger.info("re-resolving the storage URL of %s", self.shown_url)
        self.file_url = self.source_url
        self.file_token = self.token

    def refusal(self, status: int, reason: str) -> errors.HubloaderError:
        """The error for a final HTTP refusal of the file."""
        where = f"{self.host} answered {status} for {self.shown_url}"
        text = f"{where}: {reason}" if reason else where
        lowered = reason.lower()
        if status in (401, 403):
            if "disabled downloads" in lowered:
                return errors.DownloadsDisabled(text + ".")
            if "early access" in lowered:
                return errors.EarlyAccess(text + ".")
            if self.token is not None:
                return errors.AuthRequired(text + ".", hint="The token was refused or has no access to this file.")
            return errors.AuthRequired(text + ".")
        if status in (404, 410):
            return errors.NotFound(text + ".")
        return errors.NetworkError(text + ".")

    def describe(self, exc: BaseException, url: str) -> str:
        """A connection failure in a few words, the token redacted."""
        import aiohttp

        host = origin_of(url)[1]
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"could not connect to {host} ({exc.os_error.strerror or exc.os_error})"
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return f"{host} sent nothing for too long"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return f"{host} closed the connection"
        return redact_text(f"{type(exc).__name__} talking to {host}: {exc}", self.token)
