"""Whether a server's answer to a (ranged) request can be used: the bytes asked for, of the same file
and not an error page; else what to do about it (retry, re-resolve the URL, restart, fail)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from hubloader.core import errors
from hubloader.core.settings import redact_text
from hubloader.engine.connections import Segment
from hubloader.engine.failures import Expired, Restart, Transient
from hubloader.engine.origin import Origin
from hubloader.engine.partfile import PartState
from hubloader.engine.ratelimit import retry_after_seconds
from hubloader.engine.sniff import HEAD_BYTES, check_head, server_reason

if TYPE_CHECKING:
    import aiohttp

#: Statuses a storage host answers once its signed URL has expired.
EXPIRED = (400, 401, 403, 410)


#: ``bytes a-b/total`` or ``bytes */total`` (RFC 9110 §14.4), total ``*`` when unknown.
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*")


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes a-b/total`` → (a, total); ``bytes */total`` → (None, total); (None, None) when absent or malformed."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if match is None:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


class ResponseCheck:
    """Judges the responses of one download. ``ranges_ignored`` is called when the server answers the
    whole file to a request from byte 0 (nothing written yet): the transfer goes on in one stream.
    Accepting a response records the file's size and validators in the ``.part``'s state."""

    def __init__(
        self,
        origin: Origin,
        *,
        expect: str,
        expected_size: int | None,
        file_name: str,
        ranges_ignored: Callable[[], None],
    ) -> None:
        self.origin = origin
        self.expect = expect
        self.expected_size = expected_size
        self.file_name = file_name
        self.ranges_ignored = ranges_ignored

    async def accept(self, response: aiohttp.ClientResponse, segment: Segment, state: PartState) -> None:
        """Accept a response for ``segment`` or raise what to do about it (retry, re-resolve, restart)."""
        status = response.status
        if status in (200, 206):
            try:
                await self._check_body_type(response)
                self._check_position(response, segment, state)
            except BaseException:
                response.close()
                raise
            self.origin.served()
            return
        body = await self._error_body(response)
        reason = server_reason(body, response.headers.get("Content-Type", "")) or response.reason or ""
        reason = response.headers.get("X-Error-Message") or reason
        reason = redact_text(reason, self.origin.token)
        if status == 429:
            raise Transient(
                f"429 Too Many Requests: {reason}",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                status=429,
            )
        if status >= 500 or status == 408:
            raise Transient(f"{status} {reason}", retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if status == 416:
            _, total = content_range(response.headers.get("Content-Range"))
            raise Restart(f"416 Range Not Satisfiable (the file has {total} bytes)", range_ignored=False)
        if status in EXPIRED and not (status == 401 and self.origin.at_source()):
            raise Expired(status, reason, self.origin.file_url)
        raise self.origin.refusal(status, reason)

    async def _check_body_type(self, response: aiohttp.ClientResponse) -> None:
        """Refuse an HTML/JSON answer at once, even mid-file (a login page served to a resumed range)."""
        content_type = response.headers.get("Content-Type", "")
        if self.expect == "any" or not content_type.lower().startswith(("text/html", "application/json")):
            return
        head = await response.content.read(HEAD_BYTES)
        check_head(head, content_type=content_type, expect="model", where=self.origin.host)
        raise errors.NotAModelFile(f"{self.origin.host} labels {self.file_name} as {content_type}, not a model file.")

    def _check_position(self, response: aiohttp.ClientResponse, segment: Segment, state: PartState) -> None:
        """The body must start at ``segment.pos`` of the same file, else the ``.part`` is useless."""
        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if response.status == 206:
            start, total = content_range(response.headers.get("Content-Range"))
            if start is None:
                value = response.headers.get("Content-Range", "")[:80]
                raise Transient(f"{self.origin.host} answered a range with a malformed Content-Range {value!r}")
            if start != segment.pos:
                raise Restart(f"asked for byte {segment.pos}, got {start}", range_ignored=True)
        else:
            total = response.content_length
            if segment.pos > 0:
                changed = bool(state.etag and etag and etag != state.etag)
                raise Restart(
                    "the file changed on the server" if changed else "the server ignores Range",
                    range_ignored=not changed,
                )
            if state.done.total():
                raise Restart("the server ignores Range", range_ignored=True)  # rewrite from byte 0
            self.ranges_ignored()
        if state.etag and etag and etag != state.etag:
            raise Restart("the file changed on the server (new ETag)", range_ignored=False)
        if state.size is not None and total is not None and total != state.size:
            if self.expected_size is not None and total != self.expected_size:
                raise errors.IntegrityError(
                    f"{self.origin.shown_url} serves {total} bytes; the source published {self.expected_size}.",
                    expected=str(self.expected_size),
                    actual=str(total),
                )
            raise Restart(f"the file is now {total} bytes, was {state.size}", range_ignored=False)
        state.size = total if total is not None else state.size
        state.etag = state.etag or etag
        state.last_modified = state.last_modified or last_modified

    @staticmethod
    async def _error_body(response: aiohttp.ClientResponse) -> bytes:
        import aiohttp

        try:
            return await response.content.read(HEAD_BYTES)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return b""
        finally:
            response.close()
