"""What ComfyUI pays at start-up for our pack: load a checkout's root ``__init__.py`` as ComfyUI does, in a fresh
process each time, and report the median CPU and wall time and peak memory, for one checkout or two side by side.

    .venv/bin/python -m benchmarks.bench_import [--runs 15] [--vs OTHER_CHECKOUT] [CHECKOUT]

CHECKOUT defaults to this repository. With ``--vs`` the two alternate run by run (A B A B …), so a machine
whose speed drifts affects both alike; the ratio column is A/B of the medians.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD = """
import importlib.util, sys, pathlib, tempfile
root, stub = sys.argv[1], sys.argv[2]
sys.path.insert(0, stub)
import folder_paths
folder_paths.setup(pathlib.Path(tempfile.mkdtemp()))
spec = importlib.util.spec_from_file_location("x_pack", root + "/__init__.py", submodule_search_locations=[root])
module = importlib.util.module_from_spec(spec)
sys.modules["x_pack"] = module
spec.loader.exec_module(module)
assert "HubloaderLoraLoader" in module.NODE_CLASS_MAPPINGS
"""


def one_run(checkout: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MiB) of one fresh process loading ``checkout`` as a ComfyUI custom node."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:
        stub = str(REPO / "tests" / "comfy_stub")
        subprocess.run([sys.executable, "-c", LOAD, str(checkout), stub], cwd=cwd, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", nargs="?", type=Path, default=REPO)
    parser.add_argument("--vs", type=Path, help="a second checkout to compare with, run by run")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    checkouts = [args.checkout] + ([args.vs] if args.vs else [])
    runs: dict[Path, list[tuple[float, float, float]]] = {c: [] for c in checkouts}
    for checkout in checkouts:
        one_run(checkout)  # warm-up: the page cache, .pyc files
    for _ in range(args.runs):
        for checkout in checkouts:
            runs[checkout].append(one_run(checkout))
    medians = {c: [statistics.median(r[i] for r in runs[c]) for i in range(3)] for c in checkouts}
    for checkout in checkouts:
        wall, cpu, peak = medians[checkout]
        print(
            f"{checkout}: wall {wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms (median of {args.runs}); peak {peak:.1f} MiB"
        )
    if args.vs:
        (a, b) = (medians[c] for c in checkouts)
        print(f"A/B: wall {a[0] / b[0]:.2f}, CPU {a[1] / b[1]:.2f}")


if __name__ == "__main__":
    main()
