"""Download engine vs curl, aria2c and huggingface_hub against the loopback fake hub (a separate process).

    .venv/bin/python -m benchmarks.bench_download [--size-mib 2048] [--rss-size-mib 4096] [--runs 5]

Scenarios (medians of ``--runs``, tools interleaved run by run so load changes hit all of them):
  A. no bandwidth cap: ours (SHA256 verified) vs ``curl`` single stream vs ``hf_hub_download``;
  B. caps 50 MB/s per connection, 400 MB/s total: ours vs ``aria2c -x16 -s16`` vs ``hf_hub_download``;
  C. resume: kill -9 of a downloading process at ~50%, a new process resumes; bytes sent twice;
  D. peak RSS of a process downloading ``--rss-size-mib``;
  E. hash-while-downloading overhead: the same download with and without hashing.
Every tool writes to a file in the same temporary folder; library calls are timed inside their process
(imports excluded), command-line tools as whole processes. Needs ``curl`` and ``aria2c`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MB = 1_000_000
MiB = 1024 * 1024

OURS = """
import json, resource, sys, time
from pathlib import Path
from hubloader.download import download_file
url, dest, sha, hashing, service = sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None, sys.argv[4] == "1", sys.argv[5]
start = time.perf_counter()
r = download_file(url, dest, expected_sha256=sha, expect="any", hash_while_downloading=hashing, service=service)
print(json.dumps({"seconds": time.perf_counter() - start, "sha256": r.sha256, "resumed_from": r.resumed_from,
                  "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)
"""

HF = """
import json, sys, time
from huggingface_hub import hf_hub_download
start = time.perf_counter()
hf_hub_download(sys.argv[2], sys.argv[3], endpoint=sys.argv[1], cache_dir=sys.argv[4], force_download=True)
print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
"""

BASELINE = """
import json, resource
import aiohttp, hubloader.download
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


class Fake:
    """``python -m tests.fakehub`` in its own process, driven through its /_fake/ admin routes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakehub", "--port", "0"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        urls = {}
        for line in self.proc.stdout:
            key, _, value = line.strip().partition("=")
            urls[key] = value
            if key == "CDN":
                break
        self.hf, self.cdn = urls["HF_ENDPOINT"], urls["CDN"]

    def call(self, route: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.hf}/_fake/{route}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def faults(self, **switches: object) -> None:
        self.call("faults", switches)

    def sent(self) -> int:
        return self.call("counters")["bytes_total"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run_json(code: str, *args: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def clean(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            subprocess.run(["rm", "-rf", str(path)], check=True)
        else:
            for extra in ("", ".part", ".part.json"):
                Path(str(path) + extra).unlink(missing_ok=True)


def ours(url: str, dest: Path, sha: str = "", *, hashing: bool = True, service: str = "url") -> dict:
    clean(dest)
    result = run_json(OURS, url, str(dest), sha, "1" if hashing else "0", service)
    clean(dest)
    return result


def hf(fake: Fake, work: Path, repo: str, filename: str) -> float:
    cache = work / "hf-cache"
    clean(cache)
    env = {
        **os.environ,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    seconds = run_json(HF, fake.hf, repo, filename, str(cache), env=env)["seconds"]
    clean(cache)
    return seconds


def rate(size: int, seconds: float) -> float:
    return size / seconds / MB


def median_rates(size: int, samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: rate(size, statistics.median(secs)) for name, secs in samples.items()}


def scenario_throughput(fake: Fake, work: Path, size: int, runs: int, *, capped: bool) -> dict[str, float]:
    url = fake.call("files", {"path": "bench.bin", "size": size})["url"]
    fake.call("hf_repos", {"repo_id": "bench/model", "files": {"bench.bin": size}})
    fake.faults(
        bandwidth_per_connection=50 * MB if capped else None,
        bandwidth_total=400 * MB if capped else None,
    )
    sha = ours(url, work / "warm.bin")["sha256"]  # also warms the server's pattern cache
    tool = "aria2c" if capped else "curl"
    samples: dict[str, list[float]] = {"ours": [], tool: [], "hf_hub_download": []}
    for _ in range(runs):
        samples["ours"].append(ours(url, work / "ours.bin", sha)["seconds"])
        target = work / f"{tool}.bin"
        clean(target)
        if capped:
            cmd = ["aria2c", "-x16", "-s16", "-k1M", "-q", "--allow-overwrite=true", "-d", str(work), "-o", target.name]
            samples[tool].append(timed([*cmd, "--file-allocation=none", url]))
        else:
            samples[tool].append(timed(["curl", "-s", "-o", str(target), url]))
        clean(target)
        samples["hf_hub_download"].append(hf(fake, work, "bench/model", "bench.bin"))
    fake.faults(bandwidth_per_connection=None, bandwidth_total=None)
    return median_rates(size, samples)


def scenario_resume(fake: Fake, work: Path, size: int) -> dict[str, float]:
    url = fake.call("files", {"path": "resume.bin", "size": size})["url"]
    dest = work / "resume.bin"
    clean(dest)
    fake.faults(bandwidth_total=200 * MB)  # slow enough to stop it near the middle
    before = fake.sent()
    proc = subprocess.Popen([sys.executable, "-c", OURS, url, str(dest), "", "1", "url"], cwd=REPO)
    record = Path(str(dest) + ".part.json")
    done = 0
    while done < size // 2:
        time.sleep(0.02)
        try:
            done = sum(e - s for s, e in json.loads(record.read_text())["done"])
        except (OSError, ValueError, KeyError):
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    fake.faults(bandwidth_total=None)
    result = run_json(OURS, url, str(dest), "", "1", "url")
    resent = fake.sent() - before - size
    clean(dest)
    return {"killed_at": done / size, "resumed_from": result["resumed_from"] / size, "resent": resent / size}


def scenario_rss(fake: Fake, work: Path, size: int) -> dict[str, float]:
    url = fake.call("files", {"path": "rss.bin", "size": size})["url"]
    peak = ours(url, work / "rss.bin")["rss_kb"] / 1024
    baseline = run_json(BASELINE)["rss_kb"] / 1024
    return {"peak_mib": peak, "after_imports_mib": baseline}


def scenario_hash_overhead(fake: Fake, work: Path, size: int, runs: int) -> dict[str, float]:
    url = fake.call("files", {"path": "hash.bin", "size": size})["url"]
    with_hash, without = [], []
    for _ in range(runs):
        with_hash.append(ours(url, work / "h.bin")["seconds"])
        without.append(ours(url, work / "n.bin", hashing=False)["seconds"])
    a, b = statistics.median(with_hash), statistics.median(without)
    return {"hashed_mbps": rate(size, a), "unhashed_mbps": rate(size, b), "overhead": a / b - 1}


def machine() -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()[1].split()[1]
    load = os.getloadavg()[0]
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, nproc {os.cpu_count()}, RAM {free}, "
        f"Python {platform.python_version()}, load average at start {load:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rss-size-mib", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="ABCDE", help="scenario letters to run")
    args = parser.parse_args()
    size, rss_size = args.size_mib * MiB, args.rss_size_mib * MiB
    print(machine(), flush=True)
    fake = Fake()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
            work = Path(tmp)
            if "A" in args.only:
                r = scenario_throughput(fake, work, size, args.runs, capped=False)
                print(
                    f"A no cap, {args.size_mib} MiB: "
                    + ", ".join(f"{k} {v:.0f} MB/s" for k, v in r.items())
                    + f" | ours/curl {r['ours'] / r['curl']:.2f}x, ours/hf {r['ours'] / r['hf_hub_download']:.2f}x",
                    flush=True,
                )
            if "B" in args.only:
                r = scenario_throughput(fake, work, size, args.runs, capped=True)
                print(
                    f"B caps 50/400 MB/s, {args.size_mib} MiB: "
                    + ", ".join(f"{k} {v:.0f} MB/s" for k, v in r.items())
                    + f" | ours/cap {r['ours'] / 400:.2f}x, ours/aria2c {r['ours'] / r['aria2c']:.2f}x,"
                    f" ours/hf {r['ours'] / r['hf_hub_download']:.2f}x",
                    flush=True,
                )
            if "C" in args.only:
                r = scenario_resume(fake, work, size)
                print(
                    f"C resume {args.size_mib} MiB: killed at {r['killed_at']:.0%}, resumed from "
                    f"{r['resumed_from']:.1%}, re-transferred {r['resent']:.2%} of the file",
                    flush=True,
                )
            if "D" in args.only:
                r = scenario_rss(fake, work, rss_size)
                print(
                    f"D peak RSS downloading {args.rss_size_mib} MiB: {r['peak_mib']:.0f} MiB "
                    f"(process after imports: {r['after_imports_mib']:.0f} MiB)",
                    flush=True,
                )
            if "E" in args.only:
                r = scenario_hash_overhead(fake, work, size, args.runs)
                print(
                    f"E hashing overhead {args.size_mib} MiB: {r['hashed_mbps']:.0f} vs {r['unhashed_mbps']:.0f} MB/s"
                    f" = {r['overhead']:+.1%}",
                    flush=True,
                )
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
