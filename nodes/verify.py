"""ComfyUI: verify a workflow's models before its prompt runs (off by default).

When the setting is on — ComfyUI's ``Hubloader.VerifyModelsBeforePrompt`` (its settings dialog) or
``"verify_before_prompt": true`` in Hubloader's settings file — every prompt whose workflow carries SHA256s
(``properties.models`` / ``models`` hashes of the workflow ComfyUI sends along as ``extra_pnginfo``) has its
files checked before ComfyUI queues it. A file whose bytes differ from the pinned hash stops the prompt with a
message naming the file and both hashes. Hashes come from :class:`~hubloader.library.hashcache.HashCache`, so
unchanged files cost a ``stat`` each, not a read.

How it stops the prompt: ComfyUI's ``add_on_prompt_handler`` handlers may only rewrite the request (an
exception is logged and ignored), so a refused prompt is replaced by one that fails ComfyUI's own validation
with our message as its detail: the client gets the usual 400 with ``error.details`` holding the message, and a
``hubloader.verify_failed`` websocket event carries the whole report for the page to show. A missing model is
left to ComfyUI's own validation (it names it already); only *changed* bytes stop a prompt here.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The id of the setting in ComfyUI's settings dialog (registered by the page's extension).
COMFY_SETTING = "Hubloader.VerifyModelsBeforePrompt"
#: The same switch in Hubloader's own settings file.
SETTING_KEY = "verify_before_prompt"
EVENT = "hubloader.verify_failed"

_hashes: Any = None


def enabled() -> bool:
    """Whether the check is on: ComfyUI's setting of the default user, else Hubloader's settings file."""
    comfy = _comfy_setting()
    if comfy is not None:
        return comfy
    from hubloader.core.settings import load_settings

    return bool(load_settings().get(SETTING_KEY))


def _comfy_setting() -> bool | None:
    folder_paths = sys.modules.get("folder_paths")
    user_directory = getattr(folder_paths, "get_user_directory", None)
    if user_directory is None:
        return None
    path = Path(user_directory()) / "default" / "comfy.settings.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(COMFY_SETTING)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def check_prompt(
    json_data: dict[str, Any], send: Callable[[str, dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """The on-prompt handler: ``json_data`` unchanged, or refused when a pinned model's bytes changed."""
    if not enabled():
        return json_data
    extra = (json_data.get("extra_data") or {}).get("extra_pnginfo") or {}
    workflow = extra.get("workflow") if isinstance(extra, dict) else None
    if not isinstance(workflow, dict):
        return json_data
    from hubloader.core.folders import active_folders
    from hubloader.workflows.verify import CHANGED, verify

    report = verify(workflow, active_folders(), hashes=_cache())
    changed = [m for m in report.models if m.status == CHANGED]
    if not changed:
        return json_data
    message = "Hubloader stopped this prompt (verify models before a prompt runs): " + "; ".join(
        m.message() for m in changed
    )
    log.warning("%s", message)
    if send is not None:
        send(EVENT, {"message": message, "report": report.to_dict()})
    return refused(json_data, message)


def refused(json_data: dict[str, Any], message: str) -> dict[str, Any]:
    """The request with its prompt replaced by one ComfyUI refuses, ``message`` as the refusal's detail
    (a node without ``class_type``: ComfyUI answers 400 with ``details = "Node ID '#<message>'"``)."""
    return {**json_data, "prompt": {message: {"inputs": {}}}}


def _cache() -> Any:
    global _hashes
    if _hashes is None:
        from hubloader.library.hashcache import HashCache

        _hashes = HashCache()
    return _hashes


def register(prompt_server: Any) -> None:
    """Hook :func:`check_prompt` into ComfyUI's prompt handler (cheap: nothing runs until a prompt comes)."""
    add = getattr(prompt_server, "add_on_prompt_handler", None)
    if add is None:
        log.warning("hubloader: this ComfyUI has no add_on_prompt_handler; models cannot be verified before a prompt")
        return
    send = getattr(prompt_server, "send_sync", None)
    add(lambda data: check_prompt(data, send))
