"""Candidates: turning what a source or our registry says about a model into a ranked :class:`Candidate`."""

from __future__ import annotations

import itertools
import re

from hubloader.core.errors import InvalidReference
from hubloader.core.folders import kind_of
from hubloader.core.metadata import ModelMetadata, ModelType
from hubloader.sources.references import HUGGINGFACE, parse_url
from hubloader.workflows.finding import ModelReference, name_matches
from hubloader.workflows.report import Candidate


def hash_agrees(meta: ModelMetadata, ref: ModelReference) -> bool:
    """The model has one of the hashes the reference gives (a SHA256 or AutoV2 as a prefix of its SHA256)."""
    sha = (meta.sha256 or "").lower()
    known = {k: v.lower() for k, v in (meta.hashes or {}).items()}
    for name, digest in ref.hashes.items():
        if name in known and known[name] == digest:
            return True
        if name in ("SHA256", "AutoV2") and sha and sha.startswith(digest):
            return True
    return False


def _stated_kind(model_type: ModelType | None) -> str:
    """The folder kind a source states for a model; "" when it states none (no type, or "other")."""
    return kind_of(model_type) if model_type not in (None, ModelType.OTHER) else ""


def from_metadata(
    meta: ModelMetadata, ref: ModelReference, evidence: str, confidence: float, digest: str = ""
) -> Candidate:
    """The file of a CivitAI/registry model version that the reference means (by hash, then name, then primary)."""
    files = list(meta.files)
    chosen = None
    if digest:
        chosen = next((f for f in files if digest in {h.lower() for h in [f.sha256, *f.hashes.values()] if h}), None)
    chosen = chosen or next((f for f in files if name_matches(ref.file_name, f.name)), None)
    chosen = chosen or next((f for f in files if f.primary), None) or (files[0] if files else None)
    if chosen is None:
        if not meta.remote_url:
            raise InvalidReference(f"{meta.name!r} ({meta.model_id}) has no downloadable file.")
        return Candidate(
            meta.remote_url, ref.file_name, meta.source.value, confidence, evidence, meta.size_bytes,
            meta.sha256.lower(), meta.air, _stated_kind(meta.type), f"{meta.name} ({meta.model_id})",
        )  # fmt: skip
    sha = (chosen.sha256 or chosen.hashes.get("SHA256", "")).lower()
    return Candidate(
        chosen.url or meta.remote_url, chosen.name, meta.source.value, confidence, evidence, chosen.size_bytes,
        sha, meta.air, _stated_kind(meta.type), f"{meta.name} ({meta.model_id})",
    )  # fmt: skip


def search_queries(stem: str) -> list[str]:
    """The file stem, then its words before a version tag: CivitAI names files ``modelName_versionName``
    (``juggernautXL_v9Rundiffusion`` → "juggernaut XL") and its search matches model names, not file names."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])|[\s_.-]+", " ", stem).split()
    version = re.compile(r"v\d.*|fp\d+|bf16|pruned|ema(only)?", re.IGNORECASE)
    head = list(itertools.takewhile(lambda w: not version.fullmatch(w), words))
    query = " ".join(head or words)
    return [stem] if query.lower() == stem.lower() else [stem, query]


def weigh_by_short_hash(ref: ModelReference, found: list[Candidate], reasons: list[str]) -> list[Candidate]:
    """A name match whose SHA256 starts with the workflow's SHA256 (or AutoV2, its prefix) is that file: confidence
    rises; one whose SHA256 does not is another file: dropped, with the reason."""
    prefixes = {name: digest for name, digest in ref.hashes.items() if name in ("SHA256", "AutoV2")}
    if not prefixes:
        return found
    kept = []
    for candidate in found:
        if not candidate.sha256:
            kept.append(candidate)
            continue
        wrong = [f"{name} {digest}" for name, digest in prefixes.items() if not candidate.sha256.startswith(digest)]
        if wrong:
            reasons.append(f"{candidate.evidence}, but its SHA256 {candidate.sha256[:12]}… is not the {wrong[0]} given")
            continue
        given = ", ".join(f"{name} {digest}" for name, digest in prefixes.items())
        candidate.confidence, candidate.evidence = 0.9, f"{candidate.evidence}, and its SHA256 agrees with {given}"
        kept.append(candidate)
    return kept


def names_a_file(url: str) -> bool:
    """A URL that downloads one file: not a HuggingFace repository page (what a cached repo's record keeps)."""
    if not url:
        return False
    try:
        parsed = parse_url(url)
    except InvalidReference:
        return True  # a plain download URL
    return parsed.kind != HUGGINGFACE or bool(parsed.filename)
