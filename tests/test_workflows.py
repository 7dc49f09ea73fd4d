"""Reading workflows and images, finding model references, matching them locally. No server needed."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import pytest

from hubloader.core.errors import InvalidFile
from hubloader.core.folders import ModelFolders, standalone_folders
from hubloader.workflows import (
    Candidate,
    ModelReference,
    Resolver,
    Status,
    find_references,
    read_workflow,
)
from hubloader.workflows.infotext import infotext_models, lora_tokens, parse_hash_list, parse_infotext
from tests.workflow_samples import (
    INFOTEXT,
    SUBGRAPH_ID,
    TEMPLATE,
    api_prompt,
    node,
    save_a1111_webp,
    save_comfy_webp,
    save_png,
    template,
    ui_workflow,
)


class Untouchable:
    """Stands in for a network service a purely local step must never call."""

    def __getattr__(self, name: str):
        raise AssertionError(f"local matching called {name} on a remote service")


class EmptyRegistry:
    """A registry that knows no file (the real one is exercised in test_workflows_resolve.py)."""

    def find_model(self, key: str):
        return None


def by_name(refs: list[ModelReference]) -> dict[str, ModelReference]:
    return {r.name: r for r in refs}


# --- reading ------------------------------------------------------------------------------------


def test_template_references_are_found_inside_its_subgraph():
    refs = by_name(find_references(TEMPLATE))
    assert set(refs) == {"qwen_3_4b.safetensors", "ae.safetensors", "z_image_turbo_bf16.safetensors"}
    clip = refs["qwen_3_4b.safetensors"]
    assert clip.kind == "text_encoders"
    assert clip.url == (
        "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/text_encoders/qwen_3_4b.safetensors"
    )
    assert clip.uses[0].node_id == "83:30" and clip.uses[0].subgraph == SUBGRAPH_ID
    assert clip.uses[0].input_name == "clip_name" and clip.uses[0].widget_index == 0
    assert refs["ae.safetensors"].kind == "vae"
    assert refs["z_image_turbo_bf16.safetensors"].kind == "diffusion_models"


def test_muted_subgraph_instance_hides_its_models():
    graph = template()
    graph["nodes"][0]["mode"] = 4  # bypass the subgraph instance
    assert find_references(graph) == []


def test_muted_and_bypassed_nodes_are_skipped_and_widgets_and_models_entries_are_read():
    graph = ui_workflow(
        [
            node(1, "CheckpointLoaderSimple", ["sdxl\\base.safetensors"]),
            node(2, "LoraLoader", ["muted.safetensors", 1.0, 1.0], mode=2),
            node(3, "LoraLoader", ["bypassed.safetensors", 1.0, 1.0], mode=4),
            node(4, "LoraLoader", ["ink.safetensors", 0.8, 1.0]),
            node(5, "SomeCustomGGUFLoader", ["flux-q4.gguf", "default"]),
            node(6, "UnknownThing", {"model": "thing.safetensors", "steps": 4}),
            node(7, "VAELoader", ["taesd"]),
            node(
                8,
                "CLIPVisionLoader",
                ["vision.safetensors"],
                models=[
                    {
                        "name": "vision.safetensors",
                        "url": "https://example.com/v.safetensors",
                        "directory": "clip_vision",
                        "hash": "AB" * 32,
                        "hash_type": "SHA256",
                    }
                ],  # fmt: skip
            ),
        ],
        models=[
            {"name": "ink.safetensors", "url": "https://civitai.com/api/download/models/67890", "directory": "loras"},
            {
                "name": "extra.safetensors",
                "url": "https://example.com/extra.safetensors",
                "directory": "upscale_models",
            },
        ],
    )
    refs = by_name(find_references(graph))
    assert set(refs) == {
        "sdxl\\base.safetensors",
        "ink.safetensors",
        "flux-q4.gguf",
        "thing.safetensors",
        "vision.safetensors",
        "extra.safetensors",
    }
    assert refs["sdxl\\base.safetensors"].kind == "checkpoints"
    assert refs["ink.safetensors"].url == "https://civitai.com/api/download/models/67890"
    assert refs["ink.safetensors"].origin == "loader"
    assert refs["flux-q4.gguf"].kind == "" and refs["flux-q4.gguf"].origin == "widget"
    assert refs["thing.safetensors"].uses[0].input_name == "model"
    assert refs["vision.safetensors"].kind == "clip_vision"
    assert refs["vision.safetensors"].sha256 == "ab" * 32
    assert refs["extra.safetensors"].kind == "upscale_models" and refs["extra.safetensors"].origin == "models"


def test_properties_models_of_other_files_do_not_count():
    """As ComfyUI's frontend: a node's models entry counts only when a widget still holds that name."""
    graph = ui_workflow(
        [
            node(
                1,
                "LoraLoader",
                ["new.safetensors", 1, 1],
                models=[{"name": "old.safetensors", "url": "https://x/o", "directory": "loras"}],
            )
        ]
    )
    refs = find_references(graph)
    assert [(r.name, r.url) for r in refs] == [("new.safetensors", "")]


def test_api_format():
    refs = by_name(find_references(api_prompt()))
    assert set(refs) == {"sdxl/base.safetensors", "styles\\ink.safetensors", "detail.safetensors", "4x_ultra.pth"}
    assert refs["sdxl/base.safetensors"].kind == "checkpoints"
    assert refs["styles\\ink.safetensors"].kind == "loras"
    assert refs["detail.safetensors"].kind == "loras"  # our own node, input named like the built-in
    assert refs["detail.safetensors"].uses[0].node_type == "HubloaderLoraLoader"
    assert refs["4x_ultra.pth"].kind == "upscale_models"  # guessed from the node type


def test_same_file_used_twice_is_one_reference():
    graph = ui_workflow(
        [node(1, "LoraLoader", ["a.safetensors", 1, 1]), node(2, "LoraLoaderModelOnly", ["a.safetensors", 1])]
    )
    (ref,) = find_references(graph)
    assert [u.node_id for u in ref.uses] == ["1", "2"]


def test_png_prefers_ui_workflow_then_prompt(tmp_path: Path):
    both = save_png(tmp_path / "both.png", workflow=json.dumps(template()), prompt=json.dumps(api_prompt()))
    assert read_workflow(both).format == "ui"
    only_prompt = save_png(tmp_path / "prompt.png", prompt=json.dumps(api_prompt()))
    doc = read_workflow(only_prompt)
    assert doc.format == "api" and doc.path == only_prompt
    assert "detail.safetensors" in by_name(find_references(doc))


def test_png_with_a1111_parameters(tmp_path: Path):
    image = save_png(tmp_path / "a1111.png", parameters=INFOTEXT)
    refs = by_name(find_references(image))
    assert refs["sd_xl_base_1.0"].kind == "checkpoints"
    assert refs["sd_xl_base_1.0"].hashes == {"AutoV2": "31e35c80fc"}
    assert refs["ink_style"].hashes == {"AutoV3": "0123456789ab"}
    assert refs["easynegative"].kind == "embeddings"


def test_webp_as_comfyui_writes_it(tmp_path: Path):
    image = save_comfy_webp(tmp_path / "out.webp", prompt=api_prompt(), workflow=template())
    doc = read_workflow(image)
    assert doc.format == "ui"
    assert len(find_references(doc)) == 3
    prompt_only = save_comfy_webp(tmp_path / "p.webp", prompt=api_prompt())
    assert read_workflow(prompt_only).format == "api"


def test_webp_with_a1111_user_comment(tmp_path: Path):
    image = save_a1111_webp(tmp_path / "a1111.webp", INFOTEXT)
    doc = read_workflow(image)
    assert doc.format == "infotext"
    assert "sdxl_vae.safetensors" in by_name(find_references(doc))


def test_unreadable_inputs_give_clear_errors(tmp_path: Path):
    plain = save_png(tmp_path / "plain.png")
    with pytest.raises(InvalidFile, match="carries no workflow"):
        read_workflow(plain)
    broken = tmp_path / "broken.json"
    broken.write_text('{"nodes": [', encoding="utf-8")
    with pytest.raises(InvalidFile, match="not valid JSON"):
        read_workflow(broken)
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(InvalidFile, match="not a ComfyUI workflow"):
        read_workflow(other)
    with pytest.raises(InvalidFile, match="does not exist"):
        read_workflow(tmp_path / "nope.json")


# --- infotext ---------------------------------------------------------------------------------


def test_infotext_parsing():
    info = parse_infotext(INFOTEXT)
    assert info.prompt.startswith("masterpiece, a cat")
    assert info.negative_prompt == "blurry, easynegative"
    assert info.params["Steps"] == "20"
    assert info.params["Lora hashes"] == "ink_style: 0123456789ab, detail-tweaker: ba9876543210"
    assert lora_tokens(info.prompt) == [("ink_style", 0.7), ("detail-tweaker", 1.2)]
    assert parse_hash_list("a: 0123456789ab, b: nothex, c:ABCDEF123456") == {"a": "0123456789ab", "c": "abcdef123456"}
    models = {(m.kind, m.name): m for m in infotext_models(info)}
    assert models[("vae", "sdxl_vae.safetensors")].hashes == {"AutoV2": "235745af8d"}
    assert models[("loras", "detail-tweaker")].hashes == {"AutoV3": "ba9876543210"}
    assert models[("loras", "ink_style")].weight == 0.7
    assert models[("embeddings", "easynegative")].hashes == {"SHA256": "c74b4e810b03"}


def test_infotext_without_parameters_line():
    info = parse_infotext("just a prompt\nwith two lines")
    assert info.params == {} and info.prompt == "just a prompt\nwith two lines"
    assert infotext_models(info) == []


PAIRS = "Steps: 20, Sampler: Euler, Size: 512x512, "


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("line", "keys"),
    [
        ("word " * 40_000, set()),  # a long run of key characters with no ":" (quadratic backtracking on main)
        (PAIRS + "a" * 200_000, {"Steps", "Sampler", "Size"}),
        (PAIRS + " " * 200_000, {"Steps", "Sampler", "Size"}),
        (PAIRS + ('Key: "' + '\\"' * 8 + ", ") * 12_000, {"Steps", "Sampler", "Size", "Key"}),  # unclosed quotes
    ],
)
def test_infotext_adversarial_parameters_parse_in_one_pass(line: str, keys: set[str]):
    """200 kB of hostile parameters: the pairs A1111's regex would find, without its quadratic backtracking
    (main took minutes; the generous timeout only stops a regression from hanging the suite)."""
    assert len(line) >= 200_000
    info = parse_infotext("a prompt\n" + line)
    assert set(info.params) == keys
    if keys:
        assert info.prompt == "a prompt" and info.params["Size"] == "512x512"
    else:
        assert info.prompt == ("a prompt\n" + line).strip()


# --- local matching ---------------------------------------------------------------------------


def make(path: Path, data: bytes = b"x" * 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_local_matching_exact_subfolder_and_missing(tmp_path: Path):
    root = tmp_path / "models"
    make(root / "loras" / "styles" / "ink.safetensors")  # the workflow says styles\ink.safetensors
    make(root / "checkpoints" / "old" / "base.safetensors")  # the workflow says sdxl/base.safetensors
    make(root / "upscale_models" / "4x_ultra.pth")
    resolver = Resolver(
        standalone_folders(root), civitai=Untouchable(), huggingface=Untouchable(), registry=Untouchable()
    )
    report = resolver.check(api_prompt())
    items = {i.reference.name: i for i in report.items}
    assert items["styles\\ink.safetensors"].status is Status.FOUND
    assert items["styles\\ink.safetensors"].path == root / "loras" / "styles" / "ink.safetensors"
    base = items["sdxl/base.safetensors"]
    assert base.status is Status.FOUND_ELSEWHERE
    assert base.use_as == str(Path("old") / "base.safetensors")
    assert items["4x_ultra.pth"].status is Status.FOUND
    assert items["detail.safetensors"].status is Status.UNRESOLVED
    assert report.counts()["found_elsewhere"] == 1 and len(report.missing) == 1
    assert json.loads(json.dumps(report.to_dict()))["counts"]["unresolved"] == 1


def test_infotext_name_without_extension_matches_any_model_file(tmp_path: Path):
    root = tmp_path / "models"
    make(root / "checkpoints" / "xl" / "sd_xl_base_1.0.safetensors")
    make(root / "loras" / "ink_style.safetensors")
    resolver = Resolver(standalone_folders(root), registry=EmptyRegistry(), civitai=Untouchable())
    report = resolver.check(parse_and_refs(INFOTEXT))
    items = {i.reference.name: i for i in report.items}
    assert items["sd_xl_base_1.0"].status is Status.FOUND_ELSEWHERE
    assert items["sd_xl_base_1.0"].use_as == str(Path("xl") / "sd_xl_base_1.0.safetensors")
    assert items["ink_style"].status is Status.FOUND


def parse_and_refs(text: str) -> list[ModelReference]:
    return find_references(read_workflow(text))


def test_unknown_kind_is_looked_up_in_every_folder(tmp_path: Path):
    root = tmp_path / "models"
    make(root / "diffusion_models" / "flux-q4.gguf")
    graph = ui_workflow([node(5, "SomeCustomGGUFLoader", ["flux-q4.gguf"])])
    report = Resolver(standalone_folders(root), registry=Untouchable()).check(graph)
    assert report.items[0].status is Status.FOUND
    assert report.items[0].path == root / "diffusion_models" / "flux-q4.gguf"


def test_hostile_names_never_leave_the_folder(tmp_path: Path):
    root = tmp_path / "models"
    make(tmp_path / "secret.safetensors")
    graph = ui_workflow([node(1, "LoraLoader", ["../../secret.safetensors", 1, 1])])
    report = Resolver(standalone_folders(root), registry=Untouchable()).check(graph)
    assert report.items[0].status is Status.UNRESOLVED
    resolver = Resolver(standalone_folders(root), registry=Untouchable())
    candidate = Candidate("https://example.com/x", "x.safetensors", "url", 0.8, "test")
    dest = resolver._destination(report.items[0].reference, candidate)
    assert dest == root / "loras" / "secret.safetensors"


def test_extra_folders_of_a_kind_are_searched(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    make(second / "sub" / "ink.safetensors")
    folders = ModelFolders({"loras": [first, second]})
    graph = ui_workflow([node(1, "LoraLoader", ["ink.safetensors", 1, 1])])
    (item,) = Resolver(folders, registry=Untouchable()).check(graph).items
    assert item.status is Status.FOUND_ELSEWHERE and item.use_as == str(Path("sub") / "ink.safetensors")


# --- same hash anywhere in the registry (the real SQLite registry) ------------------------------


def test_same_hash_in_the_registry_is_found_without_network(tmp_path: Path):
    from hubloader.core.metadata import ModelMetadata, ModelType, Source
    from hubloader.registry import ModelRegistry

    data = b"checkpoint bytes" * 100
    sha = hashlib.sha256(data).hexdigest()
    root = tmp_path / "models"
    stored = make(root / "checkpoints" / "renamed" / "whatever.safetensors", data)
    registry = ModelRegistry(tmp_path / "registry.db")
    registry.register_model(
        ModelMetadata(
            "local:whatever",
            "whatever",
            Source.LOCAL,
            type=ModelType.BASE_MODEL,
            sha256=sha,
            hashes={"AutoV2": sha[:10]},
            local_path=stored,
        )  # fmt: skip
    )
    infotext = f"a cat\nSteps: 20, Sampler: Euler, Model hash: {sha[:10]}, Model: sd_xl_base_1.0"
    resolver = Resolver(standalone_folders(root), registry=registry, civitai=Untouchable(), huggingface=Untouchable())
    (item,) = resolver.check(infotext).items
    assert item.status is Status.FOUND_BY_HASH
    assert item.path == stored and item.use_as == str(Path("renamed") / "whatever.safetensors")
    registry.close()


# --- the services the resolver asks --------------------------------------------------------------


def _real_services() -> list[tuple[type, type]]:
    from hubloader.registry import ModelRegistry
    from hubloader.sources.civitai import CivitAIService
    from hubloader.sources.huggingface import HuggingFaceHubService
    from hubloader.workflows.services import CivitAISource, HuggingFaceSource, ModelLookup

    return [(ModelLookup, ModelRegistry), (CivitAISource, CivitAIService), (HuggingFaceSource, HuggingFaceHubService)]


@pytest.mark.parametrize(("protocol", "real"), _real_services(), ids=lambda c: c.__name__)
def test_the_real_services_take_every_call_the_resolver_makes(protocol: type, real: type):
    """Each method a protocol names exists on the real class and accepts the protocol's arguments as named."""
    methods = {name: m for name, m in vars(protocol).items() if not name.startswith("_") and callable(m)}
    assert methods
    for name, method in methods.items():
        params = list(inspect.signature(method).parameters.values())[1:]
        positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        keywords = {p.name: None for p in params if p.kind is p.KEYWORD_ONLY}
        inspect.signature(getattr(real, name)).bind(None, *positional, **keywords)  # TypeError if it does not fit
