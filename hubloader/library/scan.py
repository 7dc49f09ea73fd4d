"""Library scan: find every model file under some folders and say what each one is.

The scan reads headers only (8 + N bytes of a safetensors file, the opcode stream of a pickle's
name table never); hashing is a separate step (``hash_models``) a caller runs in the background,
because a user's library can be hundreds of GB. Incremental: give the (size, mtime_ns) the registry
already has for each path and unchanged files are not opened at all.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubloader.core.errors import HubloaderError, UnsafeFile
from hubloader.core.metadata import MODEL_EXTENSIONS, ModelFormat, ModelMetadata, ModelType, Source
from hubloader.core.triggers import resolve_usage
from hubloader.engine.hashing import FileHashes, hash_file
from hubloader.library.inspection import FileInspection, base_from_metadata, base_from_name, inspect_file, refine_base
from hubloader.library.sidecars import Sidecars, read_sidecars

log = logging.getLogger(__name__)

Signature = tuple[int, int]  # (size, mtime_ns)
_HUGE_METADATA_VALUE = 64 * 1024  # thumbnails / cover images: recorded as dropped, not copied


@dataclass
class ScanReport:
    """What a scan found. ``models`` holds only files read this time (new or changed)."""

    models: list[ModelMetadata] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)  # known and same (size, mtime_ns): not opened
    removed: list[Path] = field(default_factory=list)  # known under a scanned root, gone from disk
    errors: list[tuple[Path, str]] = field(default_factory=list)  # corrupt/hostile files (also in models)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)  # sha256 → paths, when hashes are known

    @property
    def seen(self) -> int:
        return len(self.models) + len(self.unchanged)


def iter_model_files(
    roots: Iterable[str | Path], extensions: Iterable[str] = MODEL_EXTENSIONS
) -> Iterator[tuple[os.DirEntry[str], frozenset[str]]]:
    """Every model file under ``roots`` (recursively, following folder symlinks once), with the
    names in its folder so sidecars can be found without a stat each. Hidden folders are skipped."""
    suffixes = tuple(e.lower() for e in extensions)
    visited: set[str] = set()
    stack = [str(Path(r).expanduser()) for r in roots]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in visited:
            continue
        visited.add(real)
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            log.warning("Cannot list %s: %s", folder, exc)
            continue
        names = frozenset(e.name for e in entries)
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.name.lower().endswith(suffixes) and entry.is_file():
                    yield entry, names
            except OSError:
                continue


def scan_paths(
    roots: Iterable[str | Path],
    *,
    known: Mapping[str, Signature] | None = None,
    known_hashes: Mapping[str, str] | None = None,
    scan_pickles: bool = False,
    extensions: Iterable[str] = MODEL_EXTENSIONS,
) -> ScanReport:
    """Scan ``roots`` for model files and describe the new or changed ones.

    ``known`` maps absolute path strings to the (size, mtime_ns) recorded last time; those files are
    skipped when unchanged. ``known_hashes`` (path → sha256, e.g. from the registry's hash cache) is
    used with the scan's own results to report duplicates. ``scan_pickles`` runs picklescan on
    ``.ckpt/.pt/.bin`` files (they are flagged either way, never loaded).
    """
    roots = [Path(r).expanduser().absolute() for r in roots]
    known = {str(k): (v[0], v[1]) for k, v in (known or {}).items()}
    report = ScanReport()
    present: set[str] = set()
    for entry, names in iter_model_files(roots, extensions):
        path = Path(os.path.abspath(entry.path))
        stat = entry.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        present.add(str(path))
        if known.get(str(path)) == signature:
            report.unchanged.append(path)
            continue
        meta = describe_file(path, names=names, scan_pickles=scan_pickles, signature=signature)
        if "error" in meta.extra:
            report.errors.append((path, meta.extra["error"]))
        report.models.append(meta)
    report.removed = [
        Path(p) for p in known if p not in present and any(Path(p).is_relative_to(root) for root in roots)
    ]
    hashes = dict(known_hashes or {})
    hashes.update({str(m.local_path): m.sha256 for m in report.models if m.sha256})
    report.duplicates = find_duplicates(hashes)
    return report


def find_duplicates(hashes: Mapping[str, str]) -> dict[str, list[Path]]:
    """Same SHA256 at two or more paths (path → sha256 in, sha256 → sorted paths out)."""
    by_hash: dict[str, list[Path]] = {}
    for path, sha in hashes.items():
        if sha:
            by_hash.setdefault(sha.lower(), []).append(Path(path))
    return {sha: sorted(paths) for sha, paths in by_hash.items() if len(paths) > 1}


def describe_file(
    path: str | Path,
    *,
    names: Iterable[str] | None = None,
    scan_pickles: bool = False,
    signature: Signature | None = None,
    source: ModelMetadata | None = None,
) -> ModelMetadata:
    """A ModelMetadata for one local file from its header and its sidecars.

    ``source`` (e.g. the CivitAI metadata of a file just downloaded) is merged in: its name, ids,
    stats and description are kept; kind/base are checked against the tensors; triggers and weight
    follow the precedence of :mod:`hubloader.core.triggers`. A corrupt or hostile file still gives an
    entry, of type OTHER with ``extra["error"]`` (and ``extra["unsafe"]`` when hostile).
    """
    path = Path(path).absolute()
    if signature is None:
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
    meta = _base_metadata(path, source)
    meta.size_bytes = signature[0]
    meta.local_path = path
    meta.extra.update(size=signature[0], mtime_ns=signature[1])
    listing = frozenset(names) if names is not None else None
    sidecars = read_sidecars(path, listing) if listing is None or _may_have_sidecars(path.name, listing) else Sidecars()
    try:
        inspection = inspect_file(path, scan_pickles=scan_pickles)
    except HubloaderError as exc:
        meta.extra.update(error=str(exc), unsafe=isinstance(exc, UnsafeFile))
        meta.format = ModelFormat.from_filename(path.name)
        return meta
    except OSError as exc:
        meta.extra["error"] = f"{path.name} could not be read: {exc.strerror or exc}."
        return meta
    _apply_inspection(meta, inspection, sidecars, source)
    return meta


def _may_have_sidecars(name: str, listing: frozenset[str]) -> bool:
    """Whether another name in the folder starts with the file's stem and a dot, as every sidecar's does
    (``x.json``, ``x.preview.png``, ``x.civitai.info`` beside ``x.safetensors``). Most files of a library have
    none, and looking for each kind one by one was the costliest part of a scan after the header."""
    return _dotted_prefixes(listing).get(name.rpartition(".")[0] + ".", 0) > 1


#: The last folder listing's prefix counts: a scan describes a folder's files one after the other. The listing
#: itself is held, so its id cannot be reused while it is cached; the pair is replaced whole (thread-safe).
_prefix_cache: tuple[frozenset[str], dict[str, int]] = (frozenset(), {})


def _dotted_prefixes(listing: frozenset[str]) -> dict[str, int]:
    """How many names of ``listing`` start with each of their own prefixes ending in a dot."""
    global _prefix_cache
    cached = _prefix_cache
    if cached[0] is not listing:
        counts: dict[str, int] = {}
        for other in listing:
            at = other.find(".")
            while at >= 0:
                prefix = other[: at + 1]
                counts[prefix] = counts.get(prefix, 0) + 1
                at = other.find(".", at + 1)
        cached = _prefix_cache = (listing, counts)
    return cached[1]


def _base_metadata(path: Path, source: ModelMetadata | None) -> ModelMetadata:
    if source is not None:
        meta = ModelMetadata.from_dict(source.to_dict())
        meta.extra = dict(source.extra)
        return meta
    return ModelMetadata(model_id=f"local:{path}", name=path.stem, source=Source.LOCAL)


def _apply_inspection(
    meta: ModelMetadata, inspection: FileInspection, sidecars: Sidecars, source: ModelMetadata | None
) -> None:
    detection, header = inspection.detection, inspection.metadata
    meta.format = inspection.format
    if detection.kind is not ModelType.OTHER:
        # A LyCORIS file is a LoRA to a source that files it under LORA/LoCon; keep the finer word.
        if source is None or source.type in (ModelType.OTHER, ModelType.LORA, ModelType.LYCORIS):
            meta.type = detection.kind
    civitai = sidecars.civitai_version()
    claims = [(source.base_model, str(source.source))] if source else []
    claims += [*sidecars.base_claims(), base_from_metadata(header)]
    base, base_source = refine_base(detection.base, *claims, fallback=(base_from_name(meta.name), "file name"))
    meta.base_model = base
    usage = resolve_usage(
        header=header,
        a1111=sidecars.a1111_by_user(),
        civitai=civitai,
        lora_manager=sidecars.lora_manager,
        recorded=sidecars.recorded_metadata(),
        user_triggers=None,
    )
    if usage.triggers and (not meta.trigger_words or usage.triggers.source in ("user", "sidecar")):
        meta.trigger_words = list(usage.triggers.value)
        meta.trigger_words_source = usage.triggers.source
    if usage.weight and (meta.recommended_weight is None or usage.weight.source in ("user", "sidecar")):
        meta.recommended_weight = usage.weight.value
        meta.recommended_weight_source = usage.weight.source
    meta.training_tags = usage.training_tags or meta.training_tags
    if civitai and source is None:
        _adopt_civitai_ids(meta, civitai)
    if not meta.description and sidecars.a1111:
        meta.description = str(sidecars.a1111.get("description") or "")
    meta.extra.update(
        kind_evidence=detection.evidence,
        kind_confidence=detection.confidence,
        base_source=base_source,
        details=detection.details,
        pickle=inspection.is_pickle,
    )
    if inspection.pickle_scan is not None:
        scan = inspection.pickle_scan
        meta.extra["pickle_scan"] = {"safe": scan.safe, "dangerous": scan.dangerous, "imports": scan.imports}
    if inspection.header is not None:
        meta.extra["header_metadata"] = _storable(header)
        meta.extra["tensor_count"] = len(inspection.header.tensors)
        meta.extra["dtypes"] = sorted(inspection.header.dtypes)
    if sidecars.preview is not None:
        meta.extra["preview_path"] = str(sidecars.preview)
    if sidecars.a1111 and sidecars.a1111.get("negative text"):
        meta.extra["negative_text"] = sidecars.a1111["negative text"]


def _adopt_civitai_ids(meta: ModelMetadata, version: Mapping[str, Any]) -> None:
    """A file a Civitai Helper user already matched: keep the ids so lookups by version work."""
    meta.version_id = str(version.get("id") or meta.version_id)
    meta.air = str(version.get("air") or meta.air)
    meta.extra["civitai_model_id"] = version.get("modelId")
    model = found_model if isinstance(found_model := version.get("model"), dict) else {}
    if model.get("name"):
        meta.extra["civitai_name"] = model["name"]


def _storable(metadata: Mapping[str, str]) -> dict[str, str]:
    """Header metadata verbatim, minus embedded images (MBs of base64 in ``modelspec.thumbnail``/``ssmd_cover_images``)."""
    kept = {k: v for k, v in metadata.items() if len(v) <= _HUGE_METADATA_VALUE}
    dropped = sorted(set(metadata) - set(kept))
    if dropped:
        kept["__dropped__"] = ",".join(dropped)
    return kept


def hash_models(
    paths: Iterable[str | Path],
    *,
    known: Mapping[str, tuple[int, int, Mapping[str, str]]] | None = None,
    progress: Callable[[Path, int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[Path, Signature, FileHashes | None]]:
    """Hash files one after the other, for a background thread. Yields ``(path, (size, mtime_ns), hashes)``;
    hashes is None when ``known`` already holds hashes for that exact (size, mtime_ns), so a file is
    never hashed twice. ``progress(path, done, total)``; ``cancel`` stops between chunks."""
    known = {str(k): v for k, v in (known or {}).items()}
    for path in map(Path, paths):
        try:
            stat = path.stat()
        except OSError:
            continue
        signature = (stat.st_size, stat.st_mtime_ns)
        cached = known.get(str(path))
        if cached is not None and tuple(cached[:2]) == signature and cached[2]:
            yield path, signature, None
            continue
        report = (lambda done, total, p=path: progress(p, done, total)) if progress else None
        yield path, signature, hash_file(path, progress=report, cancel=cancel)


def apply_hashes(meta: ModelMetadata, hashes: FileHashes) -> ModelMetadata:
    """Record ``hashes`` on a ModelMetadata (sha256 + CivitAI-named hashes)."""
    meta.sha256 = hashes.sha256
    meta.hashes.update(hashes.civitai())
    return meta
