"""Errors state facts, faces give advice: each face names its own way to fix an error, and only that.

The hub layer's errors say what happened and what is needed (whose token, which disk); the command line,
the ComfyUI sidebar and the Gradio app (alone or as the A1111 tab) each phrase the action in their terms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hubloader.core.errors import (
    CIVITAI,
    HUGGINGFACE,
    AuthRequired,
    DiskFull,
    EarlyAccess,
    GatedModel,
    HubloaderError,
    NotFound,
    PickleNotAllowed,
)
from hubloader.faces.advice import CLI, COMFYUI, GRADIO, Face, advice, explain

LAYER = Path(__file__).resolve().parents[1] / "hubloader"
HF_WORDS = ("HF_TOKEN", "hubloader login hf", "hf auth", "HuggingFace")
CIVITAI_WORDS = ("CIVITAI_API_TOKEN", "hubloader login civitai", "CivitAI")


def test_a_missing_civitai_token_is_advised_per_face_without_naming_huggingface():
    error = AuthRequired("civitai:42: CivitAI answered with a login page (HTTP 401), not the file.", service=CIVITAI)
    assert not any(word in str(error) for word in ("hubloader login", "CIVITAI_API_TOKEN", "Settings"))
    cli = explain(error, CLI)
    assert "`hubloader login civitai`" in cli and "CIVITAI_API_TOKEN" in cli
    assert "Set the CivitAI token in the Model Hub sidebar → Settings." in explain(error, COMFYUI)
    assert "Set the CivitAI token in the Model Hub tab → Settings." in explain(error, GRADIO)
    for face in Face:
        assert not any(word in advice(error, face) for word in HF_WORDS), face


def test_a_gated_repo_names_its_page_and_each_face_the_huggingface_token_only():
    error = GatedModel("corp/gated", endpoint="https://huggingface.co")
    assert error.service == HUGGINGFACE and "https://huggingface.co/corp/gated" in str(error)
    assert "hubloader" not in str(error) and "HF_TOKEN" not in str(error)
    cli = explain(error, CLI)
    assert "`hubloader login hf`" in cli and "HF_TOKEN" in cli
    assert "Set the HuggingFace token in the Model Hub sidebar → Settings." in explain(error, COMFYUI)
    for face in Face:
        assert not any(word in advice(error, face) for word in CIVITAI_WORDS), face


def test_a_full_disk_says_where_and_how_much_and_the_cli_offers_cleanup(tmp_path: Path):
    error = DiskFull(f"Not enough free space in {tmp_path}.", where=tmp_path, needed=5_000, free=1_000)
    assert (error.where, error.needed, error.free) == (tmp_path, 5_000, 1_000)
    assert "hubloader" not in str(error)
    assert "`hubloader cache cleanup`" in explain(error, CLI)
    assert "Library" in explain(error, GRADIO) and "hubloader" not in explain(error, GRADIO)


@pytest.mark.parametrize(
    ("error", "face", "expected"),
    [
        (PickleNotAllowed("model.ckpt is a pickle."), CLI, "--allow-pickle"),
        (PickleNotAllowed("model.ckpt is a pickle."), COMFYUI, ""),
        (EarlyAccess("Version 7 is in early access."), CLI, ""),
        (NotFound("No model 'x'."), GRADIO, ""),
    ],
)
def test_advice_only_where_a_face_has_an_action(error: HubloaderError, face: Face, expected: str):
    assert (expected in advice(error, face)) if expected else advice(error, face) == ""
    assert explain(error, face).startswith(str(error))


def _hint_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string a raise or a ``hint`` (keyword or class attribute) puts into an error's message."""
    nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            nodes.append(node.exc)
        elif isinstance(node, ast.keyword) and node.arg == "hint":
            nodes.append(node.value)
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "hint" for t in node.targets):
            nodes.append(node.value)
    return [
        (const.lineno, const.value)
        for root in nodes
        for const in ast.walk(root)
        if isinstance(const, ast.Constant) and isinstance(const.value, str)
    ]


def test_the_hub_layer_never_tells_the_user_to_run_a_command():
    offenders = [
        f"{path.relative_to(LAYER)}:{line}: {text}"
        for path in sorted(LAYER.rglob("*.py"))
        if "faces" not in path.relative_to(LAYER).parts
        for line, text in _hint_texts(ast.parse(path.read_text(encoding="utf-8")))
        if "hubloader " in text or "hf auth" in text or "--allow-pickle" in text
    ]
    assert offenders == []
