"""Recognise what a download really is from its first bytes, before anything is written.

A "successful" download that is a login page or a JSON error is the classic failure of model
downloaders; here the first bytes decide. Model formats are recognised by their magic; a body that
reads as HTML, JSON, XML or plain text where a model was expected is refused with the server's own
words (CivitAI's JSON ``error``/``message``, an HTML ``<title>``, an S3 ``<Message>``).
"""

from __future__ import annotations

import codecs
import json
import re
import struct

from hubloader.core.errors import AuthRequired, NotAModelFile
from hubloader.core.metadata import ModelFormat

#: How many leading bytes :func:`check_head` wants (enough for any magic and a short error page).
HEAD_BYTES = 64 * 1024
#: The largest safetensors JSON header accepted (the reference reader's ``MAX_HEADER_SIZE``).
MAX_HEADER_SIZE = 100_000_000

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/problem+json")
_LOGIN = re.compile(r"log(?:ged)?[ -]?in\b|sign[ -]?in\b|unauthori[sz]ed|authenticat|api[ _-]?key|token", re.IGNORECASE)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_XML_MESSAGE = re.compile(rb"<(Code|Message)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


def safetensors_header_length(head: bytes) -> int | None:
    """The JSON header length of a file starting with ``head`` if it starts like safetensors (a plausible
    little-endian u64, then ``{``), else None. The one safetensors check of the hub layer."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (header_len,) = struct.unpack("<Q", head[:8])
    return header_len if 2 <= header_len <= MAX_HEADER_SIZE else None


def detect_format(head: bytes) -> ModelFormat:
    """The container format told by the magic bytes; ``OTHER`` when unknown (not an error by itself)."""
    if safetensors_header_length(head) is not None:
        return ModelFormat.SAFETENSORS
    if head[:4] == b"GGUF":
        return ModelFormat.GGUF
    if head[:4] == b"PK\x03\x04" or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return ModelFormat.PICKLE  # torch.save's zip, or a bare pickle (.ckpt/.pt/.bin)
    return ModelFormat.OTHER


def looks_like_text(head: bytes, content_type: str = "") -> bool:
    """True for an HTML/JSON/XML/text body: what servers send instead of a file when something is wrong."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] not in (b"<", b"{", b"[") and not content_type.lower().startswith(_TEXT_TYPES):
        return False
    # A leading "[" or "<" is not enough: 2 in 256 random weights files start that way. Text decodes.
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(stripped[:4096])  # a cut last character is fine
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def server_reason(body: bytes, content_type: str = "") -> str:
    """The server's own explanation in an error body, as one short line ("" when there is none)."""
    stripped = body.strip()
    if stripped[:1] in (b"{", b"[") or "json" in content_type.lower():
        try:
            data = json.loads(stripped.decode("utf-8", "replace"))
        except ValueError:
            data = None
        if isinstance(data, dict):
            parts = [data.get(k) for k in ("error", "message", "error_description") if data.get(k)]
            return _one_line(": ".join(p if isinstance(p, str) else json.dumps(p) for p in parts))
    title = _TITLE.search(stripped)
    if title:
        return _one_line(title.group(1).decode("utf-8", "replace"))
    xml = _XML_MESSAGE.findall(stripped)
    if xml:
        return _one_line(": ".join(value.decode("utf-8", "replace") for _, value in xml))
    return _one_line(_TAGS.sub(" ", stripped[:2000].decode("utf-8", "replace")))


def mentions_login(text: str) -> bool:
    return bool(_LOGIN.search(text))


def check_head(head: bytes, *, content_type: str = "", expect: str = "model", where: str = "the server") -> ModelFormat:
    """Accept ``head`` as the start of the expected file or raise with the server's reason.

    ``expect``: "model" refuses text bodies, "any" accepts everything, a :class:`ModelFormat` value
    (e.g. "safetensors") also requires that exact format. Login pages raise :class:`AuthRequired`,
    other text bodies :class:`NotAModelFile`.
    """
    found = detect_format(head)
    if expect == "any" or (found is not ModelFormat.OTHER and expect in ("model", found.value)):
        return found
    if found is ModelFormat.OTHER and looks_like_text(head, content_type):
        reason = server_reason(head, content_type) or "an empty page"
        kind = "an HTML page" if head.lstrip()[:1] == b"<" else "a text/JSON answer"
        html_page = "html" in content_type.lower() or head.lstrip()[:1] == b"<"
        if mentions_login(reason) or (html_page and mentions_login(head[:HEAD_BYTES].decode("utf-8", "replace"))):
            raise AuthRequired(f"{where} answered with {kind} instead of the file: {reason!r} (login required).")
        raise NotAModelFile(f"{where} answered with {kind} instead of a model file: {reason!r}.")
    if expect in ("model", ModelFormat.OTHER.value):
        return found
    raise NotAModelFile(
        f"{where} sent a {found.value} file where a {expect} file was expected.",
        expected=expect,
        actual=found.value,
    )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
