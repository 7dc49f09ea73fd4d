"""Reading a workflow: a ComfyUI workflow in UI format (subgraphs included) or API/prompt format, from a
``.json`` file or a PNG/WebP/JPEG that carries one, or A1111 infotext."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError, InvalidFile


@dataclass
class Workflow:
    """A workflow as read: its format ("ui", "api" or "infotext") and its data (a dict, or the text)."""

    format: str
    data: Any
    path: Path | None = None


IMAGE_SUFFIXES = frozenset({".png", ".webp", ".jpg", ".jpeg"})
# ComfyUI's SaveAnimatedWEBP: EXIF 0x0110 (Model) = "prompt:<json>", then 0x010F (Make), 0x010E … =
# "<extra_pnginfo key>:<json>" counting down, "workflow" being the first key.
_EXIF_COMFY_TAGS = (0x0110, 0x010F, 0x010E, 0x010D, 0x010C)
_EXIF_IFD, _EXIF_USER_COMMENT = 0x8769, 0x9286  # A1111 writes infotext there in WebP/JPEG


def read_workflow(source: str | os.PathLike[str] | dict[str, Any]) -> Workflow:
    """Read a workflow from a path (.json, PNG, WebP, JPEG, .txt infotext), a dict, or JSON/infotext text.

    An image may carry several: the UI ``workflow`` wins (it has ``properties.models``), then the API
    ``prompt``, then A1111 ``parameters``.
    """
    if isinstance(source, dict):
        return _classify(source, None)
    if isinstance(source, str) and not _looks_like_path(source):
        return _from_text(source, None)
    path = Path(source)
    if not path.is_file():
        raise InvalidFile(f"{path} does not exist or is not a file.", hint="Give the path of a workflow or an image.")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _from_image(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidFile(
            f"{path} could not be read as text ({exc}).", hint="Give a .json workflow or an image."
        ) from exc
    return _from_text(text, path)


def _looks_like_path(text: str) -> bool:
    return "\n" not in text and len(text) < 4096 and not text.lstrip().startswith(("{", "["))


def _from_text(text: str, path: Path | None) -> Workflow:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return _classify(json.loads(stripped), path)
        except ValueError as exc:
            raise InvalidFile(
                f"{path or 'The text'} is not valid JSON ({exc}).", hint="Export the workflow again."
            ) from exc
    if stripped:
        return Workflow("infotext", stripped, path)
    raise InvalidFile(f"{path or 'The text'} is empty.", hint="Give a ComfyUI workflow or A1111 infotext.")


def _classify(data: Any, path: Path | None) -> Workflow:
    """UI format has a ``nodes`` list; API format maps node ids to ``{class_type, inputs}``."""
    if isinstance(data, dict):
        if isinstance(data.get("nodes"), list):
            return Workflow("ui", data, path)
        # Wrappers seen in the wild: {"workflow": UI}, {"prompt": API, "extra_data": …}.
        if isinstance(data.get("workflow"), dict):
            return _classify(data["workflow"], path)
        if isinstance(data.get("prompt"), dict):
            return _classify(data["prompt"], path)
        if data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
            return Workflow("api", data, path)
    raise InvalidFile(
        f"{path or 'The data'} is not a ComfyUI workflow (neither UI format with 'nodes' nor API format).",
        hint="Save the workflow from ComfyUI (Workflow → Save / Export (API)) and try again.",
    )


def image_metadata(path: Path) -> dict[str, str]:
    """The text entries an image carries: PNG text chunks, or ComfyUI's/A1111's EXIF entries in WebP/JPEG."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - every host ships Pillow
        raise ConfigError("Reading images needs Pillow.", hint="Install it with `pip install pillow`.") from exc
    try:
        with Image.open(path) as image:
            entries = {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}
            for key, value in image.info.items():
                if isinstance(value, str) and key in ("workflow", "prompt", "parameters"):
                    entries.setdefault(key, value)
            exif = image.getexif()
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise InvalidFile(f"{path} is not a readable image ({exc}).") from exc
    for tag in _EXIF_COMFY_TAGS:
        value = exif.get(tag)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and ":" in value:
            key, _, payload = value.partition(":")
            entries.setdefault(key.strip(), payload)
    comment = exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    if comment:
        entries.setdefault("parameters", _user_comment(comment))
    return entries


def _user_comment(value: bytes | str) -> str:
    """EXIF UserComment: an 8-byte charset code then the text (A1111 writes UNICODE = UTF-16)."""
    if isinstance(value, str):
        return value
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        # piexif writes big-endian; a BOM-less little-endian body shows as NULs in odd positions.
        big = body[:1] == b"\x00"
        return body.decode("utf-16-be" if big else "utf-16-le", "replace").strip("\x00")
    return body.decode("utf-8", "replace").strip("\x00")


def _from_image(path: Path) -> Workflow:
    entries = image_metadata(path)
    for key in ("workflow", "prompt"):
        if entries.get(key):
            try:
                return _classify(json.loads(entries[key]), path)
            except (ValueError, InvalidFile):
                continue  # a damaged entry; another one may still be usable
    if entries.get("parameters"):
        return Workflow("infotext", entries["parameters"], path)
    raise InvalidFile(
        f"{path} carries no workflow, prompt or A1111 parameters.",
        hint="The image may have been saved with metadata disabled or re-encoded by another program.",
    )
