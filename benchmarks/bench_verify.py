"""``verify`` of a 50-model lockfile: cold (every file hashed) vs warm (the hash cache knows them) vs one changed.

    .venv/bin/python -m benchmarks.bench_verify [--models 50] [--size-mib 16] [--runs 5]

Generates ``--models`` safetensors-named files of ``--size-mib`` in a temporary standalone models folder (LoRAs
and checkpoints), locks them, then times :func:`hubloader.workflows.verify.verify`:
  cold   — the hash cache file removed before each run: every file is read and hashed;
  warm   — the cache from the run before: no file is read (what ComfyUI's pre-run check costs per prompt);
  one    — one file rewritten (new mtime) since the warm cache: only it is hashed again;
and the anchor, ``sha256sum`` over the same files in the same run (what checking them by hand costs).
Medians of ``--runs``; the page cache is warm for every variant (the files were just written), so "cold" is the
hashing cost, not the disk's.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def _files(root: Path, models: int, size: int) -> list[Path]:
    paths = []
    chunk = os.urandom(1 << 20)
    for i in range(models):
        kind = "loras" if i % 5 else "checkpoints"
        path = root / kind / f"model_{i:03d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(i.to_bytes(8, "little"))
            for _ in range(size >> 20):
                fh.write(chunk)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hubloader-bench-verify-") as tmp:
        os.environ["HUBLOADER_HOME"] = str(Path(tmp) / "home")
        from hubloader.core.folders import standalone_folders
        from hubloader.engine.hashing import sha256_file
        from hubloader.library.hashcache import HashCache
        from hubloader.workflows.lockfile import LockedModel, Lockfile
        from hubloader.workflows.verify import verify

        root = Path(tmp) / "models"
        paths = _files(root, args.models, args.size_mib << 20)
        locked = Lockfile(models=[LockedModel(p.parent.name, p.name, p.stat().st_size, sha256_file(p)) for p in paths])
        lockfile = locked.save(Path(tmp) / "wf.lock.json")
        folders = standalone_folders(root)
        cache_file = Path(tmp) / "home" / "hashes.sqlite3"

        def timed() -> tuple[float, int]:
            hashes = HashCache(cache_file)
            started = time.perf_counter()
            report = verify(lockfile, folders, hashes=hashes)
            elapsed = time.perf_counter() - started
            hashes.close()
            assert len(report.models) == args.models
            return elapsed, hashes.hashed

        cold, warm, one, anchor = [], [], [], []
        for run in range(args.runs):
            for suffix in ("", "-wal", "-shm"):
                Path(str(cache_file) + suffix).unlink(missing_ok=True)
            cold.append(timed())
            warm.append(timed())
            victim = paths[run % len(paths)]
            os.utime(victim, ns=(time.time_ns(), time.time_ns()))
            one.append(timed())
            started = time.perf_counter()
            if shutil.which("sha256sum"):
                subprocess.run(["sha256sum", *map(str, paths)], check=True, capture_output=True)
                anchor.append(time.perf_counter() - started)

    def med(values: list[tuple[float, int]]) -> str:
        return f"{statistics.median(v for v, _ in values):.3f} s ({values[-1][1]} files hashed)"

    total = args.models * args.size_mib
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.models} models x {args.size_mib} MiB = {total} MiB, median of {args.runs} runs")
    print(f"cold verify:            {med(cold)}")
    print(f"warm verify:            {med(warm)}")
    print(f"one file changed:       {med(one)}")
    if anchor:
        a = statistics.median(anchor)
        print(f"anchor sha256sum:       {a:.3f} s")
        w = statistics.median(v for v, _ in warm)
        c = statistics.median(v for v, _ in cold)
        print(f"ratios to sha256sum:    cold {c / a:.3f}x, warm {w / a:.4f}x; warm/cold {w / c:.4f}")


if __name__ == "__main__":
    main()
