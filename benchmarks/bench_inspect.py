"""Inspection benchmarks: header-only library scan of 1,000 files, and hashing a 2 GiB file.

    .venv/bin/python -m benchmarks.bench_inspect [--files 1000] [--runs 3] [--hash-gib 2] [--dir /tmp/x]

Targets (issue 22): a cold ``ModelRegistry.scan`` (headers, sidecars, kind/base detection and the index writes)
≤ 3× a bare header-reading loop over the same files (walk, open, read 8 + N bytes, ``json.loads``), measured in
the same run; a rescan of the unchanged files ≤ 0.1 s. ``--runs`` repeats the scan part (a fresh registry each
time) and prints each run's figures and the medians. Issue 7: ``hash_file`` (SHA256 + AutoV1 + AutoV3 + BLAKE3 +
CRC32 in one pass) ≥ 0.9× the throughput of ``sha256sum`` on the same file.
"Cold" means a first scan with nothing known (a fresh registry); the OS page cache is not dropped, since the
files were just written, and the bare loop reads them just before, so both see the same cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from hubloader.engine.hashing import hash_file, sha256_file
from hubloader.library.scan import scan_paths
from hubloader.registry import ModelRegistry
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


def bare_header_loop(root: Path) -> int:
    """The anchor: what any scan must do at least, in plain Python (walk, open, read 8 + N bytes, parse the JSON)."""
    count = 0
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".safetensors"):
                with open(os.path.join(folder, name), "rb") as f:
                    json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
                count += 1
    return count


def bench_scan(root: Path, count: int, work: Path, run: int) -> dict[str, float]:
    """One run: the bare loop, then ``scan_paths`` alone, a cold ``ModelRegistry.scan`` into a fresh database and
    a rescan of the unchanged files."""
    assert bare_header_loop(root) == count  # the page cache holds every header for every contender
    bare_s = _timed(lambda: bare_header_loop(root))
    started = time.perf_counter()
    cold = scan_paths([root])
    paths_s = time.perf_counter() - started
    assert len(cold.models) == count and not cold.errors, cold.errors[:3]
    with ModelRegistry(work / f"run{run}.db") as registry:
        started = time.perf_counter()
        first = registry.scan([root])
        registry_s = time.perf_counter() - started
        assert len(first.models) == count and not first.errors
        started = time.perf_counter()
        again = registry.scan([root])
        rescan_s = time.perf_counter() - started
        assert not again.models and len(again.unchanged) == count
    return {
        "bare_s": bare_s,
        "scan_paths_s": paths_s,
        "registry_s": registry_s,
        "rescan_s": rescan_s,
        "scan_paths_x": paths_s / bare_s,
        "registry_x": registry_s / bare_s,
    }


def _report_scan(count: int, run: str, r: dict[str, float]) -> None:
    print(
        f"scan {count} files, {run}: bare header loop {r['bare_s']:.3f} s; cold registry.scan {r['registry_s']:.3f} s "
        f"= {r['registry_x']:.1f}x bare (target <= 3); scan_paths alone {r['scan_paths_s']:.3f} s = "
        f"{r['scan_paths_x']:.1f}x; rescan {r['rescan_s']:.3f} s (target <= 0.1)"
    )


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
    parser.add_argument("--runs", type=int, default=3, help="scan runs; medians are printed last")
    parser.add_argument("--hash-gib", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hubloader-bench-", dir=args.dir))
    try:
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        make_library(work / "library", args.files)
        runs = [bench_scan(work / "library", args.files, work, run) for run in range(args.runs)]
        for number, scan in enumerate(runs, 1):
            _report_scan(args.files, f"run {number}", scan)
        _report_scan(args.files, "median", {key: statistics.median(r[key] for r in runs) for key in runs[0]})
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
