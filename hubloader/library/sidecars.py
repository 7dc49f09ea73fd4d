"""The files that sit beside a model: ours, A1111's and other tools'.

* A1111/Forge ``<stem>.json`` (extra-networks user metadata): exact keys ``description``,
  ``sd version``, ``activation text``, ``preferred weight``, ``negative text``, ``notes``. We merge,
  never clobber: a key is only (re)written when it is empty or still holds what *we* wrote last
  time; anything the user typed, and any key another tool added, is kept.
* ``<stem>.preview.png``: the card image A1111 finds (``find_preview``) and ComfyUI tools show.
* ``<stem>.hubloader.json`` (ours): a frozen copy of the source's metadata taken at download time
  (``source_metadata``, never replaced once written, so a model later deleted on CivitAI keeps its
  description, triggers and hashes), the latest ModelMetadata, and what we last wrote into the A1111
  sidecar (which is how user edits are told apart from ours). It lives beside the model, not only
  in the registry, so it travels with the file and survives a lost database.
* Read-only: Civitai Helper ``<stem>.civitai.info`` (the version API JSON saved verbatim) and
  LoRA Manager ``<stem>.metadata.json`` (``civitai`` subset, ``base_model``, ``usage_tips``).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hubloader.core.errors import InvalidFile
from hubloader.core.metadata import BaseModel, ModelMetadata, Source

log = logging.getLogger(__name__)

A1111_KEYS = ("description", "sd version", "activation text", "preferred weight", "negative text", "notes")
_A1111_EMPTY: dict[str, Any] = {key: "" for key in A1111_KEYS} | {"preferred weight": 0}
PREVIEW_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "gif")  # A1111's find_preview order

# A1111's network.SdVersion names (Forge adds Flux); everything else is "Unknown" to its editor.
_SD_VERSION_BY_FAMILY = {
    BaseModel.SD15: "SD1",
    BaseModel.SD2: "SD2",
    BaseModel.SDXL: "SDXL",
    BaseModel.FLUX1: "Flux",
}
_BASE_BY_SD_VERSION = {
    "sd1": BaseModel.SD15,
    "sd2": BaseModel.SD2,
    "sdxl": BaseModel.SDXL,
    "flux": BaseModel.FLUX1,
    "sd3": BaseModel.SD3,
}


def sidecar_path(model_path: str | Path, suffix: str) -> Path:
    """``/m/x.safetensors`` + ``.civitai.info`` → ``/m/x.civitai.info`` (A1111 uses splitext too)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + suffix)


def sd_version_for(base: BaseModel) -> str:
    return _SD_VERSION_BY_FAMILY.get(base.family, "Unknown")


def base_from_sd_version(value: Any) -> BaseModel:
    return _BASE_BY_SD_VERSION.get(str(value or "").strip().lower(), BaseModel.UNKNOWN)


# --- plain JSON files --------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing or unreadable (a broken sidecar never stops a scan)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("Ignoring unreadable sidecar %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside the target and rename, so no reader ever sees half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    # indent=4, ensure_ascii=False: byte-for-byte what A1111's own editor writes.
    _atomic_write(path, (json.dumps(data, indent=4, ensure_ascii=False) + "\n").encode("utf-8"))


# --- our record: the frozen source metadata ----------------------------------------------------

FROZEN_SUFFIX = ".hubloader.json"


def read_frozen(model_path: str | Path) -> dict[str, Any] | None:
    return read_json(sidecar_path(model_path, FROZEN_SUFFIX))


def _update_frozen(model_path: str | Path, **fields: Any) -> dict[str, Any]:
    path = sidecar_path(model_path, FROZEN_SUFFIX)
    record = read_json(path) or {"hubloader": 1}
    record.update(fields)
    _write_json(path, record)
    return record


def freeze_source_metadata(
    model_path: str | Path, source: Source | str, raw: Mapping[str, Any], *, metadata: ModelMetadata | None = None
) -> Path:
    """Keep the source's own JSON (e.g. the CivitAI version document) beside the model.

    The first copy stays: later calls only refresh ``metadata``. Returns the record's path.
    """
    record = read_frozen(model_path) or {}
    fields: dict[str, Any] = {}
    if "source_metadata" not in record:
        fields.update(
            source=str(source),
            saved_at=datetime.now(timezone.utc).isoformat(),
            source_metadata=dict(raw),
        )
    if metadata is not None:
        fields["metadata"] = metadata.to_dict()
    _update_frozen(model_path, **fields)
    return sidecar_path(model_path, FROZEN_SUFFIX)


# --- A1111 user metadata -----------------------------------------------------------------------


def read_a1111(model_path: str | Path) -> dict[str, Any] | None:
    return read_json(sidecar_path(model_path, ".json"))


def write_a1111(model_path: str | Path, values: Mapping[str, Any], *, overwrite: bool = False) -> dict[str, Any]:
    """Merge ``values`` into ``<stem>.json`` and return what is now on disk.

    None values are ignored. A key is written when it is absent or empty, when it still holds what
    Hubloader wrote last time, or when ``overwrite`` is set; otherwise the user's text stays.
    """
    model_path = Path(model_path)
    path = sidecar_path(model_path, ".json")
    current = read_json(path) or {}
    ours = dict((read_frozen(model_path) or {}).get("a1111_written") or {})
    merged = {**_A1111_EMPTY, **current}
    for key, value in values.items():
        if value is None:
            continue
        existing = current.get(key)
        if overwrite or existing in (None, "", 0) or (key in ours and existing == ours[key]):
            merged[key] = value
            ours[key] = value
    if merged != current:
        _write_json(path, merged)
    _update_frozen(model_path, a1111_written=ours)
    return merged


def a1111_values(metadata: ModelMetadata) -> dict[str, Any]:
    """The A1111 sidecar fields a ModelMetadata can fill."""
    return {
        "description": metadata.description or None,
        "sd version": sd_version_for(metadata.base_model) if metadata.base_model is not BaseModel.UNKNOWN else None,
        "activation text": ", ".join(metadata.trigger_words) or None,
        "preferred weight": metadata.recommended_weight,
        "notes": _page_url(metadata) or None,
    }


def _page_url(metadata: ModelMetadata) -> str:
    """The model's page a person opens: CivitAI's ``/models/<model>?modelVersionId=<version>`` (numbers, not our
    ``civitai:M@V`` id), HuggingFace's ``/<repo>/blob/<revision>/<path>`` for a file, ``/<repo>`` for a repo."""
    from hubloader.core.settings import civitai_endpoint, hf_endpoint

    if metadata.source is Source.CIVITAI and metadata.model_id:
        model, version = _civitai_numbers(metadata)
        if not model:
            return metadata.remote_url
        query = f"?modelVersionId={version}" if version else ""
        return f"{civitai_endpoint()}/models/{model}{query}"
    if metadata.source is Source.HUGGINGFACE and metadata.model_id:
        repo, path = _hf_repo_and_path(metadata)
        if not path:
            return f"{hf_endpoint()}/{repo}"
        revision = metadata.version or "main"
        return f"{hf_endpoint()}/{repo}/blob/{quote(revision, safe='')}/{quote(path)}"
    return metadata.remote_url


def _civitai_numbers(metadata: ModelMetadata) -> tuple[str, str]:
    """A CivitAI model's ``(model id, version id)`` as numbers: recorded apart, else read from ``civitai:M@V``."""
    model = str(metadata.extra.get("civitai_model_id") or "")
    version = str(metadata.version_id or metadata.extra.get("civitai_version_id") or "")
    match = re.fullmatch(r"(?:civitai:)?(\d+)(?:@(\d+))?", metadata.model_id.strip())
    if match:
        model = model or match.group(1)
        version = version or (match.group(2) or "")
    return model, version


def _hf_repo_and_path(metadata: ModelMetadata) -> tuple[str, str]:
    """A HuggingFace id split into repo and file path: ``owner/repo/dir/f.safetensors`` → ``owner/repo``, ``dir/f…``.

    The file's own name (``files[0]``) decides where the path starts; else a repo id is ``owner/name``."""
    model_id = metadata.model_id.strip("/")
    if len(metadata.files) == 1 and model_id.endswith("/" + metadata.files[0].name):
        path = metadata.files[0].name
        return model_id[: -len(path) - 1], path
    parts = model_id.split("/", 2)
    return "/".join(parts[:2]), parts[2] if len(parts) > 2 else ""


# --- previews ----------------------------------------------------------------------------------

_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"))


def image_type(data: bytes) -> str | None:
    for magic, ext in _IMAGE_MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def find_preview(model_path: str | Path, names: Collection[str] | None = None) -> Path | None:
    """The preview A1111 would show: ``<stem>.<ext>`` then ``<stem>.preview.<ext>`` per extension."""
    model_path = Path(model_path)
    for ext in PREVIEW_EXTENSIONS:
        for suffix in (f".{ext}", f".preview.{ext}"):
            candidate = sidecar_path(model_path, suffix)
            if candidate.name in names if names is not None else candidate.is_file():
                return candidate
    return None


def write_preview(model_path: str | Path, image: bytes, *, overwrite: bool = False) -> Path:
    """Save ``image`` as ``<stem>.preview.png`` (converted with Pillow when it is JPEG/WebP/GIF and
    Pillow is there; else kept as ``<stem>.preview.<its ext>``, which A1111 finds too).

    An existing preview is kept unless ``overwrite``; its path is returned.
    """
    existing = find_preview(model_path)
    if existing is not None and not overwrite:
        return existing
    kind = image_type(image)
    name = Path(model_path).name
    if kind is None:
        raise InvalidFile(f"The preview for {name} is not a PNG, JPEG, WebP or GIF image.")
    image, kind = _checked_png(image, kind, name)
    target = sidecar_path(model_path, f".preview.{kind}")
    _atomic_write(target, image)
    return target


#: Most pixels a preview may have: it is a card thumbnail. Checked from the header, before decoding,
#: below Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``).
MAX_PREVIEW_PIXELS = 64 * 1024 * 1024


def _checked_png(image: bytes, kind: str, name: str) -> tuple[bytes, str]:
    """``image`` as PNG once its size is known to be sane (a PNG is kept as it is); unchecked and
    unconverted without Pillow. InvalidFile for a bomb or an image Pillow cannot read."""
    try:
        from PIL import Image
    except ImportError:
        return image, kind
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
            with Image.open(io.BytesIO(image)) as opened:
                width, height = opened.size
                if width * height > MAX_PREVIEW_PIXELS:
                    raise InvalidFile(
                        f"The preview for {name} is {width}x{height} pixels, more than {MAX_PREVIEW_PIXELS}."
                    )
                if kind == "png":
                    return image, kind
                out = io.BytesIO()
                opened.convert("RGBA" if opened.mode in ("RGBA", "LA", "P") else "RGB").save(out, "PNG")
                return out.getvalue(), "png"
    except Image.DecompressionBombError:
        raise InvalidFile(f"The preview for {name} is larger than {MAX_PREVIEW_PIXELS} pixels.") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidFile(f"The preview for {name} could not be decoded ({exc}).") from None


# --- other tools' files and the combined view --------------------------------------------------


def read_civitai_info(model_path: str | Path) -> dict[str, Any] | None:
    """Civitai Helper's ``.civitai.info``; its empty skeleton (model not on CivitAI) reads as None."""
    info = read_json(sidecar_path(model_path, ".civitai.info"))
    return info if info and (info.get("id") or info.get("trainedWords")) else None


def read_lora_manager(model_path: str | Path) -> dict[str, Any] | None:
    return read_json(sidecar_path(model_path, ".metadata.json"))


@dataclass
class Sidecars:
    """Every sidecar found beside one model file (None where absent)."""

    a1111: dict[str, Any] | None = None
    civitai_info: dict[str, Any] | None = None
    lora_manager: dict[str, Any] | None = None
    frozen: dict[str, Any] | None = None
    preview: Path | None = None

    def civitai_version(self) -> dict[str, Any] | None:
        """The CivitAI version document from whichever file has it: Civitai Helper, our frozen copy,
        LoRA Manager's subset."""
        if self.civitai_info:
            return self.civitai_info
        if self.frozen and self.frozen.get("source") == Source.CIVITAI.value:
            return self.frozen.get("source_metadata")
        civitai = (self.lora_manager or {}).get("civitai")
        return civitai if isinstance(civitai, dict) and civitai else None

    def a1111_by_user(self) -> dict[str, Any] | None:
        """The A1111 sidecar minus the keys still holding what Hubloader wrote there (``a1111_written``):
        only what the user typed is the user's word; our own copies keep the provenance of their source."""
        if not self.a1111:
            return self.a1111
        ours = (self.frozen or {}).get("a1111_written") or {}
        return {key: value for key, value in self.a1111.items() if key not in ours or value != ours[key]}

    def recorded_metadata(self) -> dict[str, Any] | None:
        """The ModelMetadata (as a dict) frozen with the source record: what we wrote into the A1111 sidecar,
        with the provenance of each value."""
        recorded = (self.frozen or {}).get("metadata")
        return recorded if isinstance(recorded, dict) else None

    def base_claims(self) -> list[tuple[BaseModel, str]]:
        """What the sidecars say the base is, best first: CivitAI baseModel, LoRA Manager, A1111."""
        claims: list[tuple[BaseModel, str]] = []
        version = self.civitai_version()
        if version and version.get("baseModel"):
            claims.append((BaseModel.from_civitai(version["baseModel"]), "civitai"))
        if self.lora_manager and self.lora_manager.get("base_model"):
            claims.append((BaseModel.from_civitai(self.lora_manager["base_model"]), "sidecar"))
        by_user = self.a1111_by_user()
        if by_user:
            claims.append((base_from_sd_version(by_user.get("sd version")), "sidecar"))
        return [(base, source) for base, source in claims if base not in (BaseModel.UNKNOWN, BaseModel.OTHER)]


_SIDECAR_SUFFIXES = (".json", ".civitai.info", ".metadata.json", FROZEN_SUFFIX)


def read_sidecars(model_path: str | Path, names: Collection[str] | None = None) -> Sidecars:
    """Read every sidecar of ``model_path``. ``names`` (the directory listing) avoids a stat per
    candidate when scanning a whole folder."""
    model_path = Path(model_path)

    def present(suffix: str) -> bool:
        return names is None or sidecar_path(model_path, suffix).name in names

    found = {suffix: present(suffix) for suffix in _SIDECAR_SUFFIXES}
    return Sidecars(
        a1111=read_a1111(model_path) if found[".json"] else None,
        civitai_info=read_civitai_info(model_path) if found[".civitai.info"] else None,
        lora_manager=read_lora_manager(model_path) if found[".metadata.json"] else None,
        frozen=read_frozen(model_path) if found[FROZEN_SUFFIX] else None,
        preview=find_preview(model_path, names),
    )


def write_download_sidecars(
    model_path: str | Path,
    metadata: ModelMetadata,
    *,
    raw: Mapping[str, Any] | None = None,
    preview: bytes | None = None,
) -> Sidecars:
    """After a download: freeze the source JSON, merge the A1111 sidecar, save the preview (if any).

    A preview that cannot be decoded is skipped with a warning: it never fails the download.
    """
    if raw is not None:
        freeze_source_metadata(model_path, metadata.source, raw, metadata=metadata)
    write_a1111(model_path, a1111_values(metadata))
    if preview:
        try:
            write_preview(model_path, preview)
        except InvalidFile as exc:
            log.warning("Preview for %s not saved: %s", Path(model_path).name, exc)
    return read_sidecars(model_path)
