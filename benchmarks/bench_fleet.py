"""Fleet benchmark: N worker processes provision the same lockfile, with and without a shared cache.

    .venv/bin/python -m benchmarks.bench_fleet [--workers 20] [--mib 512] [--link-mib-s 100] [--s3]

The loopback fake hub stands in for the internet: its total bandwidth is capped at --link-mib-s (the
site's link), and it counts the bytes it sends (origin bytes). Each worker is a separate process with
its own models folder (tests/fleet_worker.py). The shared cache is a folder on the local disk standing
in for NFS (or, with --s3, a bucket on a loopback moto server).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hubloader.workflows.lockfile import LockedModel, Lockfile
from tests.fakehub import FakeHub

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]


def run_workers(lockfile: Path, work: Path, n: int, cache: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.fleet_worker", str(lockfile), str(work / f"w{i}"), cache],
            cwd=REPO,
            env=dict(env, HUBLOADER_HOME=str(work / f"home{i}")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    failed = [p.communicate()[1] for p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"{len(failed)} worker(s) failed: {failed[0][-500:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--mib", type=int, default=512, help="size of the model set each worker needs")
    parser.add_argument("--link-mib-s", type=int, default=100, help="the origin's total bandwidth (MiB/s)")
    parser.add_argument("--s3", action="store_true", help="shared cache on a loopback moto S3 server")
    args = parser.parse_args()
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # workers closing spare ranged connections

    sizes = {"checkpoints/big.safetensors": args.mib - 64, "loras/a.safetensors": 32, "vae/v.safetensors": 32}
    with FakeHub() as hub, tempfile.TemporaryDirectory() as tmp:
        os.environ["HUBLOADER_ALLOWED_HOSTS"] = hub.cdn_url  # the lockfile's URLs are on the fake's CDN (the gate)
        tmp_path = Path(tmp)
        models = []
        for name, mib in sizes.items():
            kind, file_name = name.split("/")
            url = hub.add_file(f"bench/{file_name}", size=mib * MiB)
            models.append(LockedModel(kind, file_name, mib * MiB, hub.blob(url).sha256, url=url))
        lockfile = Lockfile(models=models).save(tmp_path / "site.lock.json")
        total = sum(sizes.values()) * MiB
        cache, moto = str(tmp_path / "share"), None
        (tmp_path / "share").mkdir()
        if args.s3:
            moto, cache = _start_moto()
        print(f"workers={args.workers} model set={total / MiB:.0f} MiB link={args.link_mib_s} MiB/s")
        try:
            for label, url in (("without shared cache", ""), ("with shared cache", cache)):
                hub.bytes_sent.clear()
                hub.faults.bandwidth_total = args.link_mib_s * MiB
                work = tmp_path / "work"
                wall = run_workers(lockfile, work, args.workers, url)
                origin = sum(hub.bytes_sent.values())
                print(
                    f"{label:22s} wall {wall:6.1f} s   origin {origin / MiB:8.0f} MiB = {origin / total:5.2f} x one copy"
                )
                shutil.rmtree(work)
        finally:
            if moto is not None:
                moto.terminate()


def _start_moto() -> tuple[subprocess.Popen, str]:
    import socket

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    boto3.client("s3").create_bucket(Bucket="bench-fleet")
    return proc, "s3://bench-fleet/site"


if __name__ == "__main__":
    main()
