"""A folder made read-only for real, for the storage-fault tests: ``chmod`` for a normal user; for root (whom
``chmod`` does not stop) a read-only tmpfs mounted over it with the same content. Skips where neither works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` (created, with whatever it holds now) read-only until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        pytest.skip("a read-only folder needs POSIX permissions or a mount")
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in (folder, *folder.rglob("*"))}
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    source = folder.with_name(folder.name + ".content")
    shutil.copytree(folder, source)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without the right to mount a read-only folder")
    try:
        shutil.copytree(source, folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)
