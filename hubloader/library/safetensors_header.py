"""The safetensors header, read and validated without touching tensor data, locally or over HTTP.

A safetensors file is ``u64 N | N bytes of JSON | tensor bytes``. Everything Hubloader needs (tensor
names and shapes, the ``__metadata__`` strings kohya and ModelSpec write) is in the JSON, so we
read 8 + N bytes and never touch tensor data. The header is untrusted input: every limit of the
reference reader (huggingface/safetensors ``SafeTensors::read_metadata``) is enforced *before*
anything is allocated from it.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeGuard

from hubloader.core.errors import InvalidFile, UnsafeFile
from hubloader.core.settings import Secret, redact_url
from hubloader.engine.sniff import MAX_HEADER_SIZE

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


class TensorInfo(NamedTuple):
    """One tensor's entry (a tuple: a LoRA header holds hundreds, a checkpoint's thousands, read per scan)."""

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
        return read_header_from(f, size, str(path.name))


def read_header_from(f: BinaryIO, size: int, name: str) -> SafetensorsHeader:
    """The header of the open safetensors file ``f`` (at its start) of ``size`` bytes, called ``name`` in errors."""
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
    """The entry of ``tensor``, validated. The common case (a well-formed entry) is checked inline; anything
    else goes through :func:`_checked_tensor_info`, which says precisely what is wrong."""
    if type(info) is dict:
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
        if (
            isinstance(dtype, str)
            and bits is not None
            and type(shape) is list
            and type(offsets) is list
            and len(offsets) == 2
        ):
            begin, end = offsets
            if (
                type(begin) is int
                and type(end) is int
                and 0 <= begin <= end
                and all(type(d) is int and d >= 0 for d in shape)
            ):
                total = prod(shape) * bits
                if not total % 8 and end - begin == total // 8:
                    return TensorInfo(dtype, tuple(shape), begin, end)
    return _checked_tensor_info(tensor, info, name)


def _checked_tensor_info(tensor: str, info: Any, name: str) -> TensorInfo:
    if not isinstance(info, dict):
        raise InvalidFile(f"{name}: tensor {tensor!r} has no dtype/shape/data_offsets entry.")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:  # a list is unhashable: not a dtype either
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


def read_remote_header(
    url: str, *, token_service: str | None = None, token: Secret | None = None, timeout: float = 30.0
) -> SafetensorsHeader:
    """Read a safetensors header over HTTP with at most two Range requests (never the tensor data).

    Through the gate (:func:`hubloader.gate.fetch.read_byte_range`): the host and every redirect hop must be
    allowed, and ``token_service``'s token (``token``, else the configured one) is sent only to that service's own
    endpoint. A server that ignores Range is read as a stream and closed as soon as the header has arrived.
    """
    from hubloader.gate.fetch import read_byte_range  # the engine and its HTTP stack: only for a remote read

    name = redact_url(url)

    def fetch(start: int, stop: int) -> tuple[bytes, int | None]:
        return read_byte_range(url, start, stop, token_service=token_service, token=token, timeout=timeout)

    first, total = fetch(0, REMOTE_FIRST_RANGE)
    header_length = header_length_from_prefix(first[:8], total, name)
    raw = first[8 : 8 + header_length]
    if len(raw) < header_length:
        rest, _ = fetch(8 + len(raw), 8 + header_length)
        raw += rest
    return parse_header(raw, header_length=header_length, file_size=total, name=name)
