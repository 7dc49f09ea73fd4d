"""ComfyUI's model folders, seen through ``folder_paths`` (imported when first needed, never at import).

Everything a page or a workflow asks for is checked here: only kinds ComfyUI knows, only names
that stay inside their folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hubloader.core.errors import ConfigError
from hubloader.core.metadata import MODEL_EXTENSIONS

#: folder_paths kinds that are not model folders: never a download target.
NOT_MODEL_KINDS = frozenset({"custom_nodes", "configs", "classifiers"})


def folder_paths() -> Any:
    import folder_paths as module  # ComfyUI's; only importable inside ComfyUI (or a test stand-in)

    return module


def model_kinds() -> list[str]:
    return sorted(k for k in folder_paths().folder_names_and_paths if k not in NOT_MODEL_KINDS)


def check_kind(kind: str) -> str:
    """``kind`` if ComfyUI knows it as a model folder; legacy names are mapped ("unet" → "diffusion_models")."""
    fp = folder_paths()
    kind = fp.map_legacy(str(kind or "").strip()) if hasattr(fp, "map_legacy") else str(kind or "").strip()
    if kind not in fp.folder_names_and_paths or kind in NOT_MODEL_KINDS:
        raise ConfigError(f"{kind!r} is not a ComfyUI model folder.", hint=f"Use one of: {', '.join(model_kinds())}.")
    return kind


def list_names(kind: str) -> list[str]:
    """The names a combo offers: ComfyUI's own (cached, mtime-checked) listing, or [] for an unknown kind."""
    try:
        return folder_paths().get_filename_list(kind)
    except KeyError:
        return []


def target_dir(kind: str) -> Path:
    """Where a new file of ``kind`` goes: the kind's first folder, as ComfyUI's own downloaders do."""
    folder = Path(folder_paths().get_folder_paths(check_kind(kind))[0])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def full_path(kind: str, name: str) -> Path | None:
    try:
        found = folder_paths().get_full_path(kind, name)
    except KeyError:
        return None
    return Path(found) if found else None


def relative_name(kind: str, path: Path) -> str:
    """``path`` as the combo spells it: relative to the kind's folder that holds it."""
    for folder in folder_paths().get_folder_paths(kind):
        try:
            return str(Path(path).resolve().relative_to(Path(folder).resolve()))
        except ValueError:
            continue
    return Path(path).name


def refresh(kind: str) -> None:
    """Drop ComfyUI's cached listing of ``kind`` (dir mtimes lag on some network mounts)."""
    folder_paths().filename_list_cache.pop(kind, None)


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a model file name inside a folder, or None when it can."""
    text = str(name or "").strip()
    if not text:
        return "no model chosen"
    parts = text.replace("\\", "/").split("/")
    if text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":") or ".." in parts or "" in parts:
        return f"{text!r} is not a file name inside the models folder"
    if os.path.splitext(text)[1].lower() not in MODEL_EXTENSIONS | {".pt2", ".pkl"}:
        return f"{text!r} does not end in a model file extension ({', '.join(sorted(MODEL_EXTENSIONS))})"
    return None


def identity(path: Path | None) -> str:
    """What changes when the file changes: path, size and modification time (no hashing on every run)."""
    if path is None:
        return "missing"
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"
