"""``hubloader login hf|civitai``: store a token in the settings file, read without echo."""

from __future__ import annotations

import argparse
import os
import sys

from hubloader.faces.cli.options import Commands, add_command
from hubloader.faces.cli.output import EXIT_OK, Output, UsageError

EXAMPLES = (
    "hubloader login hf",
    "hubloader login civitai",
    'printf %s "$CIVITAI_API_TOKEN" | hubloader login civitai',
)

_LOGIN = {
    "hf": ("hf_token", "HuggingFace", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")),
    "civitai": ("civitai_token", "CivitAI", ("CIVITAI_API_TOKEN", "CIVITAI_API_KEY")),
}


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``login`` to the command line."""
    login = add_command(
        commands, "login", run, "store a HuggingFace or CivitAI token (read without echo)", EXAMPLES, common
    )
    login.add_argument("service", choices=sorted(_LOGIN), help="the service the token is for")


def run(args: argparse.Namespace, out: Output) -> int:
    """Store a token in the settings file (0600). Read without echo from a terminal, else from stdin."""
    from hubloader.core.settings import Secret, save_settings

    key, label, env_names = _LOGIN[args.service]
    if sys.stdin.isatty():
        import getpass

        text = getpass.getpass(f"{label} token (input hidden): ")
    else:
        text = sys.stdin.readline()
    token = text.strip()
    if not token:
        raise UsageError(
            f"No {label} token was given.",
            hint=f'Paste it when asked, or pipe it in: `printf %s "$TOKEN" | hubloader login {args.service}`.',
        )
    path = save_settings({key: Secret(token)})
    out.line(f"Saved the {label} token to {path} (readable only by you).")
    shadowing = [name for name in env_names if os.environ.get(name)]
    if shadowing:
        out.warn(f"{shadowing[0]} is set in the environment and is used instead of the saved token.")
    if out.json:
        out.record({"service": args.service, "saved_to": str(path)})
    return EXIT_OK
