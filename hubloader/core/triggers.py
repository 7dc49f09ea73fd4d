"""Trigger words and a recommended weight, each with the place it came from.

Sources, best first (an explicit human statement beats a guess; a guess is never invented):

* triggers: the user > A1111 sidecar "activation text" > the record Hubloader froze at download >
  CivitAI ``trainedWords`` > ``modelspec.trigger_phrase`` > kohya ``ss_trigger_words`` > ``ssmd_keywords``
  (additional-networks editor).
  ``ss_tag_frequency`` tops are *training tags*, offered separately and never mixed in.
* weight (civitai.md §7): the user > sidecar "preferred weight" (0 means unset) > the frozen record > CivitAI
  ``settings.strength`` > ``modelspec.usage_hint`` > a strength stated in the CivitAI description >
  the median weight of the version's example images > unknown (None).

An A1111 sidecar value still equal to what Hubloader wrote there is not the user's: the caller leaves it
out (``Sidecars.a1111_by_user``) and the frozen record says where it really came from.
"""

from __future__ import annotations

import html
import json
import re
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sourced:
    """A value and where it came from. ``source`` is one of the ModelMetadata provenance words
    ("user", "sidecar", "civitai", "modelspec", "kohya", "civitai.settings", "civitai.description",
    "civitai.images"); ``field`` names the exact key it was read from."""

    value: Any
    source: str
    field: str = ""


def split_words(text: str) -> list[str]:
    """``"a, b ,, a"`` → ``["a", "b"]``: comma-separated phrases, trimmed, de-duplicated in order."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))


def _words(value: Any) -> list[str]:
    """A list, a JSON list in a string, or comma-separated text → phrases."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if isinstance(value, (list, tuple)):
        return list(dict.fromkeys(w for item in value if isinstance(item, str) for w in split_words(item)))
    if isinstance(value, str) and value.strip() not in ("", "None"):
        return split_words(value)
    return []


# --- triggers ----------------------------------------------------------------------------------

_HEADER_TRIGGER_KEYS = (
    ("modelspec.trigger_phrase", "modelspec"),
    ("ss_trigger_words", "kohya"),
    ("ssmd_keywords", "kohya"),
)


def triggers_from_header(metadata: Mapping[str, str]) -> Sourced | None:
    for key, source in _HEADER_TRIGGER_KEYS:
        words = _words(metadata.get(key))
        if words:
            return Sourced(words, source, key)
    return None


def triggers_from_a1111(sidecar: Mapping[str, Any] | None) -> Sourced | None:
    words = _words((sidecar or {}).get("activation text"))
    return Sourced(words, "sidecar", "activation text") if words else None


def triggers_from_civitai(version: Mapping[str, Any] | None) -> Sourced | None:
    words = _words((version or {}).get("trainedWords"))
    return Sourced(words, "civitai", "trainedWords") if words else None


def training_tags(metadata: Mapping[str, str], limit: int = 10) -> list[str]:
    """The most frequent ``ss_tag_frequency`` tags over all datasets (kohya stores JSON in a string)."""
    try:
        datasets = json.loads(metadata.get("ss_tag_frequency") or "{}")
    except ValueError:
        return []
    counts: Counter[str] = Counter()
    for tags in datasets.values() if isinstance(datasets, dict) else ():
        if isinstance(tags, dict):
            for tag, count in tags.items():
                if isinstance(count, (int, float)) and tag.strip():
                    counts[tag.strip()] += int(count)
    return [tag for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


# --- weight ------------------------------------------------------------------------------------

_WEIGHT_TEXT = re.compile(
    r"(?<!denoising )(?<!denoise )(?<!hires )\b(?:weight|strength)s?\s*(?:[:=]|of|is|around|about)?\s*"
    r"(-?\d+(?:\.\d+)?)(?!\s*(?:steps|%|px))",
    re.IGNORECASE,
)
_LORA_TOKEN = re.compile(r"<(?:lora|lyco):([^:>]+):\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_WEIGHT_RANGE = (-5.0, 5.0)


def _plausible(value: Any) -> float | None:
    """A usable weight or None: numbers only, 0 means unset (A1111), absurd values are ignored."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        return None
    return weight if weight and _WEIGHT_RANGE[0] <= weight <= _WEIGHT_RANGE[1] else None


def weight_in_text(text: str) -> float | None:
    """The first "strength: 0.8" / "weight 0.7" / ``<lora:name:0.6>`` in free text (HTML allowed)."""
    plain = html.unescape(re.sub(r"<(?!lora:|lyco:)[^>]*>", " ", text or ""))
    for pattern in (_WEIGHT_TEXT, _LORA_TOKEN):
        for match in pattern.finditer(plain):
            weight = _plausible(match.group(match.lastindex or 1))
            if weight is not None:
                return weight
    return None


def weight_from_a1111(sidecar: Mapping[str, Any] | None) -> Sourced | None:
    weight = _plausible((sidecar or {}).get("preferred weight"))
    return Sourced(weight, "sidecar", "preferred weight") if weight is not None else None


def weight_from_usage_hint(metadata: Mapping[str, str]) -> Sourced | None:
    weight = weight_in_text(metadata.get("modelspec.usage_hint", ""))
    return Sourced(weight, "modelspec", "modelspec.usage_hint") if weight is not None else None


def weight_from_lora_manager(data: Mapping[str, Any] | None) -> Sourced | None:
    """LoRA Manager keeps ``usage_tips`` as JSON text: ``{"strength": 0.8, "strength_min": …}``."""
    tips = (data or {}).get("usage_tips")
    if isinstance(tips, str):
        try:
            tips = json.loads(tips or "{}")
        except ValueError:
            return None
    weight = _plausible(tips.get("strength")) if isinstance(tips, dict) else None
    return Sourced(weight, "sidecar", "usage_tips.strength") if weight is not None else None


def weights_from_civitai(version: Mapping[str, Any] | None) -> list[Sourced]:
    """CivitAI's candidates for one version, best first: settings, description, example images."""
    version = version or {}
    found: list[Sourced] = []
    settings = found_settings if isinstance(found_settings := version.get("settings"), dict) else {}
    weight = _plausible(settings.get("strength"))
    if weight is not None:
        found.append(Sourced(weight, "civitai.settings", "settings.strength"))
    weight = weight_in_text(str(version.get("description") or ""))
    if weight is not None:
        found.append(Sourced(weight, "civitai.description", "description"))
    image_weights = _example_image_weights(version)
    if image_weights:
        found.append(Sourced(round(statistics.median(image_weights), 2), "civitai.images", "images.meta"))
    return found


def _example_image_weights(version: Mapping[str, Any]) -> list[float]:
    """Weights this version was used at in its example images (resources entries and prompt tokens)."""
    version_id = version.get("id")
    file_stems = {str(f.get("name", "")).rsplit(".", 1)[0].lower() for f in version.get("files") or []}
    weights: list[float] = []
    for image in version.get("images") or []:
        meta = image.get("meta") if isinstance(image, dict) else None
        if not isinstance(meta, dict):
            continue
        for resource in meta.get("civitaiResources") or []:
            if isinstance(resource, dict) and resource.get("modelVersionId") == version_id:
                weights.append(_plausible(resource.get("weight")) or 0)
        for resource in meta.get("resources") or []:
            if isinstance(resource, dict) and str(resource.get("name", "")).lower() in file_stems:
                weights.append(_plausible(resource.get("weight")) or 0)
        for name, value in _LORA_TOKEN.findall(str(meta.get("prompt") or "")):
            if name.lower() in file_stems:
                weights.append(_plausible(value) or 0)
    return [w for w in weights if w]


# --- choosing ----------------------------------------------------------------------------------


@dataclass
class Usage:
    """What to tell the user about using a model: triggers, weight and the tags it was trained on."""

    triggers: Sourced | None = None
    weight: Sourced | None = None
    training_tags: list[str] | None = None

    @property
    def trigger_words(self) -> list[str]:
        return list(self.triggers.value) if self.triggers else []


def usage_from_record(record: Mapping[str, Any] | None) -> Usage:
    """The triggers and weight a ``ModelMetadata.to_dict()`` record states, with the provenance it recorded.

    Hubloader freezes such a record beside a download and writes the same values into the A1111 sidecar;
    reading them back from there must not turn the source's words into the user's. A value the record
    itself took from a user or a sidecar is not the source's, so it is left out.
    """
    record = record or {}

    def recorded(value: Any, source: Any, field: str) -> Sourced | None:
        source = str(source or "")
        if not value or not source or source in ("user", "sidecar"):
            return None
        return Sourced(value, source, field)

    weight = _plausible(record.get("recommended_weight"))
    return Usage(
        triggers=recorded(_words(record.get("trigger_words")), record.get("trigger_words_source"), "trigger_words"),
        weight=recorded(weight, record.get("recommended_weight_source"), "recommended_weight"),
    )


def resolve_usage(
    *,
    header: Mapping[str, str] | None = None,
    a1111: Mapping[str, Any] | None = None,
    civitai: Mapping[str, Any] | None = None,
    lora_manager: Mapping[str, Any] | None = None,
    recorded: Mapping[str, Any] | None = None,
    user_triggers: list[str] | None = None,
    user_weight: float | None = None,
) -> Usage:
    """Pick triggers and weight from every source by the precedence in this module's docstring.

    ``a1111`` should hold only what the user set (:meth:`Sidecars.a1111_by_user`); ``recorded`` is the
    metadata frozen when Hubloader wrote the rest (:func:`usage_from_record`), which keeps its provenance.
    """
    header = header or {}
    frozen = usage_from_record(recorded)
    trigger_candidates = [
        Sourced(list(user_triggers), "user") if user_triggers else None,
        triggers_from_a1111(a1111),
        frozen.triggers,
        triggers_from_civitai(civitai),
        triggers_from_civitai((lora_manager or {}).get("civitai")),
        triggers_from_header(header),
    ]
    # settings.strength outranks the usage hint; a description or an image median does not.
    civitai_weights = weights_from_civitai(civitai)
    weight_candidates = [
        Sourced(user_weight, "user") if _plausible(user_weight) is not None else None,
        weight_from_a1111(a1111),
        frozen.weight,
        weight_from_lora_manager(lora_manager),
        *[w for w in civitai_weights if w.source == "civitai.settings"],
        weight_from_usage_hint(header),
        *[w for w in civitai_weights if w.source != "civitai.settings"],
    ]
    return Usage(
        triggers=next((c for c in trigger_candidates if c), None),
        weight=next((c for c in weight_candidates if c), None),
        training_tags=training_tags(header),
    )
