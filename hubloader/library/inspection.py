"""Know what a model file is without loading it: one header-only look at a local file.

The pieces live in modules named for them: :mod:`~hubloader.library.safetensors_header` (the header,
local or over HTTP), :mod:`~hubloader.library.pickles` (pickle files, never unpickled) and
:mod:`~hubloader.library.recognisers` (kind and base). Their public names stay importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hubloader.core.metadata import ModelFormat
from hubloader.engine.sniff import MAX_HEADER_SIZE
from hubloader.library.pickles import (
    PickleScan,
    check_archive,
    check_pickle,
    format_of,
    pickle_tensor_names,
    scan_pickle,
    sniff_format,
)
from hubloader.library.recognisers import (
    RECOGNISERS,
    Detection,
    Recogniser,
    Tensors,
    base_from_metadata,
    base_from_name,
    detect,
    refine_base,
)
from hubloader.library.safetensors_header import (
    DTYPE_BITS,
    REMOTE_FIRST_RANGE,
    SafetensorsHeader,
    Shape,
    TensorInfo,
    header_length_from_prefix,
    parse_header,
    read_header,
    read_header_from,
    read_remote_header,
)

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
    verdict when ``scan_pickles``). Raises InvalidFile/UnsafeFile for a bad safetensors header.

    A safetensors file is opened once and read twice (the 8-byte length with the format's magic, then the
    header): a library scan does this for thousands of files, so nothing else touches it."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(9)
        fmt = format_of(head, path.name)
        if fmt is ModelFormat.OTHER and ModelFormat.from_filename(path.name) is ModelFormat.SAFETENSORS:
            fmt = ModelFormat.SAFETENSORS  # let the header reader say precisely what is wrong
        if fmt is ModelFormat.SAFETENSORS:
            f.seek(0)
            header = read_header_from(f, size, path.name)
            return FileInspection(path, fmt, size, header, detect(header))
    if fmt.is_pickle:
        scan = scan_pickle(path) if scan_pickles else None
        names: Iterable[str] = pickle_tensor_names(path)
        detection = detect({_strip_state_dict(n): None for n in names})
        return FileInspection(path, fmt, size, None, detection, scan)
    return FileInspection(path, fmt, size)


def _strip_state_dict(name: str) -> str:
    return name[len("state_dict.") :] if name.startswith("state_dict.") else name


__all__ = [
    "DTYPE_BITS",
    "MAX_HEADER_SIZE",
    "RECOGNISERS",
    "REMOTE_FIRST_RANGE",
    "Detection",
    "FileInspection",
    "PickleScan",
    "Recogniser",
    "SafetensorsHeader",
    "Shape",
    "TensorInfo",
    "Tensors",
    "base_from_metadata",
    "base_from_name",
    "check_archive",
    "check_pickle",
    "detect",
    "header_length_from_prefix",
    "inspect_file",
    "parse_header",
    "pickle_tensor_names",
    "read_header",
    "read_remote_header",
    "refine_base",
    "scan_pickle",
    "format_of",
    "read_header_from",
    "sniff_format",
]
