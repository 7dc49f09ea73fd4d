"""Sending a file body: HEAD/GET, Range/206/416, If-Range, and the body faults (bandwidth, drop, wrong bytes)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from aiohttp import web

from .storage import CHUNK, Blob

if TYPE_CHECKING:
    from .server import FakeHub

LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*(?:,.*)?$")

LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
    "<h1>Sign in to continue</h1><form action='/login' method='post'>"
    "<input name='username'><input name='password' type='password'><button>Sign in</button></form>"
    "</body></html>"
)


def login_page() -> web.Response:
    return web.Response(text=LOGIN_PAGE, content_type="text/html")


def parse_range(value: str, size: int) -> tuple[int, int] | None | bool:
    """``(start, end_exclusive)`` for a satisfiable single range, ``None`` if unparsable, ``False`` if unsatisfiable.

    Only the first range of a multi-range request is honoured (servers may do that).
    """
    match = _RANGE.match(value)
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix range: the last N bytes
        n = int(last)
        return (max(0, size - n), size) if n > 0 and size > 0 else False
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        return False
    return start, end


def _range_applies(request: web.Request, etag: str) -> bool:
    """If-Range: honour the Range only when the validator still matches."""
    validator = request.headers.get("If-Range")
    if validator is None:
        return True
    return validator.strip() in (etag, LAST_MODIFIED) and not validator.strip().startswith("W/")


async def send_blob(
    hub: FakeHub,
    request: web.Request,
    blob: Blob,
    *,
    etag: str | None = None,
    content_type: str = "application/octet-stream",
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Answer GET/HEAD for ``blob`` with Content-Length, ETag, Accept-Ranges and Range support."""
    faults = hub.faults
    if faults.html_login:
        return login_page()
    etag = etag or f'"{blob.key}"'
    out = {"ETag": etag, "Accept-Ranges": "bytes", "Last-Modified": LAST_MODIFIED, **(headers or {})}
    start, end, status = 0, blob.size, 200
    asked = request.headers.get("Range")
    if asked and not faults.ignore_range and _range_applies(request, etag):
        parsed = parse_range(asked, blob.size)
        if parsed is False:
            return web.Response(status=416, headers={**out, "Content-Range": f"bytes */{blob.size}"})
        if parsed:
            start, end = parsed
            status = 206
            out["Content-Range"] = faults.content_range or f"bytes {start}-{end - 1}/{blob.size}"
    response = web.StreamResponse(status=status, headers=out)
    response.content_type = content_type
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    await _stream(hub, request, response, blob, start, end)
    return response


async def _stream(
    hub: FakeHub, request: web.Request, response: web.StreamResponse, blob: Blob, start: int, end: int
) -> None:
    faults = hub.faults
    paced = [c for c in (faults.bandwidth_per_connection, hub.take_trickle()) if c]
    per_connection = min(paced) if paced else None
    caps = [c for c in (per_connection, faults.bandwidth_total) if c]
    chunk = max(256, min(CHUNK, min(caps) // 20)) if caps else CHUNK
    drop_at = faults.drop_after_bytes if hub.take_drop() else None
    sent = 0
    conn_clock = time.monotonic()
    for piece in blob.read_chunks(start, end, chunk):
        piece = _corrupt(piece, start + sent, faults.wrong_bytes)
        if drop_at is not None and sent + len(piece) >= drop_at:
            piece = piece[: max(0, drop_at - sent)]
        if per_connection:
            conn_clock = max(conn_clock, time.monotonic()) + len(piece) / per_connection
            await _sleep_until(conn_clock)
        if faults.bandwidth_total:
            await _sleep_until(hub.reserve_total_bandwidth(len(piece), faults.bandwidth_total))
        if piece:
            # Counted before the write returns: a client can read the last piece and start its next test before
            # this handler resumes, and a counter bumped after that would leak into the next test's figures.
            hub.count_bytes(request.path, len(piece))
            try:
                await response.write(piece)
            except BaseException:
                hub.count_bytes(request.path, -len(piece))  # never reached the client
                raise
            sent += len(piece)
        if drop_at is not None and sent >= drop_at:
            await _drop(request)
            return
        if faults.stall_after_bytes is not None and sent - len(piece) < faults.stall_after_bytes <= sent:
            await asyncio.sleep(faults.stall_seconds)
    await response.write_eof()


def _corrupt(piece: bytes, offset: int, wrong_at: int | None) -> bytes:
    if wrong_at is None or not (offset - 16 < wrong_at < offset + len(piece)):
        return piece
    data = bytearray(piece)
    for pos in range(max(wrong_at, offset), min(wrong_at + 16, offset + len(piece))):
        data[pos - offset] ^= 0xFF
    return bytes(data)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _drop(request: web.Request) -> None:
    """Close the connection mid-body, after what was written has been flushed."""
    transport = request.transport
    if transport is not None:
        transport.close()
