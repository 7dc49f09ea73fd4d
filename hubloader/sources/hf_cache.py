"""The HuggingFace cache on disk, read and written exactly as huggingface_hub lays it out.

``models--owner--repo/blobs/<id>`` (an LFS file's SHA256, a small file's git blob id), ``snapshots/<commit>/<path>``
(relative symlinks to the blobs), ``refs/<branch or tag>`` (the commit it named) and ``.no_exist/<commit>/<path>``
(files known to be absent). Ours beside them: ``.hubloader/<commit>.json``, the commit's file list, so a download
pinned to a commit can prove itself complete from the disk alone. Nothing here imports huggingface_hub: a pinned
or offline re-get is a look at the disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hubloader.core.errors import HubloaderError
from hubloader.gate.policy import DownloadRefused, check_commit, check_repo_path

logger = logging.getLogger(__name__)

#: What :func:`cached_pointer` returns for a file huggingface_hub recorded as absent at a commit (``.no_exist``).
KNOWN_MISSING = object()
MARKER_DIR = ".hubloader"  # per-repo folder in the HF cache: the file list of each fully fetched commit
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")  # a commit id or a git blob id


def is_commit_hash(revision: str | None) -> bool:
    return bool(revision and _HEX40.fullmatch(revision))


# --- cache paths ----------------------------------------------------------------------------------


def default_hub_cache() -> Path:
    """huggingface_hub's cache dir, read from the environment now (the library froze it at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(home).expanduser() / "hub"


def repo_cache_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def scratch_name(path: Path) -> Path:
    """A sibling name no other thread or process is using, for build-then-rename."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.hubloader-tmp")


def link_into(path: Path | str, dest: Path | str) -> Path:
    """Make ``dest`` show the cached file ``path`` without a second copy when the filesystem allows.

    Hardlink first (survives the HF cache being cleaned), then a symlink, a copy only as last resort.
    ``dest`` appears atomically; an existing ``dest`` that is a different file is an error.
    """
    source = Path(os.path.realpath(path))
    dest = Path(dest)
    if dest.exists():
        if os.path.samefile(source, dest):
            return dest
        raise HubloaderError(
            f"{dest} already exists and is a different file.", hint="Move it away or pick another name."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(dest)
    tmp.unlink(missing_ok=True)
    for make in (os.link, os.symlink, shutil.copyfile):
        try:
            make(source, tmp)
        except OSError as exc:
            logger.debug("%s %s -> %s failed: %s", make.__name__, source, dest, exc)
            continue
        os.replace(tmp, dest)
        return dest
    raise HubloaderError(f"Could not place {source.name} at {dest}.", hint="Check that the folder is writable.")


def link_pointer(blob: Path, pointer: Path) -> None:
    """Point ``snapshots/<commit>/<path>`` at its blob the way huggingface_hub does (relative symlink)."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(pointer)
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), tmp)
        os.replace(tmp, pointer)
    except OSError:  # no symlinks here (Windows without developer mode): fall back like the library does
        link_into(blob, pointer)


def snapshot_file(repo_folder: Path, commit: str, path: str) -> Path:
    """Where a repository file lands in the cache, once the server's commit id and file name are checked."""
    return repo_folder / "snapshots" / check_commit(commit) / check_repo_path(path)


def write_ref(repo_folder: Path, revision: str, commit: str) -> None:
    """Remember which commit a branch or tag named, so offline and pinned lookups work."""
    if revision == commit:
        return
    ref = repo_folder / "refs" / revision
    if ref.is_file() and ref.read_text(encoding="utf-8").strip() == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(ref)
    tmp.write_text(commit, encoding="utf-8")
    os.replace(tmp, ref)


# --- blobs -----------------------------------------------------------------------------------------


def check_blob_id(blob_id: str) -> str:
    """A blob's name in the cache, from the server: a SHA256 (LFS) or a git blob id (40 hex), nothing else."""
    value = (blob_id or "").lower()
    if not (SHA256_HEX.fullmatch(value) or _HEX40.fullmatch(value)):
        raise DownloadRefused(f"The server gave {blob_id!r} as a file's id; not a SHA256 or a git blob id.")
    return value


def check_git_blob(blob: Path, blob_id: str, what: str) -> None:
    """A small git-stored file is the bytes its git blob id hashes (``sha1("blob <size>\\0" + bytes)``), or
    it is removed: the Hub publishes no SHA256 for it, so this is its only published check."""
    if SHA256_HEX.fullmatch(blob_id):
        return
    digest = hashlib.sha1(b"blob %d\0" % blob.stat().st_size, usedforsecurity=False)
    with open(blob, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != blob_id.lower():
        blob.unlink(missing_ok=True)
        raise DownloadRefused(f"{what} does not match the git blob id the Hub published for it; it was removed.")


def write_file_list(folder: Path, commit: str, paths: list[str]) -> None:
    """Record a commit's full file list: with it, a pinned download can prove itself complete offline."""
    target = folder / MARKER_DIR / f"{commit}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_name(target)
    tmp.write_text(json.dumps({"files": sorted(paths)}), encoding="utf-8")
    os.replace(tmp, target)


def complete_snapshot(
    cache: Path, repo_id: str, revision: str, select: Callable[[list[str]], list[str]]
) -> Path | None:
    """The snapshot folder if every wanted file of that revision is on disk, from the cache alone."""
    folder = repo_cache_folder(cache, repo_id)
    commit = revision if is_commit_hash(revision) else read_ref(folder, revision)
    if commit is None:
        return None
    try:
        listing = json.loads((folder / MARKER_DIR / f"{commit}.json").read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    snapshot = folder / "snapshots" / commit
    wanted = select(listing)
    return snapshot if wanted and all((snapshot / p).exists() for p in wanted) else None


def read_ref(folder: Path, revision: str) -> str | None:
    try:
        commit = (folder / "refs" / revision).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if is_commit_hash(commit) else None


def cached_pointer(cache: Path, repo_id: str, path: str, revision: str) -> Path | object | None:
    """The cached file (a Path), :data:`KNOWN_MISSING`, or None, read from the cache layout as
    huggingface_hub's ``try_to_load_from_cache`` reads it, without importing the library (a pinned re-get
    pays neither its import nor a request)."""
    folder = repo_cache_folder(cache, repo_id)
    commit = revision if is_commit_hash(revision) else read_ref(folder, revision)
    if commit is None:
        return None
    pointer = snapshot_file(folder, commit, path)
    if pointer.is_file():
        return pointer
    return KNOWN_MISSING if (folder / ".no_exist" / commit / path).is_file() else None


def delete_cached_file(repo: Any, revision: Any, path: str) -> bool:
    """Remove one file from a cached revision, and its blob when no other snapshot uses it."""
    pointer = revision.snapshot_path / path
    target = next((f for f in revision.files if Path(f.file_path) == pointer), None)
    if target is None:
        return False
    shared = any(
        f.blob_path == target.blob_path and Path(f.file_path) != pointer for r in repo.revisions for f in r.files
    )
    pointer.unlink()
    if not shared:
        Path(target.blob_path).unlink(missing_ok=True)
    return True
