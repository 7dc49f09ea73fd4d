"""Know what a model file is without loading it: safetensors headers, pickle sniffing, kind and base.

A safetensors file is ``u64 N | N bytes of JSON | tensor bytes``. Everything Hubloader needs (tensor
names and shapes, the ``__metadata__`` strings kohya and ModelSpec write) is in the JSON, so we
read 8 + N bytes and never touch tensor data. The header is untrusted input: every limit of the
reference reader (huggingface/safetensors ``SafeTensors::read_metadata``) is enforced *before*
anything is allocated from it.

Pickle files (``.ckpt/.pt/.bin/.pth``) are never unpickled. They are recognised by magic bytes,
scanned with picklescan when the user allows pickles, and their tensor names are read from the
pickle opcode stream (``pickletools.genops`` decodes, it does not execute).

Kind and base detection follows InvokeAI's model probe: one small recogniser class per kind,
tried in order, each saying in its docstring how it recognises itself.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeGuard

from hubloader.core.errors import AuthRequired, InvalidFile, NetworkError, NotFound, PickleNotAllowed, UnsafeFile
from hubloader.core.metadata import BaseModel, ModelFormat, ModelType
from hubloader.engine.sniff import MAX_HEADER_SIZE, safetensors_header_length

REMOTE_FIRST_RANGE = 100_000  # bytes asked for first when reading a header over HTTP (as huggingface_hub)

DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

Shape = tuple[int, ...]


# --- safetensors header ------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: Shape
    begin: int  # relative to the start of the byte buffer (8 + header_length)
    end: int


@dataclass
class SafetensorsHeader:
    """The parsed, validated header of one safetensors file."""

    header_length: int
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int | None = None

    @property
    def data_start(self) -> int:
        """Offset of the first tensor byte: AutoV3 hashes the file from here."""
        return 8 + self.header_length

    @property
    def data_size(self) -> int:
        return max((t.end for t in self.tensors.values()), default=0)

    @property
    def shapes(self) -> dict[str, Shape]:
        return {name: t.shape for name, t in self.tensors.items()}

    @property
    def dtypes(self) -> set[str]:
        return {t.dtype for t in self.tensors.values()}


def read_header(path: str | Path) -> SafetensorsHeader:
    """Read and validate the header of a local safetensors file (8 + N bytes, nothing more)."""
    path = Path(path)
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        return _read_header_from(f, size, str(path.name))


def _read_header_from(f: BinaryIO, size: int, name: str) -> SafetensorsHeader:
    header_length = header_length_from_prefix(f.read(8), size, name)
    return parse_header(f.read(header_length), header_length=header_length, file_size=size, name=name)


def header_length_from_prefix(prefix: bytes, file_size: int | None, name: str = "file") -> int:
    """Check the 8-byte length prefix against the limits before anything is read from it."""
    if len(prefix) < 8 or (file_size is not None and file_size < 8):
        raise InvalidFile(f"{name} is not a safetensors file: it is shorter than the 8-byte header length.")
    header_length: int = struct.unpack("<Q", prefix[:8])[0]
    if header_length > MAX_HEADER_SIZE:
        raise UnsafeFile(
            f"{name} claims a {header_length:,}-byte safetensors header, above the {MAX_HEADER_SIZE:,}-byte limit; "
            "the file is hostile or not safetensors."
        )
    if header_length < 2:
        raise InvalidFile(f"{name} has an empty safetensors header.")
    if file_size is not None and 8 + header_length > file_size:
        raise InvalidFile(
            f"{name} is truncated or corrupt: its header claims {header_length:,} bytes but the file has {file_size:,}."
        )
    return header_length


def parse_header(raw: bytes, *, header_length: int, file_size: int | None, name: str = "file") -> SafetensorsHeader:
    """Validate the JSON header as the reference reader does; ``file_size=None`` skips the end-of-file check."""
    if len(raw) < header_length:
        raise InvalidFile(f"{name} is truncated: the header ends after {len(raw):,} of {header_length:,} bytes.")
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidFile(f"{name} has a safetensors header that is not UTF-8 ({exc.reason}).") from None
    except ValueError as exc:
        raise InvalidFile(f"{name} has a safetensors header that is not valid JSON ({exc}).") from None
    except RecursionError:
        raise UnsafeFile(f"{name} has a pathologically nested safetensors header.") from None
    if not isinstance(header, dict):
        raise InvalidFile(f"{name} has a safetensors header that is not a JSON object.")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidFile(f"{name} has __metadata__ that is not a string-to-string map, which safetensors forbids.")

    tensors = {tensor: _tensor_info(tensor, info, name) for tensor, info in header.items()}
    data_size = _check_offsets(tensors, name)
    if file_size is not None and 8 + header_length + data_size != file_size:
        buffer = file_size - 8 - header_length
        problem = "truncated" if data_size > buffer else "followed by unexpected bytes"
        raise InvalidFile(
            f"{name} is {problem}: its tensors need {data_size:,} bytes of data, the file holds {buffer:,}."
        )
    return SafetensorsHeader(header_length, tensors, dict(metadata), file_size)


def _tensor_info(tensor: str, info: Any, name: str) -> TensorInfo:
    if not isinstance(info, dict):
        raise InvalidFile(f"{name}: tensor {tensor!r} has no dtype/shape/data_offsets entry.")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise InvalidFile(
            f"{name}: tensor {tensor!r} has unknown dtype {dtype!r}; a newer safetensors version may be needed."
        )
    if not _int_list(shape) or any(d < 0 for d in shape):
        raise InvalidFile(f"{name}: tensor {tensor!r} has an invalid shape {shape!r}.")
    if not _int_list(offsets) or len(offsets) != 2:
        raise InvalidFile(f"{name}: tensor {tensor!r} has invalid data_offsets {offsets!r}.")
    begin, end = offsets
    if begin < 0 or end < begin:
        raise UnsafeFile(f"{name}: tensor {tensor!r} has negative or reversed data_offsets {offsets!r}.")
    bits = prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        raise InvalidFile(
            f"{name}: tensor {tensor!r} spans {end - begin:,} bytes but {dtype}{list(shape)} needs {bits / 8:,.1f}."
        )
    return TensorInfo(dtype, tuple(shape), begin, end)


def _int_list(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def _check_offsets(tensors: Mapping[str, TensorInfo], name: str) -> int:
    """Tensors must tile the buffer from 0 with no gap and no overlap; returns the buffer length."""
    expected = 0
    for tensor, info in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if info.begin < expected:
            raise UnsafeFile(f"{name}: tensor {tensor!r} overlaps another tensor's bytes (offset {info.begin:,}).")
        if info.begin > expected:
            raise InvalidFile(f"{name}: gap before tensor {tensor!r} (offset {info.begin:,}, expected {expected:,}).")
        expected = info.end
    return expected


# --- remote header (HTTP Range) ------------------------------------------------------------------

HeadersArg = Mapping[str, str] | Callable[[], Mapping[str, str]] | None


def read_remote_header(url: str, *, headers: HeadersArg = None, timeout: float = 30.0) -> SafetensorsHeader:
    """Read a safetensors header over HTTP with at most two Range requests (never the tensor data).

    ``headers`` may be a callable so a signed URL's auth header is built only when needed. A server
    that ignores Range is read as a stream and closed as soon as the header has arrived.
    """
    import requests

    from hubloader.core.settings import redact_url

    name = redact_url(url)
    extra = dict(headers() if callable(headers) else headers or {})

    def fetch(start: int, stop: int) -> tuple[bytes, int | None]:
        try:
            with requests.get(
                url, headers={**extra, "Range": f"bytes={start}-{stop - 1}"}, stream=True, timeout=timeout
            ) as response:
                _raise_for_status(response.status_code, name)
                skip = start if response.status_code == 200 else 0  # Range ignored: whole body from byte 0
                body = _read_exactly(response.raw, skip + stop - start)[skip:]
                return body, _total_size(response)
        except requests.RequestException as exc:
            raise NetworkError(f"Could not read the header of {name}: {type(exc).__name__}.") from None

    first, total = fetch(0, REMOTE_FIRST_RANGE)
    header_length = header_length_from_prefix(first[:8], total, name)
    raw = first[8 : 8 + header_length]
    if len(raw) < header_length:
        rest, _ = fetch(8 + len(raw), 8 + header_length)
        raw += rest
    return parse_header(raw, header_length=header_length, file_size=total, name=name)


def _raise_for_status(status: int, name: str) -> None:
    if status in (401, 403):
        raise AuthRequired(f"{name} refused access (HTTP {status}).")
    if status == 404:
        raise NotFound(f"{name} does not exist (HTTP 404).")
    if status not in (200, 206):
        raise NetworkError(f"{name} answered HTTP {status} to a header request.")


def _read_exactly(raw: Any, count: int) -> bytes:
    chunks, remaining = [], count
    while remaining > 0:
        chunk = raw.read(min(remaining, 1 << 20), decode_content=True)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _total_size(response: Any) -> int | None:
    """File size from ``Content-Range: bytes a-b/TOTAL`` (206) or Content-Length (200)."""
    content_range = response.headers.get("Content-Range", "")
    match = re.search(r"/(\d+)\s*$", content_range)
    if match:
        return int(match.group(1))
    if response.status_code == 200 and response.headers.get("Content-Length", "").isdigit():
        return int(response.headers["Content-Length"])
    return None


# --- format sniffing and pickles ---------------------------------------------------------------

_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def sniff_format(path: str | Path) -> ModelFormat:
    """What the first bytes say the file is, whatever its name claims.

    safetensors: a plausible u64 length followed by ``{``; torch zip (``PK\\x03\\x04``) or a raw
    pickle (protocol 2–5 marker ``\\x80\\x0N``, which legacy ``torch.save`` files also start with)
    → CKPT for ``.ckpt`` names, PICKLE otherwise; ``GGUF`` magic → GGUF.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if safetensors_header_length(head) is not None:
        return ModelFormat.SAFETENSORS
    if head.startswith(b"GGUF"):
        return ModelFormat.GGUF
    if head.startswith(b"PK\x03\x04") or head.startswith(_PICKLE_PROTOCOLS):
        return ModelFormat.CKPT if path.suffix.lower() == ".ckpt" else ModelFormat.PICKLE
    return ModelFormat.OTHER


@dataclass
class PickleScan:
    """picklescan's verdict on one file: the imports a loader would perform."""

    dangerous: list[str] = field(default_factory=list)  # "module.name" globals that can run code
    suspicious: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)  # every global referenced
    error: bool = False  # picklescan could not parse the file

    @property
    def safe(self) -> bool:
        return not self.dangerous and not self.error


#: Limits on a torch zip (``.pt``/``.ckpt``) before any of it is decompressed. torch stores its
#: entries uncompressed, one per tensor storage, beside a small ``data.pkl``: a file that claims far more
#: bytes than it holds, or a huge pickle, is a decompression bomb.
MAX_ZIP_ENTRIES = 200_000
MAX_ZIP_PICKLE_BYTES = 64 * 1024 * 1024
MAX_ZIP_RATIO = 8  # uncompressed bytes claimed per byte of archive
ZIP_RATIO_SLACK = 16 * 1024 * 1024  # small archives may compress better than that


def check_archive(path: str | Path) -> None:
    """Refuse (UnsafeFile) a zip whose entry count, pickle entries or total uncompressed size would
    exhaust memory when read; nothing is decompressed. Not a zip: nothing to check."""
    path = Path(path)
    with open(path, "rb") as f:
        if not zipfile.is_zipfile(f):
            return
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                entries = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise InvalidFile(f"{path.name} is a damaged zip archive ({exc}).") from None
    _check_zip_entries(path, entries)


def _check_zip_entries(path: Path, entries: list[zipfile.ZipInfo]) -> None:
    """The limits :func:`check_archive` applies to the entries of ``path``."""
    if len(entries) > MAX_ZIP_ENTRIES:
        raise UnsafeFile(f"{path.name} is a zip of {len(entries)} entries, more than {MAX_ZIP_ENTRIES}.")
    for entry in entries:
        if entry.filename.endswith(".pkl") and entry.file_size > MAX_ZIP_PICKLE_BYTES:
            raise UnsafeFile(
                f"{path.name} holds a {entry.file_size}-byte pickle ({entry.filename}), "
                f"more than {MAX_ZIP_PICKLE_BYTES} bytes."
            )
    claimed = sum(entry.file_size for entry in entries)
    if claimed > MAX_ZIP_RATIO * path.stat().st_size + ZIP_RATIO_SLACK:
        raise UnsafeFile(
            f"{path.name} would unpack to {claimed} bytes from {path.stat().st_size}: a decompression bomb."
        )


def scan_pickle(path: str | Path) -> PickleScan:
    """Scan a pickle/torch file's opcodes with picklescan (nothing is executed); a zip bomb is refused first."""
    from picklescan.scanner import SafetyLevel, scan_bytes

    path = Path(path)
    check_archive(path)
    with open(path, "rb") as f:
        result = scan_bytes(f, str(path.name), file_ext=path.suffix.lower())
    names = [(f"{g.module}.{g.name}", g.safety) for g in result.globals]
    return PickleScan(
        dangerous=[n for n, s in names if s == SafetyLevel.Dangerous],
        suspicious=[n for n, s in names if s == SafetyLevel.Suspicious],
        imports=[n for n, _ in names],
        error=bool(result.scan_err),
    )


def check_pickle(path: str | Path, *, allow_pickle: bool) -> PickleScan:
    """Refuse a pickle unless allowed; when allowed, refuse it if picklescan finds code-running imports."""
    path = Path(path)
    if not allow_pickle:
        raise PickleNotAllowed(f"{path.name} is a pickle file and pickles are not allowed.")
    scan = scan_pickle(path)
    if scan.dangerous:
        raise UnsafeFile(f"{path.name} would run code when loaded: it imports {', '.join(scan.dangerous)}.")
    if scan.error:
        raise UnsafeFile(f"{path.name} could not be scanned for dangerous pickle imports.")
    return scan


_PICKLE_NAME_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}
_PICKLE_NAME_LIMIT = 200_000


def pickle_tensor_names(path: str | Path) -> list[str]:
    """Tensor-name-looking strings from a torch pickle's opcode stream, decoded without executing it.

    Shapes are not recovered (they live in REDUCE arguments), so recognisers see names only. A zip bomb
    is refused (UnsafeFile) before anything is decompressed.
    """
    path = Path(path)
    check_archive(path)
    names: list[str] = []
    with open(path, "rb") as f:
        if zipfile.is_zipfile(f):
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                member = next((m for m in archive.namelist() if m.endswith("data.pkl")), None)
                if member is None:
                    return []
                with archive.open(member) as pkl:
                    _collect_pickle_strings(pkl, names, pickles=1)
        else:
            f.seek(0)
            _collect_pickle_strings(f, names, pickles=4)  # legacy torch.save: magic, version, sys info, data
    return names


def _looks_like_tensor_name(text: str) -> bool:
    return ("." in text and " " not in text) or text in _EMBEDDING_KEYS


def _collect_pickle_strings(stream: IO[bytes], names: list[str], *, pickles: int) -> None:
    for _ in range(pickles):
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if opcode.name in _PICKLE_NAME_OPS and isinstance(arg, str) and _looks_like_tensor_name(arg):
                    names.append(arg)
                    if len(names) >= _PICKLE_NAME_LIMIT:
                        return
        except (ValueError, EOFError, UnicodeDecodeError, struct.error):
            return


# --- detection ----------------------------------------------------------------------------------


@dataclass
class Detection:
    """What a file is and what it was made for, with the tensor evidence that decided it."""

    kind: ModelType = ModelType.OTHER
    base: BaseModel = BaseModel.UNKNOWN
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # variant, algo, rank, latent_channels, encoder …


class Tensors:
    """Names → shapes (shape None when unknown, e.g. from a pickle) with the lookups recognisers need."""

    def __init__(self, shapes: Mapping[str, Shape | None]) -> None:
        self.shapes = dict(shapes)
        self.names = list(self.shapes)

    @classmethod
    def from_header(cls, header: SafetensorsHeader) -> Tensors:
        return cls(header.shapes)

    def __contains__(self, name: str) -> bool:
        return name in self.shapes

    def __len__(self) -> int:
        return len(self.names)

    def startswith(self, *prefixes: str) -> bool:
        return any(n.startswith(prefixes) for n in self.names)

    def endswith(self, *suffixes: str) -> bool:
        return any(n.endswith(suffixes) for n in self.names)

    def contains(self, *needles: str) -> bool:
        return any(needle in n for n in self.names for needle in needles)

    def with_prefix(self, prefix: str) -> list[str]:
        return [n for n in self.names if n.startswith(prefix)]

    def dim(self, name: str | None, axis: int) -> int | None:
        shape = self.shapes.get(name) if name else None
        try:
            return shape[axis] if shape is not None else None
        except IndexError:
            return None

    def first(self, *, prefix: str = "", suffix: str = "", contains: str = "") -> str | None:
        for n in self.names:
            if n.startswith(prefix) and n.endswith(suffix) and contains in n:
                return n
        return None


class Recogniser:
    """One kind of model file. ``recognise`` returns a Detection when the tensors fit, else None."""

    kind: ModelType = ModelType.OTHER

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        raise NotImplementedError


_CONTEXT_DIM_BASE = {768: BaseModel.SD15, 1024: BaseModel.SD2, 2048: BaseModel.SDXL, 1280: BaseModel.SDXL}
_EMBEDDING_DIM_BASE = {768: BaseModel.SD15, 1024: BaseModel.SD2}
_EMBEDDING_KEYS = ("emb_params", "clip_l", "clip_g", "string_to_param", "string_to_token", "name", "step")


class EmbeddingRecogniser(Recogniser):
    """Textual inversion: at most a handful of tensors named ``emb_params`` (safetensors SD1/SD2),
    ``clip_l`` + ``clip_g`` (SDXL) or A1111's ``string_to_param.*``. Vector width decides the base:
    768 → SD1, 1024 → SD2; ``clip_g`` present → SDXL."""

    kind = ModelType.EMBEDDING

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        pickled = "string_to_param" in t  # an A1111 .pt: its other strings are not all tensor names
        if not pickled and (not t.names or len(t) > 6 or not all(n.split(".")[0] in _EMBEDDING_KEYS for n in t.names)):
            return None
        if "clip_g" in t:
            return Detection(
                cls.kind, BaseModel.SDXL, 0.95, ["clip_g + clip_l vectors"], {"vectors": t.dim("clip_g", 0)}
            )
        vector = t.first(prefix="emb_params") or t.first(prefix="string_to_param")
        if vector is None:
            return None
        width = t.dim(vector, -1)
        base = _EMBEDDING_DIM_BASE.get(width or 0, BaseModel.UNKNOWN)
        details = {"vectors": t.dim(vector, 0)} if width else {}
        return Detection(cls.kind, base, 0.9, [f"{vector} width {width}"], details)


_LOHA = (".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b")
_LOKR = (".lokr_w1", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2", ".lokr_w2_a", ".lokr_w2_b")
_LYCORIS_OTHER = {"glora": (".a1.weight", ".b1.weight"), "ia3": (".on_input",)}


class LycorisRecogniser(Recogniser):
    """LyCORIS adapters other than plain LoRA: LoHa (``.hada_w1_a``/``_b``, ``.hada_w2_*``), LoKr
    (``.lokr_w1``/``.lokr_w2`` or their ``_a``/``_b`` factors), GLoRA (``.a1.weight``+``.b1.weight``),
    (IA)^3 (``.on_input``). The base comes from the adapted layers, as for LoRA."""

    kind = ModelType.LYCORIS

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if t.endswith(*_LOHA):
            algo = "loha"
        elif t.endswith(*_LOKR):
            algo = "lokr"
        else:
            algo = next((a for a, suffixes in _LYCORIS_OTHER.items() if all(t.endswith(s) for s in suffixes)), "")
        if not algo:
            return None
        base, why = _adapter_base(t)
        return Detection(cls.kind, base, 0.9, [f"LyCORIS {algo} keys", why], {"algo": algo, **_dora(t)})


_KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_")
_LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight")


class KohyaLoraRecogniser(Recogniser):
    """kohya-ss LoRA/LoCon/DoRA: ``lora_unet_*``/``lora_te[123]_*`` modules with ``.lora_down.weight``,
    ``.lora_up.weight`` and ``.alpha``; DoRA adds ``.dora_scale``. Rank = ``lora_down`` out-dim."""

    kind = ModelType.LORA

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if not (t.startswith(*_KOHYA_PREFIXES) and t.endswith(*_LORA_SUFFIXES)):
            return None
        base, why = _adapter_base(t)
        down = t.first(suffix=".lora_down.weight")
        details = {"family": "kohya", "rank": t.dim(down, 0), **_dora(t)}
        return Detection(cls.kind, base, 0.95, ["kohya lora_unet_/lora_te_ names", why], details)


_PEFT_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora.down.weight", "_lora.down.weight", ".down.weight")


class DiffusersLoraRecogniser(Recogniser):
    """Diffusers/PEFT and related LoRA naming: ``*.lora_A.weight``/``*.lora_B.weight`` (PEFT,
    ComfyUI/BFL ``diffusion_model.*``), older ``*.lora.down.weight`` / ``processor.to_q_lora.down.weight``,
    XLabs Flux ``*.processor.proj_lora1.down.weight``. DoRA adds ``.dora_scale`` / ``lora_magnitude_vector``."""

    kind = ModelType.LORA

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        peft = t.endswith(".lora_A.weight") and t.endswith(".lora_B.weight")
        old = t.endswith(".lora.down.weight", "_lora.down.weight") or t.contains("_lora1.down.weight")
        if not (peft or old):
            return None
        base, why = _adapter_base(t)
        down = t.first(suffix=".lora_A.weight") or t.first(suffix="down.weight")
        details = {"family": "peft" if peft else "diffusers", "rank": t.dim(down, 0), **_dora(t)}
        return Detection(cls.kind, base, 0.9, ["diffusers/PEFT LoRA names", why], details)


def _dora(t: Tensors) -> dict[str, bool]:
    return (
        {"dora": True} if t.endswith(".dora_scale", ".lora_magnitude_vector", ".lora_magnitude_vector.weight") else {}
    )


_ADAPTER_DOWN = (
    ".lora_down.weight",
    ".lora_A.weight",
    ".lora.down.weight",
    "_lora.down.weight",
    ".hada_w1_b",
    ".hada_w2_b",
)


def _adapter_in_dim(t: Tensors, needle: str) -> int | None:
    """Input width of the adapted layer whose flattened name contains ``needle`` (e.g. ``attn2_to_k``)."""
    for name in t.names:
        if needle not in name:
            continue
        if name.endswith(_ADAPTER_DOWN):
            width = t.dim(name, 1)
            if width:
                return width
        if name.endswith((".lokr_w1", ".lokr_w1_b")):
            module = name.rsplit(".", 1)[0]
            w1 = t.dim(name, 1)
            w2 = t.dim(f"{module}.lokr_w2", 1) or t.dim(f"{module}.lokr_w2_b", 1)
            if w1 and w2:
                return w1 * w2
    return None


def _adapter_base(t: Tensors) -> tuple[BaseModel, str]:
    """Base of a LoRA/LyCORIS from the layer names it adapts and their widths (InvokeAI's approach)."""
    if t.contains("double_blocks", "single_blocks", "single_transformer_blocks", "lora_te3_"):
        return BaseModel.FLUX1, "Flux block names"
    if t.contains("joint_blocks") or t.startswith("transformer.transformer_blocks."):
        return BaseModel.SD3, "SD3 MMDiT block names"
    if t.startswith("lora_te1_", "lora_te2_", "text_encoder_2.") or t.contains("input_blocks", "output_blocks"):
        return BaseModel.SDXL, "SDXL names (two text encoders / SGM UNet blocks)"
    for needle in ("attn2_to_k", "attn2.to_k"):
        width = _adapter_in_dim(t, needle)
        if width in _CONTEXT_DIM_BASE:
            return _CONTEXT_DIM_BASE[width], f"cross-attention to_k input width {width}"
    for needle in ("mlp_fc1", "mlp.fc1"):
        width = _adapter_in_dim(t, needle)
        if width in _EMBEDDING_DIM_BASE:
            return _EMBEDDING_DIM_BASE[width], f"text encoder width {width}"
    return BaseModel.UNKNOWN, "no width-bearing layer found"


class ControlNetRecogniser(Recogniser):
    """ControlNet: LDM ``control_model.input_hint_block.*``/``zero_convs.*`` (or unprefixed), diffusers
    ``controlnet_cond_embedding.conv_in.weight``, Flux/SD3 ``controlnet_blocks.*``; control-LoRA has a
    ``lora_controlnet`` marker. Base from the cross-attention width or transformer block names."""

    kind = ModelType.CONTROLNET

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        ldm = t.contains("input_hint_block.") and t.contains("zero_convs.")
        diffusers = t.startswith("controlnet_cond_embedding.")
        dit = t.startswith("controlnet_blocks.", "controlnet_x_embedder.")
        if not (ldm or diffusers or dit or "lora_controlnet" in t):
            return None
        details: dict[str, Any] = {"format": "ldm" if ldm else "diffusers"}
        if "lora_controlnet" in t:
            details["control_lora"] = True
        if t.contains("single_transformer_blocks", "double_blocks", "single_blocks"):
            base, why = BaseModel.FLUX1, "Flux block names"
        elif dit:
            base, why = BaseModel.SD3, "MMDiT controlnet blocks"
        else:
            base, why = _context_base(t, "")
        return Detection(cls.kind, base, 0.9, ["ControlNet hint/conditioning blocks", why], details)


_UNET = "model.diffusion_model."
_VAE_PREFIXES = ("first_stage_model.", "vae.")
_TEXT_PREFIXES = ("cond_stage_model.", "conditioner.embedders.", "text_encoders.")


class CheckpointRecogniser(Recogniser):
    """Full checkpoint (LDM single-file layout): a UNet/DiT under ``model.diffusion_model.`` together
    with a VAE (``first_stage_model.``/``vae.``) or text encoders (``cond_stage_model.``,
    ``conditioner.embedders.``, ``text_encoders.``). Base from the diffusion model (see ``_unet_base``)."""

    kind = ModelType.BASE_MODEL

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if not (t.startswith(_UNET) and t.startswith(*_VAE_PREFIXES, *_TEXT_PREFIXES)):
            return None
        base, why, details = _unet_base(t, _UNET)
        return Detection(cls.kind, base, 0.95, ["UNet + VAE/text encoder in one file", why], details)


class DiffusionModelRecogniser(Recogniser):
    """Bare diffusion model (UNet/DiT only): ``model.diffusion_model.`` with nothing else, or the same
    names unprefixed (``input_blocks.*``+``time_embed.*``; Flux ``double_blocks.*``+``img_in``; SD3
    ``joint_blocks.*``), or diffusers ``down_blocks.*``+``conv_in``+``time_embedding`` /
    ``transformer_blocks.*``+``x_embedder``/``pos_embed``."""

    kind = ModelType.DIFFUSION_MODEL

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        for prefix in (_UNET, "diffusion_model.", ""):
            ldm = t.startswith(f"{prefix}input_blocks.") and t.startswith(f"{prefix}time_embed.")
            dit = t.startswith(f"{prefix}double_blocks.", f"{prefix}joint_blocks.")
            if ldm or dit:
                base, why, details = _unet_base(t, prefix)
                return Detection(cls.kind, base, 0.9, [f"diffusion model under {prefix or 'no prefix'}", why], details)
        if t.startswith("down_blocks.") and "conv_in.weight" in t and t.startswith("time_embedding."):
            base, why = _context_base(t, "")
            return Detection(cls.kind, base, 0.85, ["diffusers UNet", why], {"format": "diffusers"})
        if t.startswith("transformer_blocks.") and t.startswith("x_embedder.", "pos_embed."):
            if t.startswith("single_transformer_blocks."):
                dev = t.startswith("time_text_embed.guidance_embedder.")
                details = {"format": "diffusers", "variant": "dev" if dev else "schnell"}
                return Detection(cls.kind, BaseModel.FLUX1, 0.85, ["diffusers Flux transformer"], details)
            return Detection(cls.kind, BaseModel.SD3, 0.8, ["diffusers MMDiT transformer"], {"format": "diffusers"})
        return None


def _context_base(t: Tensors, prefix: str) -> tuple[BaseModel, str]:
    """SD1/SD2/SDXL from the cross-attention key width (768/1024/2048; 1280 is the SDXL refiner)."""
    to_k = t.first(prefix=prefix, suffix="attn2.to_k.weight")
    width = t.dim(to_k, 1)
    if width in _CONTEXT_DIM_BASE:
        return _CONTEXT_DIM_BASE[width], f"cross-attention context width {width}"
    return BaseModel.UNKNOWN, "no cross-attention layer found"


def _unet_base(t: Tensors, prefix: str) -> tuple[BaseModel, str, dict[str, Any]]:
    """Architecture of an LDM-layout diffusion model whose keys start with ``prefix``."""
    if t.startswith(f"{prefix}double_blocks."):
        dev = f"{prefix}guidance_in.in_layer.weight" in t
        return BaseModel.FLUX1, "Flux double/single blocks", {"variant": "dev" if dev else "schnell"}
    if t.startswith(f"{prefix}joint_blocks."):
        depth = 1 + max(int(n[len(prefix) :].split(".")[1]) for n in t.with_prefix(f"{prefix}joint_blocks."))
        large, medium35 = depth >= 38, t.contains(".x_block.attn2.")
        base = BaseModel.SD35 if large or medium35 else BaseModel.SD3
        variant = "large" if large else "medium"
        return base, f"MMDiT with {depth} joint blocks", {"variant": variant, "depth": depth}
    base, why = _context_base(t, prefix)
    details: dict[str, Any] = {}
    if base is BaseModel.SDXL and why.endswith("1280"):
        details["variant"] = "refiner"
    channels = t.dim(f"{prefix}input_blocks.0.0.weight", 1)
    if channels in (8, 9):
        details["variant"] = "inpainting" if channels == 9 else "instruct-pix2pix"
    return base, why, details


class VaeRecogniser(Recogniser):
    """VAE: ``encoder.conv_in.weight`` and ``decoder.conv_in.weight`` (optionally under
    ``first_stage_model.``/``vae.``) with no diffusion model. Latent channels = in-dim of
    ``decoder.conv_in.weight``: 4 → the SD1/SD2/SDXL family (shapes cannot tell which), 16 → SD3/Flux."""

    kind = ModelType.VAE

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        for prefix in ("", *_VAE_PREFIXES):
            if f"{prefix}encoder.conv_in.weight" in t and f"{prefix}decoder.conv_in.weight" in t:
                channels = t.dim(f"{prefix}decoder.conv_in.weight", 1)
                details: dict[str, Any] = {"latent_channels": channels}
                if t.startswith(f"{prefix}encoder.down_blocks."):
                    details["format"] = "diffusers"
                return Detection(cls.kind, BaseModel.UNKNOWN, 0.9, [f"VAE with {channels} latent channels"], details)
        return None


class TextEncoderRecogniser(Recogniser):
    """Text encoder: T5 (``encoder.block.0.layer.0.SelfAttention.q.weight``; d_model 4096 = T5-XXL),
    CLIP in HF naming (``text_model.encoder.layers.*``; width 768 = CLIP-L, 1280 = CLIP-G, 1024 = CLIP-H)
    or OpenCLIP (``transformer.resblocks.*``), without a vision tower. Shared by several bases."""

    kind = ModelType.TEXT_ENCODER

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        q = t.first(suffix="encoder.block.0.layer.0.SelfAttention.q.weight")
        if q:
            width = t.dim(q, 1)
            encoder = "t5xxl" if width == 4096 else "t5"
            return Detection(cls.kind, BaseModel.UNKNOWN, 0.9, [f"T5 encoder width {width}"], {"encoder": encoder})
        fc1 = t.first(contains="text_model.encoder.layers.0.", suffix="mlp.fc1.weight") or t.first(
            prefix="transformer.resblocks.0.", suffix="mlp.c_fc.weight"
        )
        if fc1 and not t.contains("vision_model."):
            width = t.dim(fc1, 1)
            encoder = {768: "clip_l", 1024: "clip_h", 1280: "clip_g"}.get(width or 0, "clip")
            return Detection(
                cls.kind, BaseModel.UNKNOWN, 0.85, [f"CLIP text encoder width {width}"], {"encoder": encoder}
            )
        return None


class ClipVisionRecogniser(Recogniser):
    """CLIP vision tower: ``vision_model.embeddings.patch_embedding.weight`` (HF naming)."""

    kind = ModelType.CLIP_VISION

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        if t.contains("vision_model.embeddings.patch_embedding"):
            return Detection(cls.kind, BaseModel.UNKNOWN, 0.85, ["CLIP vision embeddings"])
        return None


class UpscalerRecogniser(Recogniser):
    """ESRGAN-family upscaler: ``conv_first.weight`` with ``body.*``/``RRDB_trunk.*`` (new naming) or
    ``model.0.weight`` with ``model.1.sub.*`` (old naming)."""

    kind = ModelType.UPSCALER

    @classmethod
    def recognise(cls, t: Tensors) -> Detection | None:
        new = "conv_first.weight" in t and t.startswith("body.", "RRDB_trunk.")
        old = "model.0.weight" in t and t.startswith("model.1.sub.")
        if new or old:
            return Detection(cls.kind, BaseModel.OTHER, 0.8, ["ESRGAN layer names"])
        return None


# Order matters: adapters before full models (a LoRA names UNet layers), ControlNet before the bare
# diffusion model (it carries input_blocks too), the catch-all-ish encoders last.
RECOGNISERS: tuple[type[Recogniser], ...] = (
    EmbeddingRecogniser,
    LycorisRecogniser,
    KohyaLoraRecogniser,
    DiffusersLoraRecogniser,
    ControlNetRecogniser,
    CheckpointRecogniser,
    DiffusionModelRecogniser,
    VaeRecogniser,
    TextEncoderRecogniser,
    ClipVisionRecogniser,
    UpscalerRecogniser,
)


def detect(tensors: Tensors | SafetensorsHeader | Mapping[str, Shape | None]) -> Detection:
    """Kind and base from tensor names and shapes alone (metadata refines it: see ``refine_base``)."""
    if isinstance(tensors, SafetensorsHeader):
        tensors = Tensors.from_header(tensors)
    elif not isinstance(tensors, Tensors):
        tensors = Tensors(tensors)
    for recogniser in RECOGNISERS:
        found = recogniser.recognise(tensors)
        if found is not None:
            found.evidence.insert(0, recogniser.__name__)
            return found
    return Detection(evidence=["no recogniser matched"])


# --- base refinement from metadata --------------------------------------------------------------

_ARCHITECTURES: list[tuple[str, BaseModel]] = [
    ("stable-diffusion-v1", BaseModel.SD15),
    ("stable-diffusion-v2", BaseModel.SD2),
    ("stable-diffusion-xl", BaseModel.SDXL),
    ("stable-diffusion-v3-5", BaseModel.SD35),
    ("stable-diffusion-v3.5", BaseModel.SD35),
    ("stable-diffusion-3.5", BaseModel.SD35),
    ("stable-diffusion-v3", BaseModel.SD3),
    ("stable-diffusion-3", BaseModel.SD3),
    ("flux-1", BaseModel.FLUX1),
    ("flux.1", BaseModel.FLUX1),
    ("flux-2", BaseModel.FLUX2),
]
_KOHYA_VERSIONS: list[tuple[str, BaseModel]] = [
    ("sd_v1", BaseModel.SD15),
    ("sd_v2", BaseModel.SD2),
    ("sdxl", BaseModel.SDXL),
    ("sd3.5", BaseModel.SD35),
    ("sd3", BaseModel.SD3),
    ("flux2", BaseModel.FLUX2),
    ("flux", BaseModel.FLUX1),
]
# Substrings of a training-base or file name; the SDXL sub-families first.
_NAME_HINTS: list[tuple[str, BaseModel]] = [
    ("pony", BaseModel.PONY),
    ("illustrious", BaseModel.ILLUSTRIOUS),
    ("noob", BaseModel.NOOBAI),
    ("flux", BaseModel.FLUX1),
    ("sd3.5", BaseModel.SD35),
    ("sd35", BaseModel.SD35),
    ("sd3", BaseModel.SD3),
    ("sdxl", BaseModel.SDXL),
    ("sd_xl", BaseModel.SDXL),
    ("xl", BaseModel.SDXL),
    ("v1-5", BaseModel.SD15),
    ("sd15", BaseModel.SD15),
    ("sd1.5", BaseModel.SD15),
]


def base_from_name(name: str) -> BaseModel:
    """A base hinted by a file or model name (``ponyDiffusionV6XL`` → Pony); UNKNOWN when silent."""
    text = name.lower()
    return next((base for needle, base in _NAME_HINTS if needle in text), BaseModel.UNKNOWN)


def base_from_metadata(metadata: Mapping[str, str]) -> tuple[BaseModel, str]:
    """Base from header metadata: ``modelspec.architecture`` → ``ss_base_model_version`` → ``ss_v2``,
    then ``ss_sd_model_name`` narrows SDXL to Pony/Illustrious/NoobAI (or decides alone).

    Returns (UNKNOWN, "") when the metadata says nothing.
    """
    base, source = BaseModel.UNKNOWN, ""
    architecture = metadata.get("modelspec.architecture", "").lower()
    version = metadata.get("ss_base_model_version", "").lower()
    if architecture:
        base = next((b for needle, b in _ARCHITECTURES if architecture.startswith(needle)), BaseModel.UNKNOWN)
        source = "modelspec.architecture" if base is not BaseModel.UNKNOWN else ""
    if base is BaseModel.UNKNOWN and "black-forest-labs/flux" in metadata.get("modelspec.implementation", ""):
        base, source = BaseModel.FLUX1, "modelspec.implementation"
    if base is BaseModel.UNKNOWN and version:
        base = next((b for needle, b in _KOHYA_VERSIONS if version.startswith(needle)), BaseModel.UNKNOWN)
        source = "ss_base_model_version" if base is not BaseModel.UNKNOWN else ""
    if base is BaseModel.UNKNOWN and metadata.get("ss_v2") == "True":
        base, source = BaseModel.SD2, "ss_v2"
    hinted = base_from_name(metadata.get("ss_sd_model_name", ""))
    if hinted is not BaseModel.UNKNOWN and (
        base is BaseModel.UNKNOWN or (base is BaseModel.SDXL and hinted.family is base)
    ):
        base, source = hinted, "ss_sd_model_name"
    return base, source


def refine_base(
    detected: BaseModel, *claims: tuple[BaseModel, str], fallback: tuple[BaseModel, str] | None = None
) -> tuple[BaseModel, str]:
    """Combine the tensor verdict with claims (CivitAI baseModel, header metadata …, best first).

    Tensors decide the family when they can; a claim of the same family refines it (SDXL → Pony);
    a claim of another family is ignored. When tensors are silent the first claim wins, then
    ``fallback`` (e.g. a file-name hint).
    """
    known = {BaseModel.UNKNOWN, BaseModel.OTHER}
    usable = [(b, s) for b, s in claims if b not in known]
    if detected not in known:
        return next(((b, s) for b, s in usable if b.family is detected.family), (detected, "tensors"))
    if usable:
        return usable[0]
    if fallback and fallback[0] not in known:
        return fallback
    return detected, "tensors" if detected is not BaseModel.UNKNOWN else ""


# --- one call for a local file -----------------------------------------------------------------


@dataclass
class FileInspection:
    """Everything a header-only look at one file tells: format, header, detection, pickle verdict."""

    path: Path
    format: ModelFormat
    size: int
    header: SafetensorsHeader | None = None
    detection: Detection = field(default_factory=Detection)
    pickle_scan: PickleScan | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return self.header.metadata if self.header else {}

    @property
    def is_pickle(self) -> bool:
        return self.format.is_pickle


def inspect_file(path: str | Path, *, scan_pickles: bool = False) -> FileInspection:
    """Read what can be read safely: a safetensors header, or a pickle's tensor names (and a picklescan
    verdict when ``scan_pickles``). Raises InvalidFile/UnsafeFile for a bad safetensors header."""
    path = Path(path)
    size = path.stat().st_size
    fmt = sniff_format(path)
    if fmt is ModelFormat.OTHER and ModelFormat.from_filename(path.name) is ModelFormat.SAFETENSORS:
        fmt = ModelFormat.SAFETENSORS  # let the header reader say precisely what is wrong
    if fmt is ModelFormat.SAFETENSORS:
        header = read_header(path)
        return FileInspection(path, fmt, size, header, detect(header))
    if fmt.is_pickle:
        scan = scan_pickle(path) if scan_pickles else None
        names: Iterable[str] = pickle_tensor_names(path)
        detection = detect({_strip_state_dict(n): None for n in names})
        return FileInspection(path, fmt, size, None, detection, scan)
    return FileInspection(path, fmt, size)


def _strip_state_dict(name: str) -> str:
    return name[len("state_dict.") :] if name.startswith("state_dict.") else name
