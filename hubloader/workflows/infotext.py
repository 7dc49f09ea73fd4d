"""A1111/Forge "infotext": the ``parameters`` text an image carries, and the models it names.

The format (``modules/processing.py:create_infotext`` and ``modules/infotext_utils.py`` upstream)::

    a prompt <lora:name:0.8>, more prompt
    Negative prompt: ...
    Steps: 20, Sampler: Euler a, Model hash: 0123456789, Model: sdxl_base, Lora hashes: "name: 0123456789ab"

Hashes are short: ``Model hash``/``VAE hash`` are the first 10 hex of the file's SHA256 (CivitAI's
AutoV2), ``Lora hashes`` the first 12 hex of the kohya "addnet" hash (AutoV3) for safetensors, and
``TI hashes`` the first 12 hex of the file's SHA256. ``Model`` is the checkpoint's file name without
its extension.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# A1111 reads the parameters line with one regex, ``\s*(\w[\w \-/]+):\s*(value)(?:,|$)``, whose key part
# backtracks over every start inside a long run of words: quadratic. The same pairs are found in one pass:
# a maximal run of key characters followed by ":" is a key, then its value is matched where the run ends.
_KEY_RUN = re.compile(r"[\w \-/]+")
# A value is either quoted JSON-ish or runs to the next comma. A quoted scan stops at the next unescaped
# quote, at the latest the next value's opening quote (preceded by ":" or a space), so scans never overlap.
_VALUE = re.compile(r'\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_START = re.compile(r"\w")
_LORA = re.compile(r"<(lora|lyco):([^:>]+)((?::[^:>]*)*)>", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-fA-F]+$")


@dataclass
class Infotext:
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InfotextModel:
    """A model the infotext names: folder kind, name as written (maybe without extension), known hashes."""

    kind: str
    name: str
    hashes: dict[str, str] = field(default_factory=dict)
    weight: float | None = None


def parse_infotext(text: str) -> Infotext:
    """Split infotext into prompt, negative prompt and the ``Key: value`` parameters of its last line."""
    lines = text.strip().splitlines()
    params: dict[str, str] = {}
    if lines:
        found = _param_pairs(lines[-1])
        # Like A1111: the last line is the parameters line only when it holds several pairs.
        if len(found) >= 3:
            params = {key.strip(): _unquote(value.strip()) for key, value in found}
            lines = lines[:-1]
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].lstrip()
        (negative if in_negative else prompt).append(line)
    return Infotext(prompt="\n".join(prompt).strip(), negative_prompt="\n".join(negative).strip(), params=params)


def _param_pairs(line: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs A1111's parameters regex finds in ``line``, in time linear in its length."""
    pairs: list[tuple[str, str]] = []
    pos = 0
    while run := _KEY_RUN.search(line, pos):
        start = _KEY_START.search(line, run.start(), run.end())
        if start is None or run.end() - start.start() < 2 or not line.startswith(":", run.end()):
            pos = run.end() + 1
            continue
        value = _VALUE.match(line, run.end() + 1)
        if value is None:  # the pattern always matches (``[^,]*`` then end or comma); kept for the type checker
            break
        pairs.append((line[start.start() : run.end()], value.group(1)))
        pos = max(value.end(), run.end() + 1)
    return pairs


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def lora_tokens(prompt: str) -> list[tuple[str, float | None]]:
    """``<lora:name:w>`` (and ``<lyco:…>``) tokens: (name, text-encoder weight or None)."""
    tokens = []
    for _tag, name, rest in _LORA.findall(prompt):
        weight = None
        parts = [p for p in rest.split(":") if p]
        if parts and "=" not in parts[0]:
            try:
                weight = float(parts[0])
            except ValueError:
                weight = None
        tokens.append((name.strip(), weight))
    return tokens


def parse_hash_list(value: str) -> dict[str, str]:
    """``"name1: abcdef123456, name2: 0123456789ab"`` → ``{name: hash}`` (entries without a hex hash dropped)."""
    result = {}
    for item in value.split(","):
        name, sep, digest = item.rpartition(":")
        digest = digest.strip()
        if sep and name.strip() and _HEX.match(digest):
            result[name.strip()] = digest.lower()
    return result


def hash_label(digest: str, twelve: str = "AutoV3") -> str:
    """The name CivitAI gives a hex digest of this length; 12 hex is AutoV3 unless the context says otherwise
    (A1111's ``TI hashes`` are SHA256 prefixes of any length)."""
    return {8: "AutoV1", 10: "AutoV2", 12: twelve}.get(len(digest), "SHA256")


def _short_hash(digest: str, twelve: str) -> dict[str, str]:
    """A hex digest labelled by :func:`hash_label`; nothing when it is not hex."""
    digest = digest.strip().lower()
    if not _HEX.match(digest):
        return {}
    return {hash_label(digest, twelve): digest}


def infotext_models(info: Infotext) -> list[InfotextModel]:
    """Every model the infotext names: checkpoint, VAE, LoRAs (prompt tokens and hash list), embeddings."""
    params = info.params
    models: list[InfotextModel] = []
    if params.get("Model") or params.get("Model hash"):
        models.append(
            InfotextModel("checkpoints", params.get("Model", ""), _short_hash(params.get("Model hash", ""), "AutoV3"))
        )
    if params.get("VAE") or params.get("VAE hash"):
        models.append(InfotextModel("vae", params.get("VAE", ""), _short_hash(params.get("VAE hash", ""), "AutoV3")))

    lora_hashes = parse_hash_list(params.get("Lora hashes", ""))
    seen = set()
    for name, weight in lora_tokens(info.prompt):
        if name in seen:
            continue
        seen.add(name)
        # A1111 writes the hash key as the prompt name with ":" and "," removed.
        digest = lora_hashes.get(name.replace(":", "").replace(",", ""), "")
        models.append(InfotextModel("loras", name, _short_hash(digest, "AutoV3") if digest else {}, weight))
    for name, digest in lora_hashes.items():
        if name not in seen:
            models.append(InfotextModel("loras", name, _short_hash(digest, "AutoV3")))
    for name, digest in parse_hash_list(params.get("TI hashes", "")).items():
        # TI hashes are full-file SHA256 prefixes, not AutoV3.
        models.append(InfotextModel("embeddings", name, _short_hash(digest, "SHA256")))
    return models
