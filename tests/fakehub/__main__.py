"""``python -m tests.fakehub --port 8765 [--seed-demo]``: run the fake hubs until Ctrl-C.

HF on --port, CivitAI on --port+1, the CDN on --port+2 (or all random with --port 0). Drive it
through the /_fake/ admin routes (see tests/fakehub/admin.py).
"""

from __future__ import annotations

import argparse
import threading

from .server import FakeHub


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakehub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="HF port; CivitAI is port+1, the CDN port+2")
    parser.add_argument("--seed-demo", action="store_true", help="fill a small demo catalog")
    args = parser.parse_args(argv)
    hub = FakeHub(args.host, args.port)
    hub.start()
    if args.seed_demo:
        hub.seed_demo = True
        hub.reset()
    print(f"HF_ENDPOINT={hub.hf_url}", flush=True)
    print(f"CIVITAI_ENDPOINT={hub.civitai_url}", flush=True)
    print(f"CDN={hub.cdn_url}", flush=True)
    # The hubs redirect file downloads to this CDN, as the real ones do to their storage: name it as allowed.
    print(f"HUBLOADER_ALLOWED_HOSTS={hub.cdn_url}", flush=True)
    print(f"admin: {hub.hf_url}/_fake/  (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
