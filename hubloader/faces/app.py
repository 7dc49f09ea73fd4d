"""The Model Hub Gradio app: the A1111/Forge tab and the standalone ``hubloader ui`` are the same Blocks.

Written to the intersection of gradio 3.41 (A1111 1.10), 4.40 (Forge) and the newest: ``gr.update``
returns, no ``.style()``, no ``js=``, no tuple choices, ``gr.File(type="binary")``. Downloads never
hold a Gradio event open: they run in a :class:`~hubloader.faces.jobs.JobManager` and the page polls
(``gr.Timer`` where it exists, else the refresh button, which the A1111 script clicks while jobs run).
Search results and the downloads list are HTML from :mod:`hubloader.faces.cards`: previews are loaded by the
browser, never by the server (gradio 3.41's Gallery would fetch each one, blocking the search), and a click on a
card or row button reaches its handler through a hidden textbox.

:class:`~hubloader.faces.hub.ModelHub` (in :mod:`hubloader.faces.hub`) holds the handlers as plain methods
over the hub layer, so tests (and other faces) drive them without a browser; :func:`build_blocks` here only
wires them to components.
"""

from __future__ import annotations

import functools
import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from hubloader.core import settings as config
from hubloader.core.errors import HubloaderError
from hubloader.core.folders import (
    KIND_BY_TYPE,
    ModelFolders,
    a1111_install,
    active_folders,
    comfyui_install,
    standalone_folders,
)
from hubloader.core.metadata import BaseModel, ModelMetadata, ModelType, SortBy, Source
from hubloader.faces import cards
from hubloader.faces.hub import ANY, ModelHub, folder_kind, message, weight_files
from hubloader.faces.jobs import FINISHED

SOURCE_CHOICES = ["Both", "HuggingFace", "CivitAI"]
TYPE_CHOICES = [ANY] + [t.value for t in ModelType if t is not ModelType.OTHER]
BASE_CHOICES = [ANY] + [b.value for b in BaseModel if b not in (BaseModel.OTHER, BaseModel.UNKNOWN)]
SORT_CHOICES = [s.value for s in SortBy]
KIND_CHOICES = [ANY] + list(dict.fromkeys(KIND_BY_TYPE.values()))
LIBRARY_HEADERS = [
    "name",
    "type",
    "base",
    "source",
    "size",
    "trigger words",
    "weight",
    "sha256",
    "duplicate of",
    "path",
]
CACHE_HEADERS = ["name", "size", "path"]
MISSING_HEADERS = ["model", "folder", "status", "source", "size", "evidence / reason"]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def version_of_label(meta: ModelMetadata, label: str) -> str:
    """The version id a Version choice names (its label ends in `` · <id>``; HF: the commit searched)."""
    if meta.source is not Source.CIVITAI:
        return meta.version_id or "main"
    return label.rsplit(" · ", 1)[-1].strip()


def _hidden_box(elem_id: str) -> Any:
    """A textbox a card or row button writes to (hidden by :data:`cards.STYLE`, not ``visible=False``: gradio
    leaves invisible components out of the page, so nothing could write to them)."""
    return gr.Textbox("", show_label=False, container=False, elem_id=elem_id)


def _table(rows: list[list[Any]], width: int) -> list[list[Any]]:
    """gradio 3.41 cannot show an empty list: one blank row instead."""
    return rows or [[""] * width]


def _guarded(outputs: int, status_index: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Turn a handler's HubloaderError into a message in its status output (other outputs unchanged)."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)  # gradio reads the wrapped signature (inputs, gr.SelectData)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except (HubloaderError, ValueError, OSError) as exc:
                values: list[Any] = [gr.update() for _ in range(outputs)]
                values[status_index] = f"⚠️ {message(exc)}"
                return tuple(values) if outputs > 1 else values[0]

        return run

    return wrap


def build_blocks(
    hub: ModelHub | None = None,
    *,
    models_dir: Path | str | None = None,
    comfyui: Path | str | None = None,
    a1111: Path | str | None = None,
    standalone: bool = True,
) -> Any:
    """The Model Hub Blocks. ``standalone=False`` (the A1111 tab) leaves the page title to the host."""
    if hub is None:
        hub = ModelHub(folders_for(models_dir=models_dir, comfyui=comfyui, a1111=a1111))
    with gr.Blocks(analytics_enabled=False, title="Hubloader Model Hub") as blocks:
        gr.HTML(cards.STYLE, elem_id="hubloader_style")
        if standalone:
            gr.Markdown(f"# Hubloader Model Hub\nModels go to **{hub.folders.name}**.")
        results_state = gr.State([])
        selected_state = gr.State(None)
        report_state = gr.State(None)
        with gr.Tabs(elem_id="hubloader_tabs"):
            _search_tab(hub, results_state, selected_state)
            _downloads_tab(hub)
            library_load = _library_tab(hub)
            _missing_tab(hub, report_state)
            _settings_tab(hub)
        blocks.load(*library_load)  # the Library is filled when the page opens
    blocks.hubloader_hub = hub  # the handlers' owner, for the host glue and tests
    return blocks


def _search_tab(hub: ModelHub, results_state: Any, selected_state: Any) -> None:
    with gr.Tab("Search", id="hubloader_search_tab"):
        with gr.Row():
            query = gr.Textbox(label="Search", placeholder="pixel art, sdxl lora …", elem_id="hubloader_query", scale=4)
            source = gr.Radio(SOURCE_CHOICES, value="Both", label="Source", elem_id="hubloader_source")
        with gr.Row():
            model_type = gr.Dropdown(TYPE_CHOICES, value=ANY, label="Type", elem_id="hubloader_type")
            base = gr.Dropdown(BASE_CHOICES, value=ANY, label="Base model", elem_id="hubloader_base")
            sort = gr.Dropdown(SORT_CHOICES, value=SortBy.POPULARITY.value, label="Sort", elem_id="hubloader_sort")
            nsfw = gr.Checkbox(value=bool(config.load_settings().get("nsfw")), label="NSFW", elem_id="hubloader_nsfw")
            search_button = gr.Button("Search", variant="primary", elem_id="hubloader_search")
        status = gr.Markdown("", elem_id="hubloader_search_status")
        # Cards the browser draws, previews included: the server never waits on an image host (cards.py).
        result_cards = gr.HTML(cards.results_html([]), elem_id="hubloader_results")
        pick = _hidden_box(cards.PICK_ID)
        with gr.Group(elem_id="hubloader_details_pane"):
            details = gr.Markdown("Select a result to see its versions and files.", elem_id="hubloader_details")
            triggers = gr.HTML("", elem_id="hubloader_details_triggers")
            with gr.Row():
                version = gr.Dropdown([], label="Version", elem_id="hubloader_version", interactive=True)
                file = gr.Dropdown([], label="File", elem_id="hubloader_file", interactive=True)
                download = gr.Button("Download", variant="primary", elem_id="hubloader_download")
            download_status = gr.Markdown("", elem_id="hubloader_download_status")

        @_guarded(3, 2)
        def run_search(q: str, src: str, kind: str, bm: str, order: str, adult: bool) -> tuple[Any, Any, str]:
            results, warnings = hub.search(q, src, kind, bm, order, adult)
            text = f"{len(results)} result{'' if len(results) == 1 else 's'}" + "".join(f"\n\n⚠️ {w}" for w in warnings)
            return cards.results_html(results), results, text

        inputs = [query, source, model_type, base, sort, nsfw]
        search_button.click(run_search, inputs, [result_cards, results_state, status])
        query.submit(run_search, inputs, [result_cards, results_state, status])

        @_guarded(5, 0)
        def select(picked: str, results: list[ModelMetadata]) -> tuple[Any, ...]:
            index = cards.picked_index(picked)
            if index is None or index >= len(results or []):
                return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
            meta = results[index]
            choices = hub.versions(meta)
            names = [f.name for f in weight_files(meta)]
            return (
                hub.details_markdown(meta),
                gr.update(choices=[label for label, _ in choices], value=choices[0][0] if choices else None),
                gr.update(choices=names, value=names[0] if names else None),
                meta,
                cards.copy_chips(meta.trigger_words),
            )

        pick.change(select, [pick, results_state], [details, version, file, selected_state, triggers])

        @_guarded(4, 0)
        def choose_version(meta: ModelMetadata | None, label: str) -> tuple[Any, Any, Any, str | dict[str, Any]]:
            if meta is None or not label:
                return gr.update(), gr.update(), gr.update(), gr.update()
            chosen = hub.version(meta, version_of_label(meta, label))
            names = [f.name for f in weight_files(chosen)]
            return hub.details_markdown(chosen), gr.update(choices=names, value=names[0] if names else None), chosen, ""

        version.change(choose_version, [selected_state, version], [details, file, selected_state, download_status])

        @_guarded(1, 0)
        def start(meta: ModelMetadata | None, name: str) -> str:
            if meta is None:
                return "Select a result first."
            job = hub.start_download(meta, name or "")
            return (
                f"Queued **{job['label']}** ({job['id']}) → `{hub.folders.target(folder_kind(meta))}`. See Downloads."
            )

        download.click(start, [selected_state, file], [download_status])


def _downloads_tab(hub: ModelHub) -> None:
    with gr.Tab("Downloads", id="hubloader_downloads_tab"):
        table = gr.HTML(_jobs_html(hub), elem_id="hubloader_jobs")
        action = _hidden_box(cards.JOB_ACTION_ID)
        with gr.Row():
            refresh = gr.Button("Refresh", elem_id="hubloader_jobs_refresh")
        status = gr.Markdown("", elem_id="hubloader_jobs_status")

        def poll() -> str:
            return _jobs_html(hub)

        @_guarded(2, 0)
        def act(value: str) -> tuple[Any, Any]:
            chosen = cards.job_action(value)
            if chosen is None:
                return gr.update(), gr.update()
            verb, job_id = chosen
            text = hub.cancel(job_id) if verb == "cancel" else hub.retry(job_id)
            return text, _jobs_html(hub)

        refresh.click(poll, None, [table])
        action.change(act, [action], [status, table])
        if hasattr(gr, "Timer"):  # gradio >= 4.40 (Forge, standalone); A1111's 3.41 polls via javascript/
            gr.Timer(1.0).tick(poll, None, [table], show_progress="hidden")


def _jobs_html(hub: ModelHub) -> str:
    return cards.jobs_html(hub.job_dicts(), finished=FINISHED)


def _library_tab(hub: ModelHub) -> tuple[Callable[..., Any], list[Any], list[Any]]:
    """The Library tab; returns the (handler, inputs, outputs) that fill it when the page opens."""
    with gr.Tab("Library", id="hubloader_library_tab"):
        gr.Markdown(f"Models in **{hub.folders.name}**.", elem_id="hubloader_library_host")
        with gr.Row():
            kind = gr.Dropdown(KIND_CHOICES, value=ANY, label="Folder", elem_id="hubloader_library_kind")
            query = gr.Textbox(label="Filter", elem_id="hubloader_library_query")
            show = gr.Button("Show", elem_id="hubloader_library_show")
            rescan = gr.Button("Rescan folders", elem_id="hubloader_rescan")
        summary = gr.Markdown("", elem_id="hubloader_library_summary")
        table = gr.Dataframe(
            headers=LIBRARY_HEADERS, value=_table([], len(LIBRARY_HEADERS)), interactive=False,
            elem_id="hubloader_library", label="Local models (select a row to copy its trigger words)",
        )  # fmt: skip
        triggers = gr.HTML("", elem_id="hubloader_library_triggers")
        _cleanup(hub)

        @_guarded(2, 1)
        def show_library(k: str, q: str) -> tuple[Any, str]:
            rows, text = hub.library(k, q)
            return _table(rows, len(LIBRARY_HEADERS)), text

        @_guarded(2, 1)
        def rescan_library(k: str, q: str) -> tuple[Any, str]:
            scanned = hub.rescan()
            rows, text = hub.library(k, q)
            return _table(rows, len(LIBRARY_HEADERS)), f"{scanned}\n\n{text}"

        def choose_row(evt: gr.SelectData) -> str:
            row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
            paths = list(hub.library_triggers)
            if not isinstance(row, int) or not 0 <= row < len(paths):
                return ""
            name = Path(paths[row]).name
            return cards.copy_chips(hub.library_triggers[paths[row]], label=f"{name}: trigger words") or (
                f"{cards.esc(name)} has no trigger words."
            )

        show.click(show_library, [kind, query], [table, summary])
        query.submit(show_library, [kind, query], [table, summary])
        rescan.click(rescan_library, [kind, query], [table, summary])
        table.select(choose_row, None, [triggers])
    return show_library, [kind, query], [table, summary]


def _cleanup(hub: ModelHub) -> None:
    """Downloads cache cleanup: Preview lists what would go; Delete asks once more, naming the count and size;
    only a confirmation deletes, and only what the preview listed."""
    with gr.Accordion("Downloads cache cleanup", open=False):
        with gr.Row():
            max_gb = gr.Number(value=None, label="Shrink to (GB; empty = the cache limit)")
            keep = gr.Number(value=0, label="Never delete the N most recently used", precision=0)
            preview = gr.Button("Preview", elem_id="hubloader_cleanup_preview")
            # Enabled by a preview that lists something; it only asks, the confirmation deletes.
            delete = gr.Button("Delete listed…", variant="stop", elem_id="hubloader_cleanup_run", interactive=False)
        with gr.Row():
            confirm = gr.Button(
                "Yes, delete them", variant="stop", elem_id="hubloader_cleanup_confirm", interactive=False
            )
            keep_them = gr.Button("No, keep them", elem_id="hubloader_cleanup_keep", interactive=False)
        cleanup_status = gr.Markdown("", elem_id="hubloader_cleanup_status")
        cleanup_table = gr.Dataframe(
            headers=CACHE_HEADERS, value=_table([], len(CACHE_HEADERS)), interactive=False,
            elem_id="hubloader_cleanup", label="Files the cleanup deletes",
        )  # fmt: skip

    outputs = [cleanup_table, cleanup_status, delete, confirm, keep_them]
    off = gr.update(interactive=False)

    @_guarded(5, 1)
    def run_preview(keep_recent: float | None, limit: float | None) -> tuple[Any, ...]:
        rows, text = hub.cleanup(int(keep_recent or 0), limit, dry_run=True)
        return _table(rows, len(CACHE_HEADERS)), text, gr.update(interactive=bool(rows)), off, off

    def ask(status: str) -> tuple[Any, ...]:
        on = gr.update(interactive=True)
        question = f"**Delete the files listed below?** {status.replace('Would delete', 'This deletes')}"
        return gr.update(), question, off, on, on

    @_guarded(5, 1)
    def run_delete(keep_recent: float | None, limit: float | None) -> tuple[Any, ...]:
        rows, text = hub.cleanup(int(keep_recent or 0), limit, dry_run=False)
        return _table(rows, len(CACHE_HEADERS)), text, off, off, off

    def cancel_delete() -> tuple[Any, ...]:
        return gr.update(), "Nothing deleted.", gr.update(interactive=True), off, off

    preview.click(run_preview, [keep, max_gb], outputs)
    delete.click(ask, [cleanup_status], outputs)
    confirm.click(run_delete, [keep, max_gb], outputs)
    keep_them.click(cancel_delete, None, outputs)


def _missing_tab(hub: ModelHub, report_state: Any) -> None:
    with gr.Tab("Missing models", id="hubloader_missing_tab"):
        gr.Markdown("Paste an image's generation parameters, or drop the image (or a ComfyUI workflow).")
        with gr.Row():
            infotext = gr.Textbox(label="Generation parameters", lines=6, elem_id="hubloader_infotext")
            image = gr.File(label="Image or workflow", type="binary", elem_id="hubloader_missing_file")
        with gr.Row():
            check = gr.Button("Check", variant="primary", elem_id="hubloader_missing_check")
            fetch = gr.Button("Fetch all resolved", elem_id="hubloader_missing_fetch")
        status = gr.Markdown("", elem_id="hubloader_missing_status")
        table = gr.Dataframe(
            headers=MISSING_HEADERS, value=_table([], len(MISSING_HEADERS)), interactive=False,
            elem_id="hubloader_missing", label="Models",
        )  # fmt: skip

        @_guarded(3, 2)
        def run_check(text: str, data: bytes | None) -> tuple[Any, Any, str]:
            report = hub.missing(text, data)
            counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
            if not counts:
                return _table([], len(MISSING_HEADERS)), report, "No models named."
            # The install plan under the table: what "Fetch all" will take, whether it fits, why the rest cannot.
            plan = "\n".join(f"- {html.escape(line.strip())}" for line in hub.plan_of(report).summary_lines())
            return _table(hub.missing_rows(report), len(MISSING_HEADERS)), report, f"{counts}\n\n{plan}"

        @_guarded(1, 0)
        def run_fetch(report: Any) -> str:
            if report is None:
                return "Check first."
            jobs = hub.fetch_missing(report)
            return f"Queued {len(jobs)} downloads; see Downloads." if jobs else "Nothing resolved to fetch."

        check.click(run_check, [infotext, image], [table, report_state, status])
        fetch.click(run_fetch, [report_state], [status])


def _settings_tab(hub: ModelHub) -> None:
    shown = hub.settings_view()
    with gr.Tab("Settings", id="hubloader_settings_tab"):
        tokens = gr.Markdown(_token_status(shown), elem_id="hubloader_token_status")
        with gr.Row():
            hf_token = gr.Textbox(label="HuggingFace token", type="password", elem_id="hubloader_hf_token")
            civitai_token = gr.Textbox(label="CivitAI API key", type="password", elem_id="hubloader_civitai_token")
        with gr.Row():
            clear_hf = gr.Checkbox(label="Remove the stored HuggingFace token", value=False)
            clear_civitai = gr.Checkbox(label="Remove the stored CivitAI key", value=False)
        endpoints = gr.Markdown(_endpoints(hub), elem_id="hubloader_endpoints")
        with gr.Row():
            hf_endpoint = gr.Textbox(label="HuggingFace endpoint (mirror)", value=shown.get("hf_endpoint") or "")
            civitai_endpoint = gr.Textbox(label="CivitAI endpoint", value=shown.get("civitai_endpoint") or "")
        with gr.Row():
            cache_limit = gr.Number(
                label="Downloads cache limit (GB, 0 = none)", value=shown.get("cache_limit_gb") or 0
            )
            connections = gr.Number(label="Connections", value=shown.get("max_connections") or 8, precision=0)
            allow_pickle = gr.Checkbox(label="Allow pickle formats (.ckpt/.pt)", value=bool(shown.get("allow_pickle")))
            nsfw = gr.Checkbox(label="Show NSFW results", value=bool(shown.get("nsfw")))
        shared_cache = gr.Textbox(
            label="Shared cache (folder or s3://bucket/prefix)",
            value=shown.get("shared_cache") or "",
            info=_shared_cache_info(),
            elem_id="hubloader_shared_cache",
        )
        cache_status = gr.Markdown(shown["shared_cache_status"], elem_id="hubloader_shared_cache_status")
        save = gr.Button("Save settings", variant="primary", elem_id="hubloader_save_settings")
        status = gr.Markdown("", elem_id="hubloader_settings_status")

        @_guarded(8, 0)
        def run_save(*values: Any) -> tuple[str, str, str, bool, bool, str, str, str]:
            hf, civ, c_hf, c_civ, hf_ep, civ_ep, limit, conns, pickle, adult, shared = values
            text = hub.save_settings(
                hf, civ, clear_hf_token=c_hf, clear_civitai_token=c_civ, hf_endpoint=hf_ep,
                civitai_endpoint=civ_ep, cache_limit_gb=limit, allow_pickle=pickle, max_connections=conns, nsfw=adult,
                shared_cache=shared or "",
            )  # fmt: skip
            shown = hub.settings_view()
            return text, "", "", False, False, _endpoints(hub), _token_status(shown), shown["shared_cache_status"]

        save.click(
            run_save,
            [hf_token, civitai_token, clear_hf, clear_civitai, hf_endpoint, civitai_endpoint, cache_limit, connections]
            + [allow_pickle, nsfw, shared_cache],
            [status, hf_token, civitai_token, clear_hf, clear_civitai, endpoints, tokens, cache_status],
        )
        # What a page opened earlier shows may be stale (another window saved, the environment differs).
        gr.Button("Refresh", size="sm", elem_id="hubloader_endpoints_refresh").click(
            lambda: _endpoints(hub), None, [endpoints]
        )


def _endpoints(hub: ModelHub) -> str:
    return "**Endpoints in effect**\n\n" + cards.endpoints_markdown(hub.endpoints())


def _shared_cache_info() -> str:
    from hubloader.sharedcache.cache import ENV_URL

    text = (
        "A folder or bucket the machines of a site share: each model is fetched from the internet once, "
        "the others copy it from there. Blank = off."
    )
    if os.environ.get(ENV_URL):
        text += f" {ENV_URL} is set for this process and overrides this field."
    return text


def _token_status(shown: dict[str, Any]) -> str:
    return (
        f"HuggingFace token: **{shown['hf_token']}** · CivitAI API key: **{shown['civitai_token']}** "
        "(stored in your Hubloader settings file, readable by you only; never shown back)"
    )


# --- standalone ---------------------------------------------------------------------------------------------


def folders_for(
    *, models_dir: Path | str | None = None, comfyui: Path | str | None = None, a1111: Path | str | None = None
) -> ModelFolders:
    """The folders the standalone app fills: a ComfyUI or A1111 install, a models folder, or the default."""
    if comfyui:
        return comfyui_install(Path(comfyui))
    if a1111:
        return a1111_install(Path(a1111))
    if models_dir:
        return standalone_folders(Path(models_dir))
    return active_folders()


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    models_dir: Path | str | None = None,
    comfyui: Path | str | None = None,
    a1111: Path | str | None = None,
    *,
    folders: ModelFolders | None = None,
    block: bool = True,
) -> Any:
    """Serve the app on ``folders`` (or those the paths name). Bound beyond loopback (or shared), write actions are refused, as A1111 does for
    extensions: anyone who reaches the page could otherwise save tokens or fill the disk."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    exposed = share or host not in LOOPBACK_HOSTS

    def guard() -> str | None:
        if exposed:
            return (
                "Downloads and settings are disabled because this app is reachable from the network "
                "(--host/--share). Run it on 127.0.0.1 to change things."
            )
        return None

    if folders is None:
        folders = folders_for(models_dir=models_dir, comfyui=comfyui, a1111=a1111)
    hub = ModelHub(folders, write_guard=guard)
    blocks = build_blocks(hub)
    blocks.queue()
    blocks.launch(server_name=host, server_port=int(port), share=share, prevent_thread_lock=not block)
    return blocks
