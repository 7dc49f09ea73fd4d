// Hubloader for ComfyUI: Model Hub sidebar (search, download queue, library), badges on our loader
// nodes, and a missing-models dialog after a workflow loads. Plain ES module, no build step.
// Frontend APIs that changed between versions (toast, sidebar) are feature-detected.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "Hubloader.ModelHub";
const state = { downloads: new Map(), nodeInputs: null, listeners: new Set(), heard: 0, polling: null };
const FINISHED = new Set(["done", "failed", "cancelled"]);

// ---------------------------------------------------------------------------------------------- utils
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") Object.assign(el.style, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c.nodeType ? c : String(c));
  return el;
}

function size(n) {
  if (!n) return "";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

async function call(route, init) {
  const res = await api.fetchApi(`/hubloader${route}`, init);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error([body.error, body.hint].filter(Boolean).join(" ") || `HTTP ${res.status}`);
  return body;
}

const post = (route, data) => call(route, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

function toast(severity, summary, detail = "") {
  const t = app.extensionManager?.toast;
  if (!t) return console.log(`[hubloader] ${summary} ${detail}`);
  const modern = { success: t.success, info: t.info, warn: t.warning, error: t.error }[severity];
  if (typeof modern === "function") modern.call(t, summary, { description: detail });
  else t.add?.({ severity, summary, detail, life: 4000 });
}

async function copy(text) {
  try { await navigator.clipboard.writeText(text); toast("info", "Copied", text); } catch { /* insecure context */ }
}

function refreshCombos() {
  try { app.refreshComboInNodes?.(); } catch (e) { console.warn("[hubloader] refresh failed", e); }
}

const notify = () => state.listeners.forEach((fn) => fn());

// -------------------------------------------------------------------------------------- websocket
// A job's dict from the websocket or the /downloads route: toasts on a state change, then every view redraws.
function onJob(job) {
  if (!job?.id) return;
  const before = state.downloads.get(job.id);
  if (before && FINISHED.has(before.state) && !FINISHED.has(job.state)) return;  // a late progress event
  state.downloads.set(job.id, job);
  if (job.state === "failed" && before?.state !== "failed") toast("error", `Download failed: ${job.label}`, job.error);
  if (job.state === "done" && before?.state !== "done") toast("success", `Downloaded ${job.filename || job.label}`, job.kind);
  notify();
}

function listen() {
  const heard = (e) => { state.heard = Date.now(); onJob(e.detail); };
  api.addEventListener("hubloader.download.state", heard);
  api.addEventListener("hubloader.download.progress", heard);
  api.addEventListener("hubloader.models.changed", () => { refreshCombos(); notify(); });
  // A prompt stopped because a pinned file's bytes changed: the message names the file and both hashes.
  api.addEventListener("hubloader.verify_failed", (e) => toast("error", "Prompt stopped: a model file changed", e.detail?.message || ""));
}

// Fallback for a page whose websocket is down or reconnecting (a proxy, a sleeping laptop): while a job is
// unfinished and no event came for a while, ask /downloads.
const POLL_MS = 1500;
function watchJobs() {
  if (state.polling) return;
  state.polling = setInterval(async () => {
    const open = [...state.downloads.values()].some((j) => !FINISHED.has(j.state));
    if (!open) { clearInterval(state.polling); state.polling = null; return; }
    if (Date.now() - state.heard < 2 * POLL_MS) return;
    try { (await call("/downloads")).downloads.forEach(onJob); } catch { /* server restarting: next tick */ }
  }, POLL_MS);
}

async function startDownload(ref, kind, label) {
  const job = await post("/downloads", { ref, kind, label });
  onJob(job);
  watchJobs();
  return job;
}

// ----------------------------------------------------------------------------------------- sidebar
const TYPES = [["", "Any type"], ["checkpoint", "Checkpoint"], ["lora", "LoRA"], ["vae", "VAE"], ["embedding", "Embedding"], ["controlnet", "ControlNet"], ["upscaler", "Upscaler"]];
const BASES = [["", "Any base"], ["sd15", "SD 1.5"], ["sdxl", "SDXL"], ["pony", "Pony"], ["illustrious", "Illustrious"], ["sd35", "SD 3.5"], ["flux1", "Flux.1"]];
const SORTS = [["popular", "Most downloaded"], ["rating", "Highest rated"], ["likes", "Most liked"], ["newest", "Newest"]];
const SOURCES = [["all", "Both sources"], ["civitai", "CivitAI"], ["huggingface", "HuggingFace"]];
const select = (name, options) => h("select", { name, class: "hubloader-select" }, options.map(([v, l]) => h("option", { value: v }, l)));

// A card follows its download: a bar with the percentage while it runs, then done (where it went) or failed
// (why, and the button again to retry). It finds its job again after a new search for the same model.
function resultCard(m) {
  const preview = (m.preview_urls || [])[0];
  const words = (m.trigger_words || []).slice(0, 8);
  const button = h("button", { class: "hubloader-btn", "data-ref": m.reference }, "Download");
  const bar = h("progress", { max: 100, class: "hubloader-card-progress", hidden: "" });
  const status = h("span", { class: "hubloader-muted hubloader-card-status" }, m.kind ? `→ models/${m.kind}` : "");
  const card = h("div", { class: "hubloader-card", "data-ref": m.reference });
  let jobId = null;
  let shown = false;
  const update = () => {
    if (!card.isConnected && shown) return state.listeners.delete(update);  // its search results were replaced
    shown = card.isConnected;
    const job = jobId ? state.downloads.get(jobId)
      : [...state.downloads.values()].find((j) => j.ref === m.reference && j.kind === m.kind && !FINISHED.has(j.state));
    if (!job) return;
    jobId = job.id;
    card.dataset.state = job.state;
    const pct = job.total_bytes ? Math.floor((100 * job.done_bytes) / job.total_bytes) : 0;
    bar.hidden = job.state !== "running" && job.state !== "queued";
    if (job.total_bytes) bar.value = pct; else bar.removeAttribute("value");  // indeterminate until the size is known
    button.disabled = !FINISHED.has(job.state) || job.state === "done";
    button.textContent = job.state === "done" ? "Downloaded" : FINISHED.has(job.state) ? "Retry" : "Downloading…";
    status.className = `hubloader-muted hubloader-card-status${job.state === "failed" ? " hubloader-warn" : ""}`;
    status.textContent = {
      queued: "Queued…",
      running: job.total_bytes ? `${pct}% · ${size(job.done_bytes)} / ${size(job.total_bytes)}${job.speed_bps ? ` · ${size(job.speed_bps)}/s` : ""}` : "Starting…",
      done: `✓ Done → models/${job.kind}/${job.filename || ""}`,
      failed: `✗ Failed: ${job.error}`,
      cancelled: "Cancelled (the partial file is kept: Retry resumes)",
    }[job.state] || job.state;
  };
  state.listeners.add(update);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { jobId = (await startDownload(m.reference, m.kind, m.name)).id; update(); }
    catch (e) { toast("error", "Cannot download", e.message); button.disabled = false; }
  });
  card.append(
    preview ? h("img", { src: preview, loading: "lazy", class: "hubloader-preview" }) : null,
    h("div", { class: "hubloader-card-body" },
      h("div", { class: "hubloader-title" }, m.name, m.version ? h("span", { class: "hubloader-muted" }, ` · ${m.version}`) : null),
      h("div", { class: "hubloader-muted" }, [m.source, m.type, m.base_model, size(m.size_bytes), m.download_count ? `${m.download_count} downloads` : "", m.rating ? `★ ${m.rating}` : ""].filter(Boolean).join(" · ")),
      words.length ? h("div", { class: "hubloader-words" }, words.map((w) => h("span", { class: "hubloader-chip", title: "Copy", onclick: () => copy(w) }, w))) : null,
      h("div", { class: "hubloader-row" }, button, status),
      bar));
  update();
  return card;
}

function searchView() {
  const form = h("form", { class: "hubloader-form" },
    h("input", { name: "q", type: "search", placeholder: "Search models…", class: "hubloader-input" }),
    h("div", { class: "hubloader-row" }, select("source", SOURCES), select("type", TYPES)),
    h("div", { class: "hubloader-row" }, select("base", BASES), select("sort", SORTS), h("button", { type: "submit", class: "hubloader-btn" }, "Search")));
  const results = h("div", { class: "hubloader-results" });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const params = new URLSearchParams(new FormData(form));
    results.replaceChildren(h("div", { class: "hubloader-muted" }, "Searching…"));
    try {
      const body = await call(`/search?${params}`);
      results.replaceChildren(...body.results.map(resultCard), ...(body.warnings || []).map((w) => h("div", { class: "hubloader-warn" }, w)));
      if (!body.results.length) results.append(h("div", { class: "hubloader-muted" }, "No results."));
    } catch (err) { results.replaceChildren(h("div", { class: "hubloader-warn" }, err.message)); }
  });
  return h("div", {}, form, results);
}

function queueView() {
  const list = h("div", { class: "hubloader-queue" });
  const render = () => {
    const jobs = [...state.downloads.values()].sort((a, b) => b.created_at - a.created_at);
    list.replaceChildren(...(jobs.length ? jobs.map((j) => {
      const pct = j.total_bytes ? Math.round((100 * j.done_bytes) / j.total_bytes) : 0;
      const running = j.state === "running" || j.state === "queued";
      return h("div", { class: `hubloader-job hubloader-${j.state}`, "data-state": j.state },
        h("div", { class: "hubloader-row" }, h("b", {}, j.filename || j.label), h("span", { class: "hubloader-muted" }, ` ${j.state}`)),
        h("progress", { max: 100, value: j.state === "done" ? 100 : pct }),
        h("div", { class: "hubloader-muted" }, `${size(j.done_bytes)} / ${size(j.total_bytes)}${j.speed_bps ? ` · ${size(j.speed_bps)}/s` : ""} → ${j.kind}`),
        j.error ? h("div", { class: "hubloader-warn" }, j.error) : null,
        running ? h("button", { class: "hubloader-btn", onclick: () => post(`/downloads/${j.id}/cancel`, {}).catch((e) => toast("error", "Cancel failed", e.message)) }, "Cancel") : null);
    }) : [h("div", { class: "hubloader-muted" }, "No downloads yet.")]));
  };
  state.listeners.add(render);
  call("/downloads").then((b) => { b.downloads.forEach((j) => state.downloads.set(j.id, j)); render(); watchJobs(); }).catch(() => render());
  return { el: list, dispose: () => state.listeners.delete(render) };
}

function libraryView() {
  const kind = select("kind", [["loras", "LoRAs"], ["checkpoints", "Checkpoints"], ["vae", "VAE"], ["embeddings", "Embeddings"], ["controlnet", "ControlNet"], ["upscale_models", "Upscalers"]]);
  const list = h("div", { class: "hubloader-results" });
  const load = async () => {
    list.replaceChildren(h("div", { class: "hubloader-muted" }, "Loading…"));
    try {
      const { models } = await call(`/library?kind=${encodeURIComponent(kind.value)}`);
      list.replaceChildren(...(models.length ? models.map((m) => h("div", { class: "hubloader-card" }, h("div", { class: "hubloader-card-body" },
        h("div", { class: "hubloader-title" }, m.name),
        h("div", { class: "hubloader-muted" }, [size(m.size_bytes), m.recommended_weight != null ? `weight ${m.recommended_weight}` : ""].filter(Boolean).join(" · ")),
        m.trigger_words.length ? h("div", { class: "hubloader-words" }, m.trigger_words.map((w) => h("span", { class: "hubloader-chip", title: "Copy", onclick: () => copy(w) }, w))) : null)))
        : [h("div", { class: "hubloader-muted" }, "Nothing here yet.")]));
    } catch (err) { list.replaceChildren(h("div", { class: "hubloader-warn" }, err.message)); }
  };
  kind.addEventListener("change", load);
  load();
  return h("div", {}, kind, list);
}

// The site's shared cache: blank turns it off; the server checks the name (never connects) and warns.
function sharedCacheRow(s, render) {
  const input = h("input", { type: "text", value: s.shared_cache || "", placeholder: "Shared cache (folder or s3://bucket/prefix)", class: "hubloader-input", "data-setting": "shared_cache" });
  const save = h("button", { class: "hubloader-btn", onclick: async () => {
    try {
      const saved = await post("/settings", { shared_cache: input.value });
      render(saved);
      (saved.warnings || []).forEach((w) => toast("warn", "Shared cache saved", w));
      if (!saved.warnings?.length) toast("success", "Shared cache saved");
    } catch (e) { toast("error", "Shared cache not saved", e.message); }
  } }, "Save");
  return [
    h("div", { class: "hubloader-row" }, input, save),
    h("div", { class: "hubloader-muted" }, "Each model is fetched from the internet once per site; the other machines copy it from there. Blank = off."),
    h("div", { class: "hubloader-muted", "data-status": "shared_cache" }, s.shared_cache_status),
  ];
}

function settingsView() {
  const box = h("div", { class: "hubloader-form" });
  const render = (s) => box.replaceChildren(
    ...["hf_token", "civitai_token"].map((key) => {
      const input = h("input", { type: "password", placeholder: `${key} (${s[key]})`, class: "hubloader-input", autocomplete: "off" });
      const save = h("button", { class: "hubloader-btn", onclick: async () => { render(await post("/settings", { [key]: input.value })); toast("success", `${key} saved`); } }, "Save");
      return h("div", { class: "hubloader-row" }, input, save);
    }),
    ...sharedCacheRow(s, render),
    h("div", { class: "hubloader-muted" }, `HuggingFace: ${s.hf_endpoint || "huggingface.co"} · CivitAI: ${s.civitai_endpoint || "civitai.com"}`));
  call("/settings").then(render).catch((e) => box.replaceChildren(h("div", { class: "hubloader-warn" }, e.message)));
  return box;
}

function renderSidebar(container) {
  injectStyle();
  const views = { Search: searchView, Queue: null, Library: libraryView, Settings: settingsView };
  const body = h("div", { class: "hubloader-body" });
  let queue = null;
  const show = (name) => {
    queue?.dispose();
    queue = null;
    if (name === "Queue") { queue = queueView(); body.replaceChildren(queue.el); } else body.replaceChildren(views[name]());
    tabs.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.textContent === name));
  };
  const tabs = h("div", { class: "hubloader-tabs" }, Object.keys(views).map((n) => h("button", { class: "hubloader-tab", onclick: () => show(n) }, n)));
  container.replaceChildren(h("div", { class: "hubloader-panel" }, tabs, body));
  show("Search");
}

function injectStyle() {
  if (document.getElementById("hubloader-style")) return;
  document.head.append(h("style", { id: "hubloader-style" }, `
.hubloader-panel{padding:8px;display:flex;flex-direction:column;gap:8px;font-size:13px;color:var(--fg-color,#ddd)}
.hubloader-tabs{display:flex;gap:4px}.hubloader-tab{flex:1;padding:4px;background:var(--comfy-input-bg,#222);color:inherit;border:1px solid var(--border-color,#444);border-radius:4px;cursor:pointer}
.hubloader-tab.active{border-color:var(--p-primary-color,#4a8)}
.hubloader-form{display:flex;flex-direction:column;gap:6px}.hubloader-row{display:flex;gap:6px;align-items:center;flex-wrap:wrap}
.hubloader-input,.hubloader-select{flex:1;min-width:0;padding:4px;background:var(--comfy-input-bg,#222);color:inherit;border:1px solid var(--border-color,#444);border-radius:4px}
.hubloader-btn{padding:4px 10px;border-radius:4px;border:1px solid var(--border-color,#444);background:var(--comfy-menu-bg,#333);color:inherit;cursor:pointer}
.hubloader-results,.hubloader-queue{display:flex;flex-direction:column;gap:6px;margin-top:6px}
.hubloader-card{display:flex;gap:8px;padding:6px;border:1px solid var(--border-color,#444);border-radius:6px}
.hubloader-preview{width:64px;height:64px;object-fit:cover;border-radius:4px}.hubloader-card-body{display:flex;flex-direction:column;gap:3px;min-width:0}
.hubloader-title{font-weight:600;overflow-wrap:anywhere}.hubloader-muted{opacity:.7;font-size:12px}.hubloader-warn{color:#e88;font-size:12px}
.hubloader-words{display:flex;flex-wrap:wrap;gap:3px}.hubloader-chip{padding:1px 6px;border-radius:10px;background:#3a4a5a;cursor:copy;font-size:11px}
.hubloader-card-progress{width:100%}.hubloader-card[data-state=done]{border-color:#4a8}.hubloader-card[data-state=failed]{border-color:#a44}
.hubloader-job{padding:6px;border:1px solid var(--border-color,#444);border-radius:6px}.hubloader-job progress{width:100%}
.hubloader-dialog{position:fixed;inset:10% 20%;z-index:10000;background:var(--comfy-menu-bg,#222);color:var(--fg-color,#ddd);border:1px solid #555;border-radius:8px;padding:16px;overflow:auto;font-size:13px}
.hubloader-dialog table{width:100%;border-collapse:collapse}.hubloader-dialog td{padding:3px 6px;border-bottom:1px solid #444}`));
}

// ------------------------------------------------------------------------------------- loader nodes
async function nodeInputs() {
  if (!state.nodeInputs) state.nodeInputs = call("/nodes").catch(() => ({}));
  return state.nodeInputs;
}

// Writes properties.models (ComfyUI's missing-models format: name, url, directory, hash) so a saved or shared
// workflow says where to fetch the file, and shows the file's state and trigger words on the node. With a
// `source`, the entry is the file it names, as it will be placed; without, the local file's known origin.
async function describeNode(node, spec) {
  const source = node.widgets?.find((w) => w.name === "source")?.value;
  if (typeof source === "string" && source.trim()) return describeSource(node, spec, source.trim());
  node.hubloaderSource = null;
  const widget = node.widgets?.find((w) => w.name === spec.input);
  if (!widget || typeof widget.value !== "string" || !widget.value) return;
  let info;
  try { info = await call(`/model?kind=${encodeURIComponent(spec.kind)}&name=${encodeURIComponent(widget.value)}`); } catch { return; }
  const words = info.trigger_words || [];
  node.hubloaderBadge = info.exists ? (words.length ? `✓ ${words.join(", ")}` : "✓ on disk") : "⬇ will download";
  if (info.exists && info.url) {
    const entry = { name: widget.value, url: info.url, directory: spec.kind };
    if (info.sha256) Object.assign(entry, { hash: info.sha256, hash_type: "SHA256" });
    writeModels(node, entry);
  }
  node.setDirtyCanvas?.(true, true);
}

// The server names the file the source will become (after the same-name rule) before anything runs; the
// combo takes that name too, since ComfyUI keeps only the properties.models entries a widget names.
async function describeSource(node, spec, source) {
  if (node.hubloaderSource === source) return;  // already written for this source
  node.hubloaderSource = source;
  let body;
  try { body = await call(`/source?kind=${encodeURIComponent(spec.kind)}&source=${encodeURIComponent(source)}`); } catch (e) {
    if (node.hubloaderSource === source) { node.hubloaderSource = null; node.hubloaderBadge = `⚠ ${e.message}`; node.setDirtyCanvas?.(true, true); }
    return;
  }
  if (node.hubloaderSource !== source) return;  // the source changed while we asked
  const entry = body.model;
  const combo = node.widgets?.find((w) => w.name === spec.input);
  if (combo) combo.value = entry.name;
  writeModels(node, entry);
  node.hubloaderBadge = body.exists ? `✓ ${entry.name}` : `⬇ ${entry.name} on first run`;
  node.setDirtyCanvas?.(true, true);
}

function writeModels(node, entry) {
  node.properties = node.properties || {};
  node.properties.models = [entry];
  // The workflow is saved from the change tracker's last state: let it see the change now, not at the next click.
  try { app.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.(); } catch (e) { console.warn("[hubloader]", e); }
}

function patchNodeType(nodeType, spec) {
  const onDrawForeground = nodeType.prototype.onDrawForeground;
  nodeType.prototype.onDrawForeground = function (ctx) {
    const r = onDrawForeground?.apply(this, arguments);
    if (this.hubloaderBadge && !this.flags?.collapsed) {
      ctx.save();
      ctx.font = "11px sans-serif";
      ctx.fillStyle = this.hubloaderBadge.startsWith("⬇") ? "#e8b04a" : "#7c7";
      const text = this.hubloaderBadge.length > 60 ? `${this.hubloaderBadge.slice(0, 57)}…` : this.hubloaderBadge;
      ctx.fillText(text, 6, this.size[1] + 14);
      ctx.restore();
    }
    return r;
  };
  const onWidgetChanged = nodeType.prototype.onWidgetChanged;
  nodeType.prototype.onWidgetChanged = function (name) {
    const r = onWidgetChanged?.apply(this, arguments);
    if (name === spec.input || name === "source") describeNode(this, spec);
    return r;
  };
}

// ---------------------------------------------------------------------------- missing-models dialog
async function checkMissing(workflow) {
  if (!workflow?.nodes?.length) return;
  let report;
  try { report = await post("/missing?resolve=1", { workflow }); } catch (e) { return console.warn("[hubloader] missing check failed", e); }
  const missing = report.items.filter((i) => !["found", "found_elsewhere", "found_by_hash", "fetched"].includes(i.status));
  const elsewhere = report.items.filter((i) => i.status === "found_elsewhere" && i.use_as);
  for (const item of elsewhere) rewriteWidgets(item);
  if (missing.length) showMissingDialog(workflow, missing, report.confirm || []);
}

function rewriteWidgets(item) {
  const ref = item.reference;
  for (const node of app.graph?._nodes || []) {
    for (const w of node.widgets || []) if (w.value === ref.name) w.value = item.use_as;
  }
}

// Hosts outside HuggingFace/CivitAI: unticked boxes, one per host whose files publish a SHA256; the server takes
// confirm_hosts only from this machine (SECURITY.md). Files without a SHA256 there are never fetched.
function hostBoxes(confirm) {
  const byHost = new Map();
  for (const q of confirm) if (q.confirmable) byHost.set(q.host, [...(byHost.get(q.host) || []), q.name]);
  return [...byHost].map(([host, names]) => {
    const box = h("input", { type: "checkbox", value: host });
    return { box, row: h("label", { class: "hubloader-row" }, box, ` Also download ${names.join(", ")} from ${host} (not HuggingFace or CivitAI; SHA256 checked)`) };
  });
}

function showMissingDialog(workflow, missing, confirm = []) {
  injectStyle();
  document.querySelector(".hubloader-dialog")?.remove();
  const resolvable = missing.filter((i) => i.status === "resolved");
  const rows = missing.map((i) => {
    const c = i.candidates?.[0];
    return h("tr", {}, h("td", {}, i.reference.name), h("td", {}, i.reference.kind || c?.kind || "?"),
      h("td", {}, size(i.size_bytes || c?.size_bytes)), h("td", {}, c ? `${c.source}` : "—"),
      h("td", { class: i.status === "resolved" ? "" : "hubloader-warn" }, i.status === "resolved" ? i.reason : i.reason || i.status));
  });
  const hosts = hostBoxes(confirm);
  const planned = h("div", { class: "hubloader-plan" }, "Planning: sizes, destinations, what each needs…");
  showPlan(workflow, rows, missing, planned);
  const fetchAll = h("button", { class: "hubloader-btn" }, `Download ${resolvable.length} into ComfyUI/models`);
  fetchAll.disabled = !resolvable.length;
  fetchAll.addEventListener("click", async () => {
    fetchAll.disabled = true;
    try {
      const confirmHosts = hosts.filter((x) => x.box.checked).map((x) => x.box.value);
      const body = await post("/missing/fetch", confirmHosts.length ? { workflow, confirm_hosts: confirmHosts } : { workflow });
      body.downloads.forEach(onJob);
      watchJobs();
      toast("info", `Downloading ${body.downloads.length} model(s)`, "Progress in the Model Hub sidebar → Queue");
      dialog.remove();
    } catch (e) { toast("error", "Cannot fetch", e.message); fetchAll.disabled = false; }
  });
  const dialog = h("div", { class: "hubloader-dialog", role: "dialog" },
    h("h3", {}, `Hubloader: ${missing.length} model(s) missing`),
    h("table", {}, h("tr", {}, ["File", "Folder", "Size", "Source", "Why", "Goes to / needs"].map((t) => h("th", { style: { textAlign: "left" } }, t))), rows),
    planned,
    ...hosts.map((x) => x.row),
    h("div", { class: "hubloader-row", style: { marginTop: "12px" } }, fetchAll, h("button", { class: "hubloader-btn", onclick: () => dialog.remove() }, "Close")));
  document.body.append(dialog);
}

// The install plan (POST /plan, read-only: nothing is fetched): where each file will land, what it needs (a
// token, a licence to accept, early access…), and the totals against the destination's free space.
async function showPlan(workflow, rows, missing, box) {
  let plan;
  try { plan = await post("/plan", { workflow }); } catch (e) { box.textContent = `No plan: ${e.message}`; return; }
  const byName = new Map(plan.models.map((m) => [m.name, m]));
  missing.forEach((item, i) => {
    const m = byName.get(item.reference.name);
    if (!m) return;
    const needs = (m.needs || []).filter((n) => !n.met).map((n) => h("div", { class: "hubloader-warn" }, n.detail, n.url ? h("a", { href: n.url, target: "_blank", rel: "noopener" }, " (page)") : ""));
    rows[i].append(h("td", {}, m.destination || m.path || "—", ...needs));
  });
  const t = plan.totals;
  const disks = (t.filesystems || []).map((fs) => `${size(fs.bytes_to_fetch)} to fetch on ${fs.path}, ${size(fs.free)} free: ${fs.fits ? "fits" : "DOES NOT FIT"}`);
  const eta = t.seconds_estimate ? `, about ${Math.ceil(t.seconds_estimate / 60)} min at the speed of the last downloads` : "";
  box.replaceChildren(
    h("div", {}, `${t.files_to_fetch} to fetch (${size(t.bytes_to_fetch)})${eta}; ${t.files_reused} reused from disk; ${t.blocked} cannot be fetched now.`),
    ...disks.map((d) => h("div", {}, d)),
    ...plan.models.filter((m) => !m.can_fetch && m.why_not).map((m) => h("div", { class: "hubloader-warn" }, `${m.name}: ${m.why_not}`)));
}

// ------------------------------------------------------------------------------------- registration
app.registerExtension({
  name: EXT,
  settings: [
    { id: "Hubloader.CheckMissingModels", name: "Check for missing models when a workflow loads", type: "boolean", defaultValue: true, category: ["Hubloader", "Workflows", "Missing models"] },
    // Read by the server (nodes/verify.py) from the default user's comfy.settings.json before each prompt.
    { id: "Hubloader.VerifyModelsBeforePrompt", name: "Verify models before a prompt runs (files against the SHA256 the workflow pins)", type: "boolean", defaultValue: false, category: ["Hubloader", "Workflows", "Verify models"] },
  ],
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith("Hubloader")) return;
    const spec = (await nodeInputs())[nodeData.name];
    if (spec) patchNodeType(nodeType, spec);
  },
  async nodeCreated(node) {
    const spec = (await nodeInputs())[node.comfyClass || node.type];
    if (spec) describeNode(node, spec);
  },
  async loadedGraphNode(node) {
    const spec = (await nodeInputs())[node.comfyClass || node.type];
    if (spec) describeNode(node, spec);
  },
  async afterConfigureGraph() {
    const enabled = app.extensionManager?.setting?.get?.("Hubloader.CheckMissingModels");
    if (enabled === false) return;
    try { await checkMissing(app.graph?.serialize?.()); } catch (e) { console.warn("[hubloader]", e); }
  },
  async setup() {
    listen();
    const manager = app.extensionManager;
    if (typeof manager?.registerSidebarTab === "function") {
      manager.registerSidebarTab({ id: "hubloader-model-hub", icon: "pi pi-cloud-download", title: "Model Hub", tooltip: "Hubloader: search and download models", type: "custom", render: renderSidebar });
    } else {
      console.warn("[hubloader] this ComfyUI frontend has no sidebar API; the Model Hub tab is unavailable");
    }
  },
});
