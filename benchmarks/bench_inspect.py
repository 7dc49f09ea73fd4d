"""Inspection benchmarks: header-only library scan of 1,000 files, and hashing a 2 GiB file.

    .venv/bin/python -m benchmarks.bench_inspect [--files 1000] [--hash-gib 2] [--dir /tmp/x]

Targets (issue 7): scan ≤ 2 s cold, ≤ 0.3 s rescan unchanged; ``hash_file`` (SHA256 + AutoV1 +
AutoV3 + BLAKE3 + CRC32 in one pass) ≥ 0.9× the throughput of ``sha256sum`` on the same file.
"Cold" means a first scan with nothing known (a fresh process's registry); the OS page cache is not
dropped, since the files were just written.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from hubloader.engine.hashing import hash_file, sha256_file
from hubloader.library.scan import scan_paths
from tests.fakehub import modelfiles as mf

PRESETS = [
    lambda i: (
        mf.kohya_lora("sd15"),
        mf.kohya_metadata(f"lora{i}", tag_frequency={f"10_c{i}": {f"c{i}": 9, "1girl": 8}}),
    ),
    lambda i: (mf.kohya_lora("sdxl"), mf.kohya_metadata(f"xl{i}", "sdxl")),
    lambda i: (mf.kohya_flux_lora(), {"ss_base_model_version": "flux1"}),
    lambda i: (mf.embedding("sd15"), None),
    lambda i: (mf.lycoris("lokr"), None),
    lambda i: (mf.vae(4), None),
    lambda i: (mf.controlnet(), None),
    lambda i: (mf.diffusers_lora("sdxl"), None),
]


def make_library(root: Path, count: int) -> None:
    for i in range(count):
        tensors, metadata = PRESETS[i % len(PRESETS)](i)
        mf.write_safetensors(root / f"dir{i % 20}" / f"model_{i:04d}.safetensors", tensors, metadata, seed=i)


def bench_scan(root: Path, count: int) -> dict[str, float]:
    make_library(root, count)
    started = time.perf_counter()
    cold = scan_paths([root])
    cold_s = time.perf_counter() - started
    assert len(cold.models) == count and not cold.errors, cold.errors[:3]
    known = {str(m.local_path): (m.extra["size"], m.extra["mtime_ns"]) for m in cold.models}
    started = time.perf_counter()
    warm = scan_paths([root], known=known)
    rescan_s = time.perf_counter() - started
    assert not warm.models and len(warm.unchanged) == count
    return {"cold_s": cold_s, "rescan_s": rescan_s}


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_hash(path: Path, gib: float) -> dict[str, float]:
    size = int(gib * 1024**3)
    raw = b'{"pad":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (0, 0)
    header_len = len(raw) + 32  # room for the real digits, padded with spaces
    data_len = size - 8 - header_len
    raw = (b'{"pad":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (data_len, data_len)).ljust(header_len)
    with open(path, "wb") as f:  # a safetensors-shaped file, so AutoV3 is computed too
        f.write(struct.pack("<Q", header_len) + raw)
        block = os.urandom(16 << 20)
        remaining = data_len
        while remaining > 0:
            remaining -= f.write(block[: min(len(block), remaining)])
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # same page-cache state for all
    import blake3

    def blake3_only() -> None:
        b = blake3.blake3(max_threads=blake3.blake3.AUTO)
        b.update_mmap(str(path))

    results = {
        "sha256sum_s": _timed(lambda: subprocess.run(["sha256sum", str(path)], stdout=subprocess.DEVNULL, check=True)),
        "hash_file_s": _timed(lambda: hash_file(path)),
        "sha256_file_s": _timed(lambda: sha256_file(path)),
        "blake3_only_s": _timed(blake3_only),
    }
    hashes = hash_file(path)
    assert hashes.autov3 and hashes.autov1
    gib_size = size / 1024**3
    return {**results, **{k.replace("_s", "_gib_s"): gib_size / v for k, v in results.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--hash-gib", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hubloader-bench-", dir=args.dir))
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        scan = bench_scan(work / "library", args.files)
        print(
            f"scan {args.files} files: cold {scan['cold_s']:.3f} s (target ≤ 2), rescan {scan['rescan_s']:.3f} s (≤ 0.3)"
        )
        if args.hash_gib > 0:
            h = bench_hash(work / "big.safetensors", args.hash_gib)
            ratio = h["hash_file_gib_s"] / h["sha256sum_gib_s"]
            print(
                f"hash {args.hash_gib} GiB: sha256sum {h['sha256sum_gib_s']:.2f} GiB/s; hash_file (all six) "
                f"{h['hash_file_gib_s']:.2f} GiB/s = {ratio:.2f}x sha256sum (target ≥ 0.9); "
                f"sha256 alone {h['sha256_file_gib_s']:.2f} GiB/s; blake3 alone (mmap, threads) "
                f"{h['blake3_only_gib_s']:.2f} GiB/s"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
