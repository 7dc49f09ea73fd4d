"""Hash definitions checked against independent implementations (hashlib, the blake3 package, zlib)."""

from __future__ import annotations

import hashlib
import struct
import threading
import zlib
from pathlib import Path

import blake3
import pytest

from hubloader.core.errors import Cancelled
from hubloader.engine.hashing import FileHashes, hash_file, verify_checksum
from tests.fakehub import modelfiles as mf


def _independent(data: bytes, safetensors: bool) -> dict[str, str | None]:
    """Each definition written out directly from civitai.md §8, one hash at a time."""
    sha = hashlib.sha256(data).hexdigest()
    header_length = struct.unpack("<Q", data[:8])[0] if safetensors else 0
    return {
        "sha256": sha,
        "autov1": hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8] if len(data) >= 0x200000 else None,
        "autov2": sha[:10],
        "autov3": hashlib.sha256(data[8 + header_length :]).hexdigest()[:12] if safetensors else None,
        "blake3": blake3.blake3(data).hexdigest(),
        # CivitAI's .NET scanner prints the IEEE CRC-32 bytes little-endian first.
        "crc32": zlib.crc32(data).to_bytes(4, "little").hex(),
    }


def _ours(hashes: FileHashes) -> dict[str, str | None]:
    return {
        "sha256": hashes.sha256,
        "autov1": hashes.autov1,
        "autov2": hashes.autov2,
        "autov3": hashes.autov3,
        "blake3": hashes.blake3,
        "crc32": hashes.crc32,
    }


def test_civitai_scanner_test_vector(tmp_path: Path) -> None:
    """civitai/model-scanner HashTaskTests: the file "hello world" hashes to these (no AutoV1: < 2 MiB)."""
    path = tmp_path / "dummy.txt"
    path.write_bytes(b"hello world")
    assert hash_file(path).civitai() == {
        "SHA256": "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9",
        "AutoV2": "B94D27B993",
        "BLAKE3": "D74981EFA70A0C880B8D8C1985D075DBCBF679B99A5F9914E5AAF96B831A9E24",
        "CRC32": "85114A0D",
    }


@pytest.mark.parametrize("chunk_size", [4096, 1 << 20, 16 << 20], ids=["4KiB", "1MiB", "16MiB"])
def test_safetensors_hashes_match_independent_implementations(tmp_path: Path, chunk_size: int) -> None:
    """A 3 MiB LoRA: every chunk boundary case for AutoV1 (1 MiB + 64 KiB) and AutoV3 (after the header)."""
    spec = {**mf.kohya_lora("sdxl"), "pad": ("U8", (3 << 20,))}
    path = mf.write_safetensors(tmp_path / "lora.safetensors", spec, mf.kohya_metadata("x", "sdxl"))
    data = path.read_bytes()
    assert _ours(hash_file(path, chunk_size=chunk_size)) == _independent(data, safetensors=True)


def test_autov3_ignores_metadata_edits(tmp_path: Path) -> None:
    a = mf.write_safetensors(tmp_path / "a.safetensors", mf.kohya_lora(), {"ss_output_name": "a"})
    b = mf.write_safetensors(tmp_path / "b.safetensors", mf.kohya_lora(), {"ss_output_name": "renamed", "x": "y"})
    ha, hb = hash_file(a), hash_file(b)
    assert ha.sha256 != hb.sha256
    assert ha.autov3 == hb.autov3 is not None


def test_non_safetensors_files_have_no_autov3(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(mf.pickle_checkpoint_bytes() * 2000)
    data = path.read_bytes()
    assert _ours(hash_file(path)) == _independent(data, safetensors=False)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert _ours(hash_file(path)) == _independent(b"", safetensors=False)


def test_progress_and_cancel(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"\1" * (5 << 20))
    seen: list[tuple[int, int]] = []
    hash_file(path, chunk_size=1 << 20, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5 << 20, 5 << 20) and len(seen) == 5

    cancel = threading.Event()

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2 << 20:
            cancel.set()

    with pytest.raises(Cancelled):
        hash_file(path, chunk_size=1 << 20, progress=stop_after_two, cancel=cancel)


def test_verify_checksum_accepts_sha256_and_autov2_in_any_case(tmp_path: Path) -> None:
    path = mf.write_safetensors(tmp_path / "m.safetensors", mf.embedding())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert verify_checksum(path, sha)
    assert verify_checksum(path, sha.upper())
    assert verify_checksum(path, "0x" + sha)
    assert verify_checksum(path, sha[:10].upper())
    assert not verify_checksum(path, "wrong_hash")
    assert not verify_checksum(path, sha[:12])  # AutoV3 is not a prefix of the full hash
    assert not verify_checksum(path, ("0" if sha[0] != "0" else "1") + sha[1:])
    assert not verify_checksum(path, "")
