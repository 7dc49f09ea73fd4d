"""Library scan: what each file is, incremental rescans, duplicates, background hashing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from hubloader.core.metadata import BaseModel, ModelFormat, ModelMetadata, ModelType, Source
from hubloader.engine.hashing import hash_file
from hubloader.library.scan import apply_hashes, describe_file, hash_models, scan_paths
from hubloader.library.sidecars import a1111_values, freeze_source_metadata, read_a1111, sidecar_path, write_a1111
from hubloader.sources.civitai import metadata_from_civitai
from tests.fakehub import modelfiles as mf

FIXTURES = Path(__file__).parent / "fixtures" / "sidecars"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    mf.write_safetensors(root / "checkpoints" / "xl.safetensors", mf.sdxl_checkpoint())
    mf.write_safetensors(
        root / "loras" / "char.safetensors",
        mf.kohya_lora("sd15"),
        mf.kohya_metadata("char", tag_frequency={"10_char": {"char": 10, "1girl": 12}}, ss_trigger_words="charword"),
    )
    mf.write_safetensors(root / "loras" / "flux" / "pp-storybook_rank2_bf16.safetensors", mf.kohya_flux_lora())
    for name in ("pp-storybook_rank2_bf16.json", "pp-storybook_rank2_bf16.civitai.info"):
        shutil.copy(FIXTURES / name, root / "loras" / "flux" / name)
    mf.write_safetensors(root / "vae" / "sdxl_vae.safetensors", mf.vae(4))
    mf.write_safetensors(root / "embeddings" / "neg.safetensors", mf.embedding("sd15"))
    (root / "checkpoints" / "old.ckpt").write_bytes(mf.pickle_checkpoint_bytes())
    (root / "checkpoints" / "evil.ckpt").write_bytes(mf.malicious_pickle_bytes("touch PWNED"))
    (root / "loras" / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{truncated")
    (root / "loras" / "notes.txt").write_text("not a model")
    (root / ".hidden").mkdir()
    mf.write_safetensors(root / ".hidden" / "skip.safetensors", mf.embedding())
    return root


def _by_name(models: list[ModelMetadata]) -> dict[str, ModelMetadata]:
    return {m.name: m for m in models}


def test_scan_describes_every_model_file(library: Path) -> None:
    report = scan_paths([library], scan_pickles=True)
    models = _by_name(report.models)

    assert set(models) == {"xl", "char", "pp-storybook_rank2_bf16", "sdxl_vae", "neg", "old", "evil", "broken"}
    assert (models["xl"].type, models["xl"].base_model) == (ModelType.BASE_MODEL, BaseModel.SDXL)
    char = models["char"]
    assert (char.type, char.base_model, char.trigger_words, char.trigger_words_source) == (
        ModelType.LORA,
        BaseModel.SD15,
        ["charword"],
        "kohya",
    )
    assert char.training_tags == ["1girl", "char"]
    assert char.extra["header_metadata"]["ss_output_name"] == "char"
    assert char.model_id == f"local:{library / 'loras' / 'char.safetensors'}" and char.source is Source.LOCAL
    # The recorded CivitAI version 1387174 beside a Flux LoRA.
    pp = models["pp-storybook_rank2_bf16"]
    assert (pp.type, pp.base_model, pp.trigger_words, pp.recommended_weight) == (
        ModelType.LORA,
        BaseModel.FLUX1,
        ["ppstorybook"],
        0.8,
    )
    assert (pp.trigger_words_source, pp.recommended_weight_source, pp.version_id) == ("sidecar", "sidecar", "1387174")
    assert models["sdxl_vae"].type is ModelType.VAE and models["sdxl_vae"].base_model is BaseModel.SDXL  # by name
    assert models["neg"].type is ModelType.EMBEDDING
    assert models["old"].format is ModelFormat.CKPT and models["old"].extra["pickle"]
    assert models["old"].extra["pickle_scan"]["safe"]
    assert not models["evil"].extra["pickle_scan"]["safe"]
    assert [p.name for p, _ in report.errors] == ["broken.safetensors"]
    assert "truncated" in models["broken"].extra["error"] and not models["broken"].extra["unsafe"]
    assert not (library / "checkpoints" / "PWNED").exists() and not Path("PWNED").exists()


def test_rescan_reads_nothing_unchanged_and_rereads_what_changed(library: Path) -> None:
    first = scan_paths([library])
    known = {str(m.local_path): (m.extra["size"], m.extra["mtime_ns"]) for m in first.models}

    second = scan_paths([library], known=known)
    assert second.models == [] and len(second.unchanged) == len(first.models)

    char = library / "loras" / "char.safetensors"
    stat = char.stat()
    os.utime(char, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    new = mf.write_safetensors(library / "loras" / "new.safetensors", mf.kohya_lora("sdxl"))
    (library / "vae" / "sdxl_vae.safetensors").unlink()

    third = scan_paths([library], known=known)
    assert sorted(m.name for m in third.models) == ["char", "new"]
    assert third.removed == [library / "vae" / "sdxl_vae.safetensors"]
    assert len(third.unchanged) == len(first.models) - 2
    assert _by_name(third.models)["new"].local_path == new


def test_rescan_does_not_open_unchanged_files(library: Path) -> None:
    """Files overwritten with garbage but given back their size and mtime prove no read happens."""
    first = scan_paths([library])
    known = {str(m.local_path): (m.extra["size"], m.extra["mtime_ns"]) for m in first.models}
    for model in first.models:
        stat = model.local_path.stat()
        model.local_path.write_bytes(b"\xff" * stat.st_size)
        os.utime(model.local_path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    assert scan_paths([library], known=known).errors == []
    cold = {path for path, _ in scan_paths([library]).errors}  # a cold scan does read them
    assert cold == {m.local_path for m in first.models if m.local_path.suffix == ".safetensors"}


def test_duplicates_are_reported_by_sha256(library: Path) -> None:
    original = library / "loras" / "char.safetensors"
    copy = library / "checkpoints" / "char-copy.safetensors"
    shutil.copy(original, copy)
    sha = hashlib.sha256(original.read_bytes()).hexdigest()
    report = scan_paths([library], known_hashes={str(original): sha, str(copy): sha.upper()})
    assert report.duplicates == {sha: sorted([original, copy])}


def test_background_hashing_skips_files_hashed_at_the_same_size_and_mtime(library: Path) -> None:
    paths = sorted(library.rglob("*.safetensors"))
    first = {path: (signature, hashes) for path, signature, hashes in hash_models(paths)}
    assert all(hashes is not None for _, hashes in first.values())
    known = {str(p): (*sig, hashes.civitai()) for p, (sig, hashes) in first.items()}

    touched = paths[0]
    os.utime(touched, ns=(0, 10**18))
    seen: list[Path] = []
    again = list(hash_models(paths, known=known, progress=lambda path, done, total: seen.append(path)))

    rehashed = [path for path, _, hashes in again if hashes is not None]
    assert rehashed == [touched] and set(seen) == {touched}


def test_describe_a_downloaded_file_with_source_metadata(tmp_path: Path) -> None:
    path = mf.write_safetensors(tmp_path / "pony_char.safetensors", mf.kohya_lora("sdxl"))
    source = ModelMetadata(
        model_id="1231067",
        version_id="1387174",
        name="Pony Char",
        source=Source.CIVITAI,
        type=ModelType.LORA,
        base_model=BaseModel.PONY,
        trigger_words=["ponychar"],
        trigger_words_source="civitai",
        recommended_weight=0.7,
        recommended_weight_source="civitai.settings",
        download_count=10,
    )
    freeze_source_metadata(path, Source.CIVITAI, {"id": 1387174, "trainedWords": ["ponychar"], "baseModel": "Pony"})

    meta = apply_hashes(describe_file(path, source=source), hash_file(path))

    assert (meta.name, meta.source, meta.download_count) == ("Pony Char", Source.CIVITAI, 10)
    assert (meta.base_model, meta.extra["base_source"]) == (BaseModel.PONY, "civitai")
    assert (meta.trigger_words, meta.recommended_weight) == (["ponychar"], 0.7)
    assert meta.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta.hashes["AutoV2"] == meta.sha256[:10].upper() and "AutoV3" in meta.hashes
    assert meta.local_path == path


def _downloaded_storybook_lora(tmp_path: Path) -> tuple[Path, ModelMetadata]:
    """The recorded CivitAI Flux LoRA (weight set to 0.7 by its creator), as `hubloader get` leaves it: the
    A1111 sidecar and the frozen record written from what describe_file said at download time."""
    version = json.loads((FIXTURES / "pp-storybook_rank2_bf16.civitai.info").read_text(encoding="utf-8"))
    version["settings"] = {"strength": 0.7}
    source = metadata_from_civitai({**version["model"], "id": version["modelId"]}, version)
    path = mf.write_safetensors(tmp_path / "loras" / "storybook.safetensors", mf.kohya_flux_lora())
    meta = describe_file(path, source=source)
    freeze_source_metadata(path, source.source, source.to_dict(), metadata=meta)
    write_a1111(path, a1111_values(meta))
    return path, source


@pytest.mark.parametrize("with_source", [True, False], ids=["redescribed-with-source", "scanned-database-lost"])
def test_our_own_a1111_sidecar_keeps_the_source_s_provenance(tmp_path: Path, with_source: bool) -> None:
    path, source = _downloaded_storybook_lora(tmp_path)
    assert read_a1111(path)["activation text"] == "ppstorybook"

    again = describe_file(path, source=source if with_source else None)

    assert (again.trigger_words, again.trigger_words_source) == (["ppstorybook"], "civitai")
    assert (again.recommended_weight, again.recommended_weight_source) == (0.7, "civitai.settings")


def test_values_the_user_changed_in_the_a1111_sidecar_are_the_user_s(tmp_path: Path) -> None:
    path, source = _downloaded_storybook_lora(tmp_path)
    edited = {**read_a1111(path), "activation text": "storybook style, ppstorybook"}
    sidecar_path(path, ".json").write_text(json.dumps(edited), encoding="utf-8")

    again = describe_file(path, source=source)

    assert (again.trigger_words, again.trigger_words_source) == (["storybook style", "ppstorybook"], "sidecar")
    assert (again.recommended_weight, again.recommended_weight_source) == (0.7, "civitai.settings")  # untouched


def test_a_registry_scan_keeps_the_full_text_index_right(library: Path) -> None:
    """record_scan writes its rows with the full-text triggers off and indexes them at once: the index must
    match the rows exactly (FTS5's integrity-check compares them), on a first scan and on a rescan that
    changes a row, and the triggers must be back for every other writer."""
    from hubloader.registry import ModelRegistry

    def check(registry: ModelRegistry) -> None:
        db = registry.index.db
        with db.write() as conn:  # raises "database disk image is malformed" when index and rows differ
            conn.execute("INSERT INTO models_fts (models_fts, rank) VALUES ('integrity-check', 1)")
        triggers = db.query("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'models_fts_%'")
        assert sorted(t for (t,) in triggers) == ["models_fts_delete", "models_fts_insert", "models_fts_update"]

    with ModelRegistry() as registry:
        registry.scan([library])
        check(registry)
        assert [m.name for m in registry.search("char", local_only=True)] == ["char"]
        lora = library / "loras" / "char.safetensors"
        write_a1111(lora, {"description": "an inkwashword style"})
        os.utime(lora, ns=(lora.stat().st_atime_ns, lora.stat().st_mtime_ns + 10**9))
        assert [m.name for m in registry.scan([library]).models] == ["char"]
        check(registry)
        assert [m.name for m in registry.search("inkwashword", local_only=True)] == ["char"]
        registry.register_model(ModelMetadata(model_id="civitai:9@9", name="Other", source=Source.CIVITAI))
        assert registry.index.db.query("SELECT count(*) FROM models_fts WHERE models_fts MATCH 'other'") == [(1,)]
        check(registry)
