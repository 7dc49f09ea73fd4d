"""The Model Hub's HTML pieces: result cards, the downloads list, copyable trigger words, the endpoints table.

Why HTML and not a Gallery: gradio 3.41 (A1111 1.10) sends one blocking HEAD per Gallery image URL from the
server, one after another and without a timeout, so a slow, refusing or silent preview host delays, fails or
hangs the whole search. Here every image is an ``<img loading=lazy>`` the *browser* loads; a broken one turns
into a "no preview" tile. The server never touches a preview, on every gradio version alike.

A click on a card or a row button writes ``<action>:<value>:<nonce>`` into a hidden textbox
(:data:`PICK_ID`, :data:`JOB_ACTION_ID`); its ``change`` event runs the handler. Inline ``on…`` attributes,
because gradio renders HTML with ``innerHTML`` (scripts there never run) and A1111 does not load our
``<style>``/``<script>`` for a tab. Every text and attribute value is escaped; image URLs must be http(s).

Pure string building, no gradio: the handlers and tests use it without a browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from hubloader.core.metadata import ModelMetadata, Source
from hubloader.core.units import human_size

#: The hidden textboxes a click writes to (elem_ids).
PICK_ID = "hubloader_pick"
JOB_ACTION_ID = "hubloader_job_action"
#: Thumbnail width asked of CivitAI's image CDN (its URLs carry a ``width=N`` path segment).
THUMBNAIL_WIDTH = 450

# One place for the look; shown once per page (a gr.HTML at the top of the app), scoped by class names.
STYLE = f"""<style>
#{PICK_ID}, #{JOB_ACTION_ID} {{ display: none !important; }}
.hl-cards {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px; }}
.hl-card {{ all: unset; box-sizing: border-box; cursor: pointer; display: flex; flex-direction: column;
  border: 1px solid #8884 !important; border-radius: 8px; overflow: hidden; background: #8881;
  text-align: left !important; font-weight: normal !important; padding: 0 !important; }}
.hl-card:hover, .hl-card:focus-visible {{ outline: 2px solid #f97316; }}
.hl-thumb {{ position: relative; aspect-ratio: 1 / 1; background: #3a3f4b; color: #c8ccd6; display: flex;
  align-items: center; justify-content: center; font-size: 13px; }}
.hl-thumb img {{ position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }}
.hl-badge {{ position: absolute; top: 6px; left: 6px; z-index: 1; padding: 1px 7px; border-radius: 10px;
  font-size: 12px; font-weight: 600; color: #fff; }}
.hl-badge.hl-civitai {{ background: #1971c2; }} .hl-badge.hl-hf {{ background: #e8590c; }}
.hl-body {{ padding: 6px 8px 8px; display: flex; flex-direction: column; gap: 2px; font-size: 13px; }}
.hl-name {{ font-weight: 600 !important; font-size: 14px; overflow-wrap: anywhere; }}
.hl-meta, .hl-stats {{ opacity: .8; }}
.hl-jobs {{ width: 100%; border-collapse: collapse; font-size: 14px; }}
.hl-jobs td, .hl-jobs th {{ padding: 6px; border-bottom: 1px solid #8884; text-align: left; vertical-align: top; }}
.hl-jobs progress {{ width: 100%; min-width: 120px; height: 14px; }}
.hl-error {{ color: #e03131; white-space: pre-wrap; overflow-wrap: anywhere; }}
.hl-jobs button, .hl-chip {{ cursor: pointer; border: 1px solid #8888 !important; border-radius: 6px;
  padding: 2px 8px !important; background: #8882 !important; color: inherit; font: inherit; margin: 2px; }}
.hl-chip.hl-copied {{ border-color: #2f9e44; }}
</style>"""

_HTTP = ("http://", "https://")
_PARAMS_SEGMENT = re.compile(r"^[a-z]+=[^/=]*(,[a-z]+=[^/=]*)*$")


def esc(value: object) -> str:
    """Text or an attribute value, safe inside HTML (quotes included)."""
    return html.escape(str(value), quote=True)


def thumbnail_url(url: str) -> str:
    """A CivitAI image URL asking for a small rendition: its ``width=…``/``original=true`` path segment
    becomes ``width=450`` (other URLs unchanged)."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    for i, segment in enumerate(segments[:-1]):
        if _PARAMS_SEGMENT.match(segment) and ("width=" in segment or "original=" in segment):
            kept = [p for p in segment.split(",") if not p.startswith(("width=", "original=", "height="))]
            segments[i] = ",".join([*kept, f"width={THUMBNAIL_WIDTH}"])
            return urlunsplit(parts._replace(path="/".join(segments)))
    return url


def _click(target: str) -> str:
    """An inline handler writing ``value:<nonce>`` into the hidden textbox ``target`` (the nonce makes a second
    click on the same thing a change too). ``value`` comes from the element's ``data-v`` attribute."""
    return (
        "var r=this.getRootNode(),t=r.querySelector"
        f"('#{target} textarea, #{target} input');"
        "if(t){t.value=this.dataset.v+':'+Date.now();"
        "t.dispatchEvent(new Event('input',{bubbles:true}));}"
    )


_BROKEN = "this.parentNode.classList.add('hl-broken');this.remove();"
_COPY = (
    "var b=this,v=b.dataset.copy,done=function(){b.classList.add('hl-copied');b.title='copied';};"
    "var old=function(){var a=document.createElement('textarea');a.value=v;document.body.appendChild(a);"
    "a.select();document.execCommand('copy');a.remove();done();};"
    "if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(v).then(done,old);}else{old();}"
)


def source_badge(meta: ModelMetadata) -> tuple[str, str]:
    """(label, css class) of a result's source."""
    return ("HF", "hl-hf") if meta.source is Source.HUGGINGFACE else ("CivitAI", "hl-civitai")


def card(meta: ModelMetadata, index: int) -> str:
    """One result: the badge, a lazily browser-loaded thumbnail, then name, type · base · size and stats."""
    label, css = source_badge(meta)
    preview = next((u for u in meta.preview_urls if u.lower().startswith(_HTTP)), "")
    image = ""
    if preview:
        src = thumbnail_url(preview) if meta.source is Source.CIVITAI else preview
        image = f'<img src="{esc(src)}" loading="lazy" alt="" referrerpolicy="no-referrer" onerror="{esc(_BROKEN)}">'
    size = human_size(meta.size_bytes or None) if meta.size_bytes else "size unknown"
    triggers = (
        f'<span class="hl-stats">triggers: {esc(", ".join(meta.trigger_words[:4]))}</span>'
        if meta.trigger_words
        else ""
    )
    return (
        f'<button type="button" class="hl-card" data-v="{index}" title="{esc(meta.name)}" '
        f'onclick="{esc(_click(PICK_ID))}">'
        f'<span class="hl-thumb"><span class="hl-badge {css}">{label}</span>no preview{image}</span>'
        f'<span class="hl-body"><span class="hl-name">{esc(meta.name)}</span>'
        f'<span class="hl-meta">{esc(meta.type.value)} · {esc(meta.base_model.value)} · {esc(size)}</span>'
        f'<span class="hl-stats">⬇ {meta.download_count:,} · ♥ {meta.like_count:,}</span>{triggers}</span>'
        "</button>"
    )


def results_html(results: list[ModelMetadata]) -> str:
    """The result cards; a click on card N writes ``N:<nonce>`` to :data:`PICK_ID`."""
    if not results:
        return '<div class="hl-cards-empty">No results.</div>'
    return '<div class="hl-cards" id="hubloader_cards">' + "".join(card(m, i) for i, m in enumerate(results)) + "</div>"


def picked_index(value: str) -> int | None:
    """The card index a :data:`PICK_ID` value names, or None (blank, or not ours)."""
    head = (value or "").split(":", 1)[0]
    return int(head) if head.isdigit() else None


def copy_chips(words: Iterable[str], *, label: str = "Trigger words") -> str:
    """Trigger words as buttons copying themselves to the clipboard, plus one copying them all."""
    words = [w for w in words if w]
    if not words:
        return ""
    chips = "".join(
        f'<button type="button" class="hl-chip" data-copy="{esc(w)}" title="copy" onclick="{esc(_COPY)}">{esc(w)}</button>'
        for w in words
    )
    everything = ", ".join(words)
    if len(words) > 1:
        chips += (
            f'<button type="button" class="hl-chip hl-copy-all" data-copy="{esc(everything)}" title="copy all" '
            f'onclick="{esc(_COPY)}">copy all</button>'
        )
    return f'<div class="hl-chips">{esc(label)} (click to copy): {chips}</div>'


def jobs_html(jobs: list[dict[str, object]], *, finished: frozenset[str]) -> str:
    """The downloads, newest first: a progress bar per row, Cancel while it runs, Retry/Resume after it failed or
    was cancelled (the ``.part`` file is kept, so it resumes), the whole error text."""
    if not jobs:
        return '<div class="hl-jobs-empty">No downloads yet. Start one from Search or Missing models.</div>'
    rows = []
    for job in jobs:
        state, done, total = str(job["state"]), _int(job["done_bytes"]), _int(job["total_bytes"])
        if total:
            bar = f'<progress value="{done}" max="{total}"></progress> {100 * done / total:.0f}%'
            size = f"{human_size(done or None)} / {human_size(total)}"
        else:
            bar = "<progress></progress>" if state == "running" else ""
            size = human_size(done) if done else ""
        speed = job.get("speed_bps") or 0
        if speed and state not in finished:
            size += f" · {human_size(float(str(speed)))}/s"
        if state not in finished:
            action = ("cancel", "Cancel")
        elif state in ("failed", "cancelled"):
            action = ("retry", "Resume" if done else "Retry")
        else:
            action = None
        button = (
            f'<button type="button" class="hl-{action[0]}" data-v="{action[0]}:{esc(job["id"])}" '
            f'onclick="{esc(_click(JOB_ACTION_ID))}">{action[1]}</button>'
            if action
            else ""
        )
        outcome = (
            f'<div class="hl-error">{esc(job["error"])}</div>'
            if job.get("error") and state != "done"
            else f"<code>{esc(job.get('path') or '')}</code>"
        )
        rows.append(
            f'<tr data-job="{esc(job["id"])}" data-state="{esc(state)}"><td>{esc(job["label"])}'
            f'<br><small>{esc(job["id"])}</small></td><td class="hl-state">{esc(state)}</td>'
            f"<td>{bar}<br><small>{esc(size)}</small></td><td>{outcome}</td><td>{button}</td></tr>"
        )
    head = "<tr><th>model</th><th>state</th><th>progress</th><th>file / error</th><th></th></tr>"
    return f'<table class="hl-jobs">{head}{"".join(rows)}</table>'


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) else 0


def job_action(value: str) -> tuple[str, str] | None:
    """(action, job id) a :data:`JOB_ACTION_ID` value names: ``cancel:<id>:<nonce>`` or ``retry:<id>:<nonce>``."""
    parts = (value or "").split(":")
    if len(parts) >= 2 and parts[0] in ("cancel", "retry") and parts[1]:
        return parts[0], parts[1]
    return None


def endpoints_markdown(rows: list[tuple[str, str, str]]) -> str:
    """The endpoints in effect: (name, URL, where it comes from)."""
    lines = ["| endpoint | in effect | from |", "|---|---|---|"]
    lines += [f"| {name} | `{url}` | {origin} |" for name, url, origin in rows]
    return "\n".join(lines)
