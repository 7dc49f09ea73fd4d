"""One fleet worker for tests/test_fleet.py and benchmarks/bench_fleet.py, run as its own process.

``python -m tests.fleet_worker LOCKFILE MODELS_DIR [SHARED_CACHE_URL]`` resolves the lockfile into
MODELS_DIR (through the shared cache when a URL is given), prints one JSON line per model
(name, status, sha256) and exits 0 only when every model is present and verified.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from hubloader.core.folders import standalone_folders
    from hubloader.workflows import Resolver, Status
    from hubloader.workflows.lockfile import resolve_lockfile

    lockfile, models = argv[0], Path(argv[1])
    cache = argv[2] if len(argv) > 2 and argv[2] else None
    resolver = Resolver(standalone_folders(models), search=False, shared_cache=cache)
    report = resolve_lockfile(lockfile, resolver=resolver)
    ok = True
    for item in report.items:
        print(json.dumps({"name": item.reference.name, "status": str(item.status), "sha256": item.sha256}), flush=True)
        ok = ok and item.status in (Status.FETCHED, Status.FOUND)
        if item.status not in (Status.FETCHED, Status.FOUND):
            print(f"{item.reference.name}: {item.reason}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
