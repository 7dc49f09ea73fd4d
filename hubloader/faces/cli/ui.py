"""``hubloader ui``: start the Gradio app (the same one the A1111 tab shows)."""

from __future__ import annotations

import argparse
import importlib.util

from hubloader.faces.cli.options import Commands, add_command, add_host_options, host_folders
from hubloader.faces.cli.output import EXIT_OK, MissingDependency, Output

EXAMPLES = (
    "hubloader ui",
    "hubloader ui --comfyui ~/ComfyUI --port 7861",
    "hubloader ui --host 0.0.0.0 --share",
)


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``ui`` to the command line."""
    ui = add_command(commands, "ui", run, "start the web UI (needs pip install 'hubloader[ui]')", EXAMPLES, common)
    ui.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.1)")
    ui.add_argument("--port", type=int, default=7860, help="the port to listen on (7860)")
    ui.add_argument("--share", action="store_true", help="a public Gradio link")
    add_host_options(ui)


def run(args: argparse.Namespace, out: Output) -> int:
    """Start the Gradio app on the host's model folders."""
    if importlib.util.find_spec("gradio") is None:
        raise MissingDependency(
            "The web UI needs gradio, which is not installed.", hint="Install it with: pip install 'hubloader[ui]'"
        )
    from hubloader.faces import app

    app.launch(folders=host_folders(args), host=args.host, port=args.port, share=args.share)
    return EXIT_OK
