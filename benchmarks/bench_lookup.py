"""Warm, pinned look-ups of a file already in the HF cache: ours against ``hf_hub_download``, in one run.

    .venv/bin/python -m benchmarks.bench_lookup [--calls 2000] [--rounds 5]

Both ask for the same LFS file of a repo on the loopback fake Hub (``tests/fakehub``), pinned to its commit,
after a first call put it in the cache: ``HuggingFaceHubService().download_model(..., revision=SHA)`` and
``huggingface_hub.hf_hub_download(..., revision=SHA)``. Neither may make a request (checked on the fake's log).
Per-call time is the median over ``--rounds`` of ``--calls`` calls each; the ratio is ours / theirs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def per_call_ms(call: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean time of one call, in ms."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="hubloader-bench-lookup-"))
    # huggingface_hub reads these at import: set them before anything imports it.
    os.environ.update(
        HF_HOME=str(scratch / "hf"),
        HF_HUB_CACHE=str(scratch / "hf" / "hub"),
        HUBLOADER_HOME=str(scratch / "home"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    from tests.fakehub import FakeHub

    with FakeHub() as hub:
        os.environ["HF_ENDPOINT"] = hub.hf_url
        os.environ["HUBLOADER_ALLOWED_HOSTS"] = hub.cdn_url
        repo, name = "bench/lookup", "model.safetensors"
        commit = hub.add_hf_repo(repo, {"README.md": b"# bench\n", name: ("generated", 4 << 20)})

        import huggingface_hub
        from huggingface_hub import hf_hub_download

        from hubloader.sources.huggingface import HuggingFaceHubService

        service = HuggingFaceHubService()
        ours = service.download_model(f"{repo}/{name}", revision=commit)
        theirs = Path(hf_hub_download(repo, name, revision=commit, endpoint=hub.hf_url))
        assert ours.resolve() == theirs.resolve(), (ours, theirs)
        hub.requests.clear()

        ours_ms = per_call_ms(
            lambda: service.download_model(f"{repo}/{name}", revision=commit), args.calls, args.rounds
        )
        theirs_ms = per_call_ms(
            lambda: hf_hub_download(repo, name, revision=commit, endpoint=hub.hf_url), args.calls, args.rounds
        )
        fresh_ms = per_call_ms(
            lambda: HuggingFaceHubService().download_model(f"{repo}/{name}", revision=commit), args.calls, args.rounds
        )
        assert not hub.requests, f"a warm pinned look-up made requests: {list(hub.requests)[:3]}"

    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""  # POSIX only
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"huggingface_hub {huggingface_hub.__version__}{load}"
    )
    print(f"calls: {args.rounds} rounds x {args.calls}, requests made: 0")
    print(f"download_model (warm, pinned), same service: {ours_ms:.4f} ms/call")
    print(f"download_model (warm, pinned), new service:  {fresh_ms:.4f} ms/call")
    print(f"hf_hub_download (warm, pinned):              {theirs_ms:.4f} ms/call")
    print(f"ratio ours/hf_hub_download: {ours_ms / theirs_ms:.2f} (new service: {fresh_ms / theirs_ms:.2f})")


if __name__ == "__main__":
    main()
