"""What to do about an error, in the terms of the face the user is in.

The core errors state facts (:mod:`hubloader.core.errors`): a token for CivitAI is needed, the disk under a
folder is full. The action depends on the face: the command line has ``hubloader login civitai``, the ComfyUI
sidebar and the Gradio app (alone or as the A1111 tab) have a Settings panel. :func:`explain` is the one
place that joins the two; advice for one service never mentions the other.
"""

from __future__ import annotations

import errno
from enum import Enum

from hubloader.core.errors import CIVITAI, HUGGINGFACE, AuthRequired, DiskFull, EarlyAccess, PickleNotAllowed


class Face(Enum):
    """Where the user meets an error."""

    CLI = "cli"
    COMFYUI = "comfyui"  # the Model Hub sidebar and the loader nodes
    GRADIO = "gradio"  # the standalone app and the A1111/Forge tab


CLI, COMFYUI, GRADIO = Face.CLI, Face.COMFYUI, Face.GRADIO

_CLI_TOKEN = {
    HUGGINGFACE: "Run `hubloader login hf` (or `hf auth login`), or set HF_TOKEN.",
    CIVITAI: "Run `hubloader login civitai`, or set CIVITAI_API_TOKEN.",
    "": "Run `hubloader login hf` or `hubloader login civitai` for the service that serves it.",
}
_TOKEN_NAME = {HUGGINGFACE: "the HuggingFace token", CIVITAI: "the CivitAI token", "": "the token of its service"}
_SETTINGS = {COMFYUI: "the Model Hub sidebar → Settings", GRADIO: "the Model Hub tab → Settings"}

_DISK_FULL = {
    CLI: "Free some space (e.g. `hubloader cache cleanup`) or download elsewhere (--to, --models-dir).",
    COMFYUI: "Free some space on that disk, or point ComfyUI's model folders elsewhere.",
    GRADIO: "Free some space (Model Hub tab → Library → Downloads cache cleanup) or choose another models folder.",
}
_PICKLE = {CLI: "Pass --allow-pickle if you trust the source."}


def advice(exc: BaseException, face: Face) -> str:
    """The action ``face`` suggests for ``exc``; "" when the error's own words are all there is to say."""
    if isinstance(exc, EarlyAccess):  # a token does not buy early access
        return ""
    if isinstance(exc, AuthRequired):
        return _token_advice(exc.service, face)
    if isinstance(exc, DiskFull):
        return _DISK_FULL[face]
    if isinstance(exc, PickleNotAllowed):
        return _PICKLE.get(face, "")
    host = getattr(exc, "confirmable_host", "")  # the gate's DownloadRefused (faces sit above the gate)
    if host and face is CLI:
        return f"Run again with --allow-host {host} to confirm it."
    return ""


def explain(exc: BaseException, face: Face) -> str:
    """The whole message ``face`` shows: what happened and what is needed (the error), then the advice."""
    extra = advice(exc, face)
    return f"{exc} {extra}" if extra else str(exc)


def _token_advice(service: str, face: Face) -> str:
    """Where ``face`` takes a token for ``service`` ("" when the service is unknown)."""
    if face is CLI:
        return _CLI_TOKEN.get(service, _CLI_TOKEN[""])
    return f"Set {_TOKEN_NAME.get(service, _TOKEN_NAME[''])} in {_SETTINGS[face]}."


_STORAGE_REASONS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "the disk is full",
    errno.ENAMETOOLONG: "the name is too long for this file system",
    errno.ENOTDIR: "a part of the path is not a folder",
}


def storage_fault(exc: OSError) -> str:
    """One line for a fault of the disk or the file system (read-only folder, full disk, name too long): where,
    why, and what to check. Never the traceback."""
    name = str(exc.filename or "")
    where = f" {name[:80]}…{name[-80:]}" if len(name) > 200 else f" {name}" if name else ""
    reason = _STORAGE_REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).rstrip(".")
    text = f"Could not read or write{where}: {reason}. Nothing there was changed; check the folder is writable and has space."
    return " ".join(text.split())
