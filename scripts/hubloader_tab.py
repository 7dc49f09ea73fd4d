"""A1111/Forge glue: the "Model Hub" tab, its Settings section and its routes. Nothing else lives here.

A1111 imports this file as a standalone module (named ``hubloader_tab.py``) with the extension root on
``sys.path``, so the hub layer is ``import hubloader``. Tokens never become ``shared.opts`` values
(``/sdapi/v1/options`` returns them and ``config.json`` is world-readable): the tab's Settings panel
writes them to Hubloader's own 0600 settings file and shows only "set"/"not set".
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from modules import script_callbacks, scripts, shared

# A1111 puts the extension root on a throwaway copy of sys.path only while it imports this file (load_scripts
# restores the original list afterwards), so import the package now: callbacks later find it in sys.modules.
BASEDIR = scripts.basedir()  # the extension root; only correct while A1111 imports this file
if BASEDIR not in sys.path:
    sys.path.insert(0, BASEDIR)
import hubloader  # noqa: E402,F401
from hubloader.core.settings import DEFAULTS  # noqa: E402

log = logging.getLogger("hubloader")
SECTION = ("hubloader", "Model Hub")
#: A1111 option key → (Hubloader setting, label, default, gradio component, its arguments). No tokens here, and
#: nothing of core.settings.LOCAL_ONLY_KEYS (endpoints, allow_pickle, shared cache, the cache limit a cleanup
#: deletes by): /sdapi/v1/options and the Settings page write options even when the tab refuses writes, so those
#: stay in the tab's guarded Settings.
OPTIONS: dict[str, tuple[str, str, Any, str, dict[str, Any]]] = {
    "hubloader_nsfw": ("nsfw", "Show NSFW results", False, "Checkbox", {}),
    "hubloader_max_connections": (
        "max_connections", "Download connections", DEFAULTS["max_connections"], "Slider",
        {"minimum": 1, "maximum": 32, "step": 1},
    ),
}  # fmt: skip
_hub: Any = None


def refusal() -> str | None:
    """A1111's own rule for extensions: no write actions when the UI is exposed without
    ``--enable-insecure-extension-access``."""
    if getattr(shared.cmd_opts, "disable_extension_access", False):
        return (
            "Model Hub downloads and settings are disabled because this web UI is reachable from the network. "
            "Restart with --enable-insecure-extension-access to allow them."
        )
    return None


def refresh_lists(kind: str, path: Path) -> None:
    """Make A1111/Forge see a new file: the list of its kind (cards read the sidecar on their own refresh)."""
    if kind in ("checkpoints", "diffusion_models"):
        from modules import sd_models

        sd_models.list_models()
    elif kind == "loras":
        import networks  # the builtin Lora extension's module (its folder is on sys.path)

        networks.list_available_networks()
    elif kind == "vae":
        from modules import shared_items

        shared_items.refresh_vae_list()
    elif kind == "embeddings":
        from modules import sd_hijack

        sd_hijack.model_hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)
    elif kind == "hypernetworks":
        shared.reload_hypernetworks()
    if kind in ("checkpoints", "vae", "text_encoders"):
        try:
            from modules_forge import main_entry  # Forge's top-bar lists
        except ImportError:
            return
        main_entry.refresh_models()


def model_hub() -> Any:
    """One hub (folders, download queue) per process, shared by the tab and the routes."""
    global _hub
    if _hub is None:
        from modules import paths

        from hubloader.core.folders import a1111_install
        from hubloader.faces.hub import ModelHub

        folders = a1111_install(Path(paths.data_path), shared.cmd_opts)
        _hub = ModelHub(folders, write_guard=refusal, on_downloaded=refresh_lists, host="a1111")
    return _hub


def on_ui_tabs() -> list[tuple[Any, str, str]]:
    from hubloader.faces import app as ui

    return [(ui.build_blocks(model_hub(), standalone=False), "Model Hub", "hubloader")]


def on_ui_settings() -> None:
    """Non-secret settings; Hubloader's settings file stays the truth, these write through to it."""
    import gradio as gr

    from hubloader.core import settings as config

    current = config.load_settings()
    for key, (setting, label, default, component, args) in OPTIONS.items():
        value = current.get(setting)
        value = default if value is None else value
        writer = _writer(key, setting, default)
        info = shared.OptionInfo(value, label, getattr(gr, component), args, onchange=writer, section=SECTION)
        shared.opts.add_option(key, info)
        shared.opts.data[key] = value  # what the file says, even if config.json remembers otherwise
    option_html = getattr(shared, "OptionHTML", None)  # A1111 >= 1.7 and Forge
    if option_html is not None:
        note = option_html(
            "Tokens (HuggingFace, CivitAI) are set in the <b>Model Hub</b> tab → Settings. They are stored in "
            "Hubloader's settings file (readable by you only) and never appear here or in /sdapi/v1/options."
        )
        note.section = SECTION
        shared.opts.add_option("hubloader_tokens_note", note)


def _writer(key: str, setting: str, default: Any) -> Any:
    def write() -> None:
        from hubloader.core import settings as config

        value = shared.opts.data.get(key, default)
        if setting == "max_connections":
            value = int(value)
        config.save_settings({setting: value})

    return write


def on_app_started(demo: Any, app: Any) -> None:
    """``/hubloader/downloads`` (the queue, polled by javascript/hubloader.js) and cancel; both refused when
    the host disables extension access (routes added here get no authentication from A1111)."""
    from fastapi.responses import JSONResponse

    def refused() -> Any:
        reason = refusal()
        return JSONResponse({"error": reason}, status_code=403) if reason else None

    @app.get("/hubloader/downloads")
    def downloads() -> Any:
        return refused() or {"downloads": [job.to_dict() for job in model_hub().jobs.list()]}

    @app.post("/hubloader/downloads/{job_id}/cancel")
    def cancel(job_id: str) -> Any:
        if refused():
            return refused()
        if not model_hub().jobs.cancel(job_id):
            return JSONResponse({"error": f"No running download {job_id!r}."}, status_code=404)
        return {"cancelled": job_id}


def on_script_unloaded() -> None:
    """Reload UI re-imports this file: stop the old queue's workers (their .part files resume later)."""
    if _hub is not None:
        _hub.jobs.shutdown()


script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
script_callbacks.on_script_unloaded(on_script_unloaded)
