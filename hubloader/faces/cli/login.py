"""``hubloader login|logout|whoami``: the HuggingFace and CivitAI tokens, checked with the service itself.

``login`` asks the service whose token it is (HuggingFace ``/api/whoami-v2``, CivitAI ``/api/v1/me``) before
saving it, as ``hf auth login`` does: a refused token is not saved (exit 4). ``whoami`` (alias ``status``)
says, per service, where the token in effect comes from and whose it is. ``logout`` forgets a saved token.
"""

from __future__ import annotations

import argparse
import os
import sys

from hubloader.core.errors import AuthRequired, NetworkError
from hubloader.core.settings import Secret
from hubloader.faces.cli.options import Commands, add_command
from hubloader.faces.cli.output import EXIT_AUTH, EXIT_OK, Output, UsageError, one_line

EXAMPLES = (
    "hubloader login hf",
    "hubloader login civitai",
    'printf %s "$CIVITAI_API_TOKEN" | hubloader login civitai',
)

#: service → (settings key, its name, the environment variables that override the saved token)
_LOGIN = {
    "hf": ("hf_token", "HuggingFace", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")),
    "civitai": ("civitai_token", "CivitAI", ("CIVITAI_API_TOKEN", "CIVITAI_API_KEY")),
}


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """Add ``login``, ``logout`` and ``whoami`` (alias ``status``) to the command line."""
    login = add_command(
        commands, "login", run, "check a HuggingFace or CivitAI token with the service, then store it", EXAMPLES, common
    )
    login.add_argument("service", choices=sorted(_LOGIN), help="the service the token is for")
    logout = add_command(
        commands,
        "logout",
        run_logout,
        "forget a stored HuggingFace or CivitAI token",
        ("hubloader logout civitai", "hubloader logout hf"),
        common,
    )
    logout.add_argument("service", choices=sorted(_LOGIN), help="the service whose saved token to forget")
    whoami = add_command(
        commands,
        "whoami",
        run_whoami,
        "whose tokens are in effect, and where each comes from (alias: status)",
        ("hubloader whoami", "hubloader status --json"),
        common,
        aliases=("status",),
    )
    whoami.add_argument(
        "service", nargs="?", choices=sorted(_LOGIN), default=None, help="only this service (default: both)"
    )


def check_token(service: str, token: Secret | None) -> str:
    """The user name the service says ``token`` belongs to; AuthRequired when refused, NetworkError if unreachable."""
    if service == "hf":
        from hubloader.sources.huggingface import HuggingFaceHubService

        return HuggingFaceHubService(token=token).whoami()
    from hubloader.sources.civitai import CivitAIService

    return CivitAIService(api_key=token).whoami()


def run(args: argparse.Namespace, out: Output) -> int:
    """Read a token (without echo on a terminal, else from stdin), check it with the service, store it (0600)."""
    from hubloader.core.settings import save_settings

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
    try:
        user = check_token(args.service, Secret(token))
    except AuthRequired:
        raise AuthRequired(
            f"{label} refused this token; it was not saved.",
            hint="Copy it again from your account's token page (HuggingFace: read access is enough).",
        ) from None
    except NetworkError as exc:  # offline set-up: keep the token, say it is unchecked
        user = ""
        out.warn(f"the token could not be checked ({one_line(exc)}); saved unchecked.")
    path = save_settings({key: Secret(token)})
    whose = f" of {user}" if user else ""
    out.line(f"Logged in to {label} as {user}." if user else f"Saved the {label} token.")
    out.line(f"Saved the {label} token{whose} to {path} (readable only by you).")
    shadowing = [name for name in env_names if os.environ.get(name)]
    if shadowing:
        out.warn(f"{shadowing[0]} is set in the environment and is used instead of the saved token.")
    if out.json:
        out.record({"service": args.service, "user": user or None, "saved_to": str(path)})
    return EXIT_OK


def run_logout(args: argparse.Namespace, out: Output) -> int:
    """Remove the saved token of a service (a token in the environment stays in effect: say so)."""
    from hubloader.core.settings import load_settings, save_settings

    key, label, env_names = _LOGIN[args.service]
    had = bool(load_settings().get(key))
    if had:
        save_settings({key: None})
    out.line(f"Removed the saved {label} token." if had else f"No {label} token was saved.")
    shadowing = [name for name in env_names if os.environ.get(name)]
    if shadowing:
        out.warn(f"{shadowing[0]} is still set in the environment; unset it to log out completely.")
    if out.json:
        out.record({"service": args.service, "removed": had})
    return EXIT_OK


def run_whoami(args: argparse.Namespace, out: Output) -> int:
    """Per service: the token in effect (environment, settings file, huggingface_hub login), whose it is."""
    services = [args.service] if args.service else sorted(_LOGIN, reverse=True)  # hf first
    code = EXIT_OK
    for service in services:
        _, label, _ = _LOGIN[service]
        origin, token = _token_in_effect(service)
        user, problem = "", ""
        if token is not None:
            try:
                user = check_token(service, token)
            except (AuthRequired, NetworkError) as exc:
                problem = one_line(exc)
                code = EXIT_AUTH if isinstance(exc, AuthRequired) else code
        if out.json:
            out.record(
                {"service": service, "token_from": origin or None, "user": user or None, "error": problem or None}
            )
        elif out.quiet:
            out.result(user or "-")
        elif token is None:
            out.line(f"{label}: not logged in (run `hubloader login {service}`).")
        elif problem:
            out.line(f"{label}: the token from {origin} does not work: {problem}")
        else:
            out.line(f"{label}: logged in as {user} (token from {origin}).")
    return code


def _token_in_effect(service: str) -> tuple[str, Secret | None]:
    """Where the token a request would send comes from, and the token (the settings' own order)."""
    from hubloader.core.settings import civitai_token, hf_token, load_settings, settings_path

    key, _, env_names = _LOGIN[service]
    token = hf_token() if service == "hf" else civitai_token()
    if token is None:
        return "", None
    origin = next((name for name in env_names if os.environ.get(name)), "")
    if not origin:
        origin = str(settings_path()) if load_settings().get(key) else "huggingface_hub's login (hf auth login)"
    return origin, token
