"""Matching a workflow's models to local files: exact path, then the same file name in another subfolder
of its kind (reported as the value to use)."""

from __future__ import annotations

import os
from pathlib import Path

from hubloader.core.errors import ConfigError
from hubloader.core.folders import ModelFolders
from hubloader.workflows.finding import ModelReference, is_model_file, name_matches, norm_name
from hubloader.workflows.report import Status


def folder_dirs(folders: ModelFolders, kind: str) -> list[Path]:
    """The folders of a kind; none for a kind the host has no folder for."""
    try:
        return folders.dirs(kind)
    except ConfigError:
        return []  # a kind this host has no folder for (e.g. "style_models" outside ComfyUI)


class LocalIndex:
    """Every model file under the folders, walked once per kind on first use."""

    def __init__(self, folders: ModelFolders) -> None:
        self.folders = folders
        self._files: dict[str, list[tuple[str, Path]]] = {}

    def files(self, kind: str) -> list[tuple[str, Path]]:
        """(path relative to its kind folder, absolute path) for every model file of that kind."""
        if kind not in self._files:
            listed: list[tuple[str, Path]] = []
            for root in folder_dirs(self.folders, kind):
                for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for name in sorted(filenames):
                        if is_model_file(name):
                            full = Path(dirpath) / name
                            listed.append((os.path.relpath(full, root), full))
            self._files[kind] = listed
        return self._files[kind]

    def find(self, ref: ModelReference) -> tuple[Status, Path, str] | None:
        """Exact path in one of the kind's folders, else the same file name in any subfolder."""
        kinds = [ref.kind] if ref.kind else self.folders.kinds()
        relative = norm_name(ref.name)
        for kind in kinds:
            for root in folder_dirs(self.folders, kind):
                exact = root / relative
                if _safe_join(root, relative) and exact.is_file():
                    return Status.FOUND, exact, ref.name
        if placed_apart(relative):  # named by its source's own folder: a same-named file elsewhere is another's
            return None
        for kind in kinds:
            for rel, full in self.files(kind):
                if name_matches(ref.file_name, full.name):
                    same = norm_name(rel) == relative or os.path.splitext(norm_name(rel))[0] == relative
                    status = Status.FOUND if same else Status.FOUND_ELSEWHERE
                    return status, full, rel
        return None


def placed_apart(relative: str) -> bool:
    """Whether a workflow's name sits in the folder a download of a same-named different file was placed
    apart in (``owner__repo/…``, hubloader.pipeline.hf_apart), which names the file's source."""
    first, slash, _ = relative.partition("/")
    return bool(slash) and "__" in first.strip("_")


def _safe_join(root: Path, relative: str) -> bool:
    """The workflow's name stays inside the folder (a hostile ``../../x`` is never looked at)."""
    parts = Path(relative).parts
    return bool(parts) and not Path(relative).is_absolute() and ".." not in parts


def is_under(path: Path, root: Path) -> bool:
    """``path`` is inside ``root`` once links are resolved."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def relative_to(path: Path, root: Path) -> str:
    """``path`` as a loader widget names it: relative to the kind's folder ``root``."""
    return os.path.relpath(path.resolve(), root.resolve())
