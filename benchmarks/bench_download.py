"""Download engine vs curl, aria2c and huggingface_hub against a loopback origin in its own process.

    .venv/bin/python -m benchmarks.bench_download [--origin nginx|fakehub] [--size-mib 2048] \
        [--rss-size-mib 4096] [--runs 5] [--only ABCD] [--pin] [--no-hf]

Origins: ``nginx`` (default when installed; started here with a generated config, one worker, sendfile,
files on tmpfs) or ``fakehub`` (``python -m tests.fakehub``, a single Python process: on a 2-core machine
it takes a core and caps what any client can reach). ``--pin``: every client under ``taskset -c 0``, the
origin under ``taskset -c 1`` (a client on one core beside a remote server). Scenarios (medians of
``--runs``, tools interleaved run by run so load changes hit all of them):
  A. no bandwidth cap: ours (SHA256 verified) vs ours without hashing vs ``curl`` single stream vs
     ``curl | tee file | openssl dgst -sha256`` (the best shell pipeline that also verifies) vs
     ``aria2c -x16 -s16`` vs ``hf_hub_download``; ``sha256sum`` of curl's file for what hashing costs alone;
  E. hash-while-downloading overhead, from A's ours with and without hashing;
  B. 50 MB/s per connection, 400 MB/s total: the same tools except curl (nginx enforces only the
     per-connection cap: the total is reported against, not enforced);
  C. resume: kill -9 of a ``hubloader get URL`` at ~50%, the same command again; bytes the origin sent
     beyond one copy (nginx's access log ``$body_bytes_sent``, or the fake's counters), beside a run
     without the kill (what splitting ranges over-reads on its own);
  D. peak RSS of a process downloading ``--rss-size-mib``.
Every tool writes to a file in the same temporary folder; library calls are timed inside their process
(imports excluded), command-line tools as whole processes. Needs ``curl`` and ``aria2c`` on PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
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
PER_CONNECTION = 50 * MB  # nginx ``limit_rate`` takes bytes: 50000000, not ``50m`` (= 50 MiB)
TOTAL = 400 * MB
HF_REPO = "bench/model"
DATA_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None  # origin files on tmpfs: no disk reads
#: ``--pin``: every client on CPU 0, the origin on CPU 1 (a client on one core next to a remote server).
PIN: dict[str, list[str]] = {"client": [], "origin": []}


def pin(role: str, cmd: list[str]) -> list[str]:
    """``cmd`` under ``taskset`` when ``--pin`` is on."""
    return [*PIN[role], *cmd]


OURS = """
import json, sys, time
from pathlib import Path
from hubloader.engine.download import download_file
url, dest, sha, hashing, service = sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None, sys.argv[4] == "1", sys.argv[5]
start = time.perf_counter()
r = download_file(url, dest, expected_sha256=sha, expect="any", hash_while_downloading=hashing, service=service)
print(json.dumps({"seconds": time.perf_counter() - start, "sha256": r.sha256, "resumed_from": r.resumed_from,
                  "rss_kb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])}),
      flush=True)
"""

HF = """
import json, sys, time
from huggingface_hub import hf_hub_download
start = time.perf_counter()
hf_hub_download(sys.argv[2], sys.argv[3], endpoint=sys.argv[1], cache_dir=sys.argv[4], force_download=True)
print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
"""

BASELINE = """
import json
import aiohttp, hubloader.engine.download
print(json.dumps({"rss_kb": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])}))
"""


class FakeOrigin:
    """``python -m tests.fakehub`` in its own process, driven through its /_fake/ admin routes.

    A single Python process: on a small machine it competes with the clients for CPU and, when pacing
    connections, tops out near 100 MB/s, so it measures the fake as much as the engines.
    """

    name = "fakehub"
    total_cap_enforced = True

    def __init__(self, work: Path) -> None:
        self.proc = subprocess.Popen(
            pin("origin", [sys.executable, "-m", "tests.fakehub", "--port", "0"]),
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
        self.hf_endpoint, self.cdn, self.urls = urls["HF_ENDPOINT"], urls["CDN"], {}

    def call(self, route: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.hf_endpoint}/_fake/{route}", data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def serve(self, name: str, size: int) -> str:
        """Serve ``size`` generated bytes as a plain URL and as ``bench/model``'s ``name``; returns the SHA256."""
        seed = f"{HF_REPO}/{name}"  # the seed the fake gives the HF repo's file: the same bytes on both routes
        self.urls[name] = self.call("files", {"path": name, "size": size, "seed": seed})["url"]
        self.call("hf_repos", {"repo_id": HF_REPO, "files": {name: size}})
        with urllib.request.urlopen(f"{self.hf_endpoint}/api/models/{HF_REPO}/tree/main") as response:
            return next(e["lfs"]["oid"] for e in json.loads(response.read()) if e["path"] == name)

    def url(self, name: str) -> str:
        return self.urls[name]

    def configure(self, *, per_connection: int | None = None, total: int | None = None, log: bool = False) -> None:
        self.call("faults", {"bandwidth_per_connection": per_connection, "bandwidth_total": total})

    def sent(self) -> int:
        return self.call("counters")["bytes_total"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class NginxOrigin:
    """nginx (one worker, sendfile) on a loopback port, config generated in ``work``, files on tmpfs.

    Plain files under ``/files/`` on one port (the "CDN"); a second port (the "Hub") speaks just enough of
    the HuggingFace resolve protocol for ``hf_hub_download``: a 302 with ``X-Repo-Commit``,
    ``X-Linked-Etag`` (the SHA256) and ``X-Linked-Size`` to the file's ``/files/`` URL, as the Hub
    redirects to its CDN (huggingface_hub follows same-origin redirects, so the two must differ). The per-connection
    cap is nginx's ``limit_rate``; nginx has no aggregate bandwidth limit, so ``total`` is not enforced.
    Settings change by rewriting the config and a graceful reload (SIGHUP).
    """

    name = "nginx"
    total_cap_enforced = False

    def __init__(self, work: Path) -> None:
        self.dir = work / "nginx"
        self.data = Path(tempfile.mkdtemp(prefix="bench-download-origin-", dir=DATA_DIR))
        for folder in (self.dir, self.data):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o755)  # nginx workers run as an unprivileged user when started as root
        self.port, self.hub_port = free_port(), free_port()
        self.hf_endpoint = f"http://127.0.0.1:{self.hub_port}"
        self.files: dict[str, tuple[int, str]] = {}
        self.generation = 0
        self.log = self.dir / "access.log"
        self._write_config(per_connection=None, log=False)
        self.proc = subprocess.Popen(
            pin("origin", ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]),
            stderr=subprocess.PIPE,
            text=True,
        )
        self._wait_for_generation()

    def serve(self, name: str, size: int) -> str:
        """Write ``size`` random bytes to tmpfs once and serve them; returns their SHA256."""
        if name not in self.files:
            digest = hashlib.sha256()
            with open(self.data / name, "wb") as fh:
                for offset in range(0, size, 16 * MiB):
                    chunk = os.urandom(min(16 * MiB, size - offset))
                    digest.update(chunk)
                    fh.write(chunk)
            (self.data / name).chmod(0o644)
            self.files[name] = (size, digest.hexdigest())
            self.configure()
        return self.files[name][1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/files/{name}"

    def configure(self, *, per_connection: int | None = None, total: int | None = None, log: bool = False) -> None:
        self._write_config(per_connection=per_connection, log=log)
        self.proc.send_signal(signal.SIGHUP)
        self._wait_for_generation()

    def sent(self) -> int:
        """Body bytes nginx logged (only while ``configure(log=True)``; a request is logged when it ends)."""
        if not self.log.exists():
            return 0
        return sum(int(line.split()[-1]) for line in self.log.read_text().splitlines() if line.strip())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        subprocess.run(["rm", "-rf", str(self.data)], check=True)

    def _write_config(self, *, per_connection: int | None, log: bool) -> None:
        self.generation += 1
        files = self.url("")
        hf_routes = "".join(
            f"""
        location = /{HF_REPO}/resolve/main/{name} {{
            add_header X-Repo-Commit {"b" * 40};
            add_header X-Linked-Etag '"{sha}"';
            add_header X-Linked-Size {size};
            return 302 {files}{name};
        }}"""
            for name, (size, sha) in self.files.items()
        )
        access = f"access_log {self.log} bytes;" if log else "access_log off;"
        (self.dir / "nginx.conf").write_text(
            f"""daemon off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format bytes '$request_method $uri $status $bytes_sent $body_bytes_sent';
    {access}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{self.port};
        location = /_generation {{ return 200 "{self.generation}"; }}
        location /files/ {{
            alias {self.data}/;
            {f"limit_rate {per_connection};" if per_connection else ""}
        }}
    }}
    server {{
        listen 127.0.0.1:{self.hub_port};{hf_routes}
    }}
}}
"""
        )

    def _wait_for_generation(self) -> None:
        """Until the (re)loaded workers answer with the config just written."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_generation", timeout=1) as response:
                    if response.read().decode() == str(self.generation):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not load its configuration in 10 s")


Origin = FakeOrigin | NginxOrigin


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_json(code: str, *args: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        pin("client", [sys.executable, "-c", code, *args]),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(pin("client", cmd), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


def hf(origin: Origin, work: Path, filename: str) -> float:
    cache = work / "hf-cache"
    clean(cache)
    env = {
        **os.environ,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    seconds = run_json(HF, origin.hf_endpoint, HF_REPO, filename, str(cache), env=env)["seconds"]
    clean(cache)
    return seconds


def curl_then_sha256sum(url: str, target: Path) -> tuple[float, float]:
    """curl single stream, then ``sha256sum`` of the file it wrote (page cache hot): what hashing costs alone."""
    clean(target)
    seconds = timed(["curl", "-s", "-o", str(target), url])
    hashing = timed(["sha256sum", str(target)])
    clean(target)
    return seconds, hashing


def curl_pipeline(url: str, target: Path) -> float:
    """The best shell pipeline that also verifies: ``curl | tee file | openssl dgst -sha256`` (one pass)."""
    clean(target)
    seconds = timed(["sh", "-c", f"curl -s '{url}' | tee '{target}' | openssl dgst -sha256"])
    clean(target)
    return seconds


def aria2c(url: str, target: Path) -> float:
    clean(target)
    cmd = ["aria2c", "-x16", "-s16", "-k1M", "-q", "--allow-overwrite=true", "--file-allocation=none"]
    seconds = timed([*cmd, "-d", str(target.parent), "-o", target.name, url])
    clean(target, Path(str(target) + ".aria2"))
    return seconds


def rate(size: int, seconds: float) -> float:
    return size / seconds / MB


def scenario_throughput(
    origin: Origin, work: Path, size: int, runs: int, *, capped: bool, with_hf: bool = True
) -> dict[str, float]:
    """Median MB/s per tool over ``runs`` interleaved rounds. Uncapped also times curl, ``sha256sum`` and the
    ``curl | tee | openssl`` pipeline."""
    name = f"bench-{size}.bin"
    sha = origin.serve(name, size)
    url = origin.url(name)
    origin.configure(per_connection=PER_CONNECTION if capped else None, total=TOTAL if capped else None)
    ours(url, work / "warm.bin", sha)  # warms the page cache (and the fake's pattern cache)
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        round_ = {
            "ours": ours(url, work / "ours.bin", sha)["seconds"],
            "ours_unhashed": ours(url, work / "ours.bin", hashing=False)["seconds"],
            "aria2c": aria2c(url, work / "aria2c.bin"),
        }
        if with_hf:
            round_["hf_hub_download"] = hf(origin, work, name)
        if not capped:
            round_["curl"], round_["sha256sum"] = curl_then_sha256sum(url, work / "curl.bin")
            round_["curl_tee_openssl"] = curl_pipeline(url, work / "pipe.bin")
        for tool, seconds in round_.items():
            samples.setdefault(tool, []).append(seconds)
    origin.configure()
    return {tool: rate(size, statistics.median(secs)) for tool, secs in samples.items()}


def hubloader_get(url: str, folder: Path, home: Path) -> list[str]:
    """``hubloader get URL`` as a user runs it: through the gate (the origin named an allowed host)."""
    origin = "/".join(url.split("/")[:3])
    cmd = [sys.executable, "-m", "hubloader", "get", url, "--to", str(folder), "--type", "checkpoint"]
    return pin(
        "client", ["env", f"HUBLOADER_HOME={home}", f"HUBLOADER_ALLOWED_HOSTS={origin}", *cmd, "-q", "--allow-pickle"]
    )


def scenario_resume(origin: Origin, work: Path, size: int, runs: int) -> dict[str, float]:
    """kill -9 of ``hubloader get`` near 50% (connections paced so the kill lands mid-file), then the same
    command again; what the origin sent beyond one copy of the file, median of ``runs``. A run without the
    kill gives the part of that which is not the kill's: splitting a running range over-reads what is in flight."""
    name = f"bench-{size}.bin"
    sha = origin.serve(name, size)
    url, folder, home = origin.url(name), work / "resume", work / "home"
    dest = folder / name
    origin.configure(per_connection=PER_CONNECTION, log=True)
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        clean(folder, home)
        before = origin.sent()
        subprocess.run(hubloader_get(url, folder, home), check=True, cwd=REPO)
        time.sleep(0.5)
        samples.setdefault("unkilled", []).append((origin.sent() - before - size) / size)
        clean(folder, home)
        before = origin.sent()
        proc = subprocess.Popen(hubloader_get(url, folder, home), cwd=REPO)
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
        time.sleep(0.5)  # nginx logs an aborted request once it sees the closed socket
        subprocess.run(hubloader_get(url, folder, home), check=True, cwd=REPO)
        time.sleep(0.5)
        digest = hashlib.sha256()
        with open(dest, "rb") as fh:
            for block in iter(lambda: fh.read(16 * MiB), b""):
                digest.update(block)
        if digest.hexdigest() != sha:
            raise RuntimeError("the resumed file does not match")
        samples.setdefault("killed_at", []).append(done / size)
        samples.setdefault("resent", []).append((origin.sent() - before - size) / size)
    origin.configure()
    clean(folder, home)
    return {key: statistics.median(values) for key, values in samples.items()}


def scenario_rss(origin: Origin, work: Path, size: int) -> dict[str, float]:
    """Peak RSS as the child's own ``VmHWM`` (Linux): ``ru_maxrss`` survives exec, so a child forked by this
    (larger) process would report at least the parent's size."""
    name = f"bench-{size}.bin"
    sha = origin.serve(name, size)
    peak = ours(origin.url(name), work / "rss.bin", sha)["rss_kb"] / 1024
    baseline = run_json(BASELINE)["rss_kb"] / 1024
    return {"peak_mib": peak, "after_imports_mib": baseline}


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return f"{cmd[0]} not installed"
    return (out.stdout or out.stderr).strip().splitlines()[0]


def machine(origin: str) -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()[1].split()[1]
    tools = [first_line(["curl", "--version"]).split(" (")[0], first_line(["aria2c", "--version"])]
    if origin == "nginx":
        tools.append(first_line(["nginx", "-v"]))
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, nproc {os.cpu_count()}, RAM {free}, "
        f"Python {platform.python_version()}, {', '.join(tools)}; origin {origin}"
        + (f" serving from {DATA_DIR} (tmpfs)" if origin == "nginx" else "")
    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--rss-size-mib", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="ABCD", help="scenario letters to run (E is part of A)")
    parser.add_argument("--pin", action="store_true", help="clients on CPU 0, the origin on CPU 1 (taskset)")
    parser.add_argument("--no-hf", action="store_true", help="leave hf_hub_download out (one slow stream)")
    parser.add_argument(
        "--origin",
        choices=["nginx", "fakehub"],
        default="nginx" if shutil.which("nginx") else "fakehub",
        help="the server every tool downloads from (default: nginx when installed)",
    )
    args = parser.parse_args()
    size, rss_size = args.size_mib * MiB, args.rss_size_mib * MiB
    if args.pin:
        PIN.update(client=["taskset", "-c", "0"], origin=["taskset", "-c", "1"])
    print(machine(args.origin) + ("; pinned: clients on CPU 0, origin on CPU 1" if args.pin else ""), flush=True)
    print(f"load average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        work = Path(tmp)
        origin: Origin = NginxOrigin(work) if args.origin == "nginx" else FakeOrigin(work)
        try:
            if "A" in args.only:
                r = scenario_throughput(origin, work, size, args.runs, capped=False, with_hf=not args.no_hf)
                print(
                    f"A no cap, {args.size_mib} MiB: "
                    + ", ".join(f"{k} {v:.0f} MB/s" for k, v in r.items())
                    + f" | ours/curl {r['ours'] / r['curl']:.2f}x, ours_unhashed/curl {r['ours_unhashed'] / r['curl']:.2f}x,"
                    f" ours/(curl|tee|openssl) {r['ours'] / r['curl_tee_openssl']:.2f}x,"
                    f" ours/aria2c {r['ours'] / r['aria2c']:.2f}x"
                    + (f", ours/hf {r['ours'] / r['hf_hub_download']:.2f}x" if "hf_hub_download" in r else ""),
                    flush=True,
                )
                overhead = r["ours_unhashed"] / r["ours"] - 1
                print(
                    f"E hashing overhead (from A): {r['ours']:.0f} vs {r['ours_unhashed']:.0f} MB/s = {overhead:+.1%}"
                )
            if "B" in args.only:
                r = scenario_throughput(origin, work, size, args.runs, capped=True, with_hf=not args.no_hf)
                enforced = "enforced" if origin.total_cap_enforced else "NOT enforced by this origin"
                print(
                    f"B caps {PER_CONNECTION // MB} MB/s per connection, {TOTAL // MB} MB/s total ({enforced}), "
                    f"{args.size_mib} MiB: "
                    + ", ".join(f"{k} {v:.0f} MB/s" for k, v in r.items())
                    + f" | ours/(0.9 x total) {r['ours'] / (0.9 * TOTAL / MB):.2f}x,"
                    f" aria2c/(0.9 x total) {r['aria2c'] / (0.9 * TOTAL / MB):.2f}x,"
                    f" ours/aria2c {r['ours'] / r['aria2c']:.2f}x"
                    + (f", ours/hf {r['ours'] / r['hf_hub_download']:.2f}x" if "hf_hub_download" in r else ""),
                    flush=True,
                )
            if "C" in args.only:
                r = scenario_resume(origin, work, size, args.runs)
                print(
                    f"C resume {args.size_mib} MiB (hubloader get, kill -9, again; medians): killed at "
                    f"{r['killed_at']:.0%}, the origin sent {r['resent']:.2%} of the file more than once "
                    f"(a run without the kill: {r['unkilled']:.2%})",
                    flush=True,
                )
            if "D" in args.only:
                r = scenario_rss(origin, work, rss_size)
                print(
                    f"D peak RSS downloading {args.rss_size_mib} MiB: {r['peak_mib']:.0f} MiB "
                    f"(process after imports: {r['after_imports_mib']:.0f} MiB)",
                    flush=True,
                )
        finally:
            origin.stop()
    print(f"load average at end: {load()}", flush=True)


if __name__ == "__main__":
    main()
