"""Safetensors header reader (local and by HTTP Range), hostile headers, pickles, kind/base recognisers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from hubloader.core.errors import AuthRequired, InvalidFile, NotFound, PickleNotAllowed, UnsafeFile
from hubloader.core.metadata import BaseModel, ModelFormat, ModelType
from hubloader.library import pickles
from hubloader.library.inspection import (
    MAX_HEADER_SIZE,
    base_from_metadata,
    check_pickle,
    detect,
    inspect_file,
    read_header,
    read_remote_header,
    refine_base,
    sniff_format,
)
from tests.fakehub import modelfiles as mf

# --- the real format ---------------------------------------------------------------------------


def test_reads_a_file_written_by_the_safetensors_library(tmp_path: Path) -> None:
    path = tmp_path / "real.safetensors"
    tensors = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": np.zeros(
            (4, 768), np.float16
        ),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": np.ones(
            (320, 4), np.float32
        ),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": np.array(4.0, np.float16),
    }
    save_file(tensors, str(path), metadata={"ss_output_name": "real", "modelspec.trigger_phrase": "realtok"})

    header = read_header(path)

    assert header.metadata == {"ss_output_name": "real", "modelspec.trigger_phrase": "realtok"}
    assert {name: info.shape for name, info in header.tensors.items()} == {k: v.shape for k, v in tensors.items()}
    assert header.tensors[next(k for k in tensors if k.endswith("up.weight"))].dtype == "F32"
    assert header.data_start + header.data_size == path.stat().st_size
    detection = detect(header)
    assert (detection.kind, detection.base, detection.details["rank"]) == (ModelType.LORA, BaseModel.SD15, 4)


def test_generated_files_parse_the_same_as_the_library_reads_them(tmp_path: Path) -> None:
    from safetensors import safe_open

    path = mf.write_safetensors(tmp_path / "x.safetensors", mf.sdxl_checkpoint(), {"k": "v"})
    header = read_header(path)
    with safe_open(str(path), "np") as f:
        assert f.metadata() == header.metadata
        assert sorted(f.keys()) == sorted(header.tensors)
        for key in f.keys():
            assert tuple(f.get_slice(key).get_shape()) == header.tensors[key].shape


# --- hostile and broken headers ------------------------------------------------------------------


def _raw(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


def _tensor(begin: int, end: int, dtype: str = "U8", shape: list[int] | None = None) -> dict:
    return {"dtype": dtype, "shape": shape if shape is not None else [end - begin], "data_offsets": [begin, end]}


BROKEN = {
    "shorter than the length field": (b"\x01\x02\x03", InvalidFile),
    "empty file": (b"", InvalidFile),
    "length larger than the file": (_raw({"a": _tensor(0, 4)}, b"\0" * 4, length=5000), InvalidFile),
    "header of 200 MB claimed": (_raw(b"{}", length=200_000_000), UnsafeFile),
    "length of 2**64-1": (b"\xff" * 8 + b"{}", UnsafeFile),
    "not JSON": (_raw(b"this is not json at all", b""), InvalidFile),
    "not UTF-8": (_raw(b'{"\xff\xfe": 1}'), InvalidFile),
    "JSON but not an object": (_raw(b"[1, 2, 3]"), InvalidFile),
    "deeply nested JSON": (_raw(b"[" * 100_000 + b"]" * 100_000), (InvalidFile, UnsafeFile)),
    "negative offset": (_raw({"a": _tensor(-4, 0, shape=[4])}, b"\0" * 4), UnsafeFile),
    "reversed offsets": (_raw({"a": _tensor(4, 0, shape=[4])}, b"\0" * 4), UnsafeFile),
    "overlapping offsets": (_raw({"a": _tensor(0, 8), "b": _tensor(4, 12)}, b"\0" * 12), UnsafeFile),
    "gap between tensors": (_raw({"a": _tensor(0, 4), "b": _tensor(8, 12)}, b"\0" * 12), InvalidFile),
    "unknown dtype": (_raw({"a": _tensor(0, 4, dtype="F128")}, b"\0" * 4), InvalidFile),
    "dtype not a string": (
        _raw({"a": {"dtype": ["U8"], "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4),
        InvalidFile,
    ),
    "shape holds a bool": (_raw({"a": {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}}, b"\0"), InvalidFile),
    "size does not match shape": (_raw({"a": _tensor(0, 4, dtype="F32", shape=[4])}, b"\0" * 4), InvalidFile),
    "truncated data": (_raw({"a": _tensor(0, 400)}, b"\0" * 40), InvalidFile),
    "trailing bytes": (_raw({"a": _tensor(0, 4)}, b"\0" * 40), InvalidFile),
    "offsets not integers": (
        _raw({"a": {"dtype": "U8", "shape": [4], "data_offsets": ["0", "4"]}}, b"\0" * 4),
        InvalidFile,
    ),
    "metadata not strings": (_raw({"__metadata__": {"n": 1}}), InvalidFile),
    "truncated header": (_raw({"a": _tensor(0, 4)}, length=10_000)[:100], InvalidFile),
}


@pytest.mark.parametrize("content, error", list(BROKEN.values()), ids=list(BROKEN))
def test_hostile_or_broken_headers_raise_a_clear_error(tmp_path: Path, content: bytes, error: type) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(error) as raised:
        read_header(path)
    message = str(raised.value)
    assert "bad.safetensors" in message
    assert raised.value.hint  # says what to do


def test_huge_claimed_header_is_refused_before_reading_it(tmp_path: Path) -> None:
    """A 200 MB claim in a small file is rejected from the 8-byte prefix alone: nothing is allocated."""
    path = tmp_path / "claim.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_SIZE + 1) + b"{" + b" " * 100)
    with pytest.raises(UnsafeFile, match="above the 100,000,000-byte limit"):
        read_header(path)


def test_a_valid_header_padded_with_spaces_and_empty_tensors_is_accepted(tmp_path: Path) -> None:
    body = json.dumps({"empty": _tensor(0, 0, dtype="F16", shape=[0, 3]), "a": _tensor(0, 2, "F16", [1])}).encode()
    path = tmp_path / "ok.safetensors"
    path.write_bytes(_raw(body + b"   ", b"\0\0"))
    header = read_header(path)
    assert header.tensors["empty"].shape == (0, 3) and header.data_size == 2


# --- remote header by Range ----------------------------------------------------------------------


def test_remote_header_reads_only_the_header_by_range(hub_env) -> None:
    data = mf.safetensors_bytes(mf.sdxl_checkpoint(), {"modelspec.architecture": "stable-diffusion-xl-v1-base"})
    url = hub_env.add_file("models/xl.safetensors", data)

    header = read_remote_header(url)

    assert header.metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    assert header.file_size == len(data)
    assert detect(header).base is BaseModel.SDXL
    assert hub_env.bytes_sent.total() <= 100_001 < len(data)


def test_remote_header_longer_than_the_first_range_takes_a_second_request(hub_env) -> None:
    metadata = {"ss_tag_frequency": json.dumps({"1_x": {f"tag{i}": i for i in range(20_000)}})}
    data = mf.safetensors_bytes(mf.kohya_lora(), metadata)
    url = hub_env.add_file("big-header.safetensors", data)

    header = read_remote_header(url)

    assert header.header_length > 100_000
    assert json.loads(header.metadata["ss_tag_frequency"])["1_x"]["tag19999"] == 19999
    assert sum(1 for r in hub_env.requests if r.path.endswith("big-header.safetensors")) == 2


def test_remote_header_when_the_server_ignores_range(hub_env) -> None:
    data = mf.safetensors_bytes(mf.kohya_lora(), {"a": "b"}) + b""
    url = hub_env.add_file("norange.safetensors", data)
    hub_env.faults.ignore_range = True
    assert read_remote_header(url).metadata == {"a": "b"}


def test_remote_header_hostile_and_missing(hub_env, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile = hub_env.add_file("hostile.safetensors", struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(UnsafeFile):
        read_remote_header(hostile)
    with pytest.raises(NotFound):
        read_remote_header(hub_env.cdn_url + "/nothing-here.safetensors")
    hub_env.faults.require_token = "secret-token"
    with pytest.raises(AuthRequired) as raised:
        read_remote_header(hostile)
    assert "secret-token" not in str(raised.value)
    # The token goes to its own service's endpoint only: HuggingFace's, not the storage host beside it.
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    on_hf = hub_env.add_file("ok.safetensors", mf.safetensors_bytes(mf.embedding()), host="hf")
    assert read_remote_header(on_hf, token_service="huggingface").tensors
    with pytest.raises(AuthRequired):
        read_remote_header(
            hub_env.add_file("ok.safetensors", mf.safetensors_bytes(mf.embedding())), token_service="huggingface"
        )
    with pytest.raises(AuthRequired):
        read_remote_header(on_hf)  # no service named: no token


def test_remote_header_reads_go_through_the_gate_s_host_rule(fakehub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host allow-list applies to header reads as to downloads: at the URL and at every redirect hop."""
    from hubloader.gate.policy import DownloadRefused

    data = mf.safetensors_bytes(mf.embedding())
    elsewhere = fakehub.add_file("elsewhere.safetensors", data)  # the storage host, not allowed here
    with pytest.raises(DownloadRefused):
        read_remote_header(elsewhere)
    assert not [r for r in fakehub.requests if r.path.endswith("elsewhere.safetensors")]
    monkeypatch.setenv("HF_ENDPOINT", fakehub.hf_url)  # HuggingFace's endpoint is allowed ...
    hop = fakehub.add_redirect("hop.safetensors", elsewhere, host="hf")
    with pytest.raises(DownloadRefused):  # ... but not a redirect from it to a host that is not
        read_remote_header(hop)
    assert not [r for r in fakehub.requests if r.path.endswith("elsewhere.safetensors")]
    assert read_remote_header(fakehub.add_file("here.safetensors", data, host="hf")).tensors


# --- pickles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("zip_format", [False, True], ids=["raw", "torch-zip"])
def test_pickles_are_sniffed_scanned_and_never_loaded(tmp_path: Path, zip_format: bool) -> None:
    good = tmp_path / "good.ckpt"
    good.write_bytes(mf.pickle_checkpoint_bytes(zip_format=zip_format))
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "PWNED"
    evil.write_bytes(mf.malicious_pickle_bytes(f"touch {marker}", zip_format=zip_format))

    assert sniff_format(good) is ModelFormat.CKPT
    assert sniff_format(evil) is ModelFormat.PICKLE
    with pytest.raises(PickleNotAllowed):
        check_pickle(good, allow_pickle=False)
    assert check_pickle(good, allow_pickle=True).safe
    with pytest.raises(UnsafeFile, match="system"):
        check_pickle(evil, allow_pickle=True)

    inspected = inspect_file(evil, scan_pickles=True)
    assert inspected.is_pickle and not inspected.pickle_scan.safe
    assert any(name.endswith("system") for name in inspected.pickle_scan.dangerous)
    assert inspect_file(good).detection.kind is ModelType.BASE_MODEL  # names read from the opcode stream
    assert not marker.exists()


def _zip_bomb(path: Path, pickle_bytes: int) -> Path:
    """A torch-zip ``.pt`` whose ``data.pkl`` holds one ``pickle_bytes``-long tensor-name-looking string,
    deflated to a few hundred KiB."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("archive/data.pkl", "w") as pkl:
            pkl.write(b"\x80\x04\x8d" + struct.pack("<Q", pickle_bytes))
            chunk = b"a." * (1 << 19)
            for _ in range(pickle_bytes // len(chunk)):
                pkl.write(chunk)
            pkl.write(b".")
    return path


def test_a_zip_bomb_is_refused_before_it_is_decompressed(tmp_path: Path) -> None:
    bomb = _zip_bomb(tmp_path / "bomb.pt", 128 << 20)
    assert bomb.stat().st_size < 1 << 20  # 128 MiB of pickle in well under 1 MiB
    for read in (lambda: inspect_file(bomb), lambda: inspect_file(bomb, scan_pickles=True)):
        with pytest.raises(UnsafeFile, match=r"^bomb\.pt holds a \d+-byte pickle \(archive/data\.pkl\)") as info:
            read()
        assert "\n" not in str(info.value)
    with pytest.raises(UnsafeFile, match="bomb.pt"):
        check_pickle(bomb, allow_pickle=True)


def test_a_zip_claiming_far_more_bytes_than_it_holds_or_too_many_entries_is_refused(tmp_path: Path) -> None:
    import zipfile

    bomb = tmp_path / "many.ckpt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", mf.pickle_checkpoint_bytes())
        for index in range(3):
            archive.writestr(f"archive/data/{index}", bytes(16 << 20))  # 48 MiB of zeros in ~50 KiB
    with pytest.raises(UnsafeFile, match=r"many\.ckpt would unpack to 5033\d{4} bytes from \d+: a decompression bomb"):
        inspect_file(bomb)
    tiny = tmp_path / "tiny.ckpt"
    tiny.write_bytes(mf.pickle_checkpoint_bytes(zip_format=True))
    assert inspect_file(tiny).detection.kind is ModelType.BASE_MODEL
    entries = len(zipfile.ZipFile(tiny).infolist())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pickles, "MAX_ZIP_ENTRIES", entries - 1)  # the limit lives beside the pickle reader
        with pytest.raises(UnsafeFile, match=f"tiny.ckpt is a zip of {entries} entries, more than {entries - 1}"):
            inspect_file(tiny)


def test_sniffing_ignores_the_name(tmp_path: Path) -> None:
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(mf.pickle_checkpoint_bytes())
    assert sniff_format(disguised) is ModelFormat.PICKLE
    real = mf.write_safetensors(tmp_path / "model.bin", mf.embedding())
    assert sniff_format(real) is ModelFormat.SAFETENSORS
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert sniff_format(gguf) is ModelFormat.GGUF


# --- recognisers ---------------------------------------------------------------------------------

RECOGNISED = {
    "sd15 checkpoint": (mf.sd15_checkpoint(), ModelType.BASE_MODEL, BaseModel.SD15, {}),
    "sd15 inpainting": (
        mf.sd15_inpainting_checkpoint(),
        ModelType.BASE_MODEL,
        BaseModel.SD15,
        {"variant": "inpainting"},
    ),
    "sd2 checkpoint": (mf.sd2_checkpoint(), ModelType.BASE_MODEL, BaseModel.SD2, {}),
    "sdxl checkpoint": (mf.sdxl_checkpoint(), ModelType.BASE_MODEL, BaseModel.SDXL, {}),
    "sdxl refiner": (mf.sdxl_refiner_checkpoint(), ModelType.BASE_MODEL, BaseModel.SDXL, {"variant": "refiner"}),
    "sd3 medium": (mf.sd3_checkpoint(24), ModelType.BASE_MODEL, BaseModel.SD3, {"depth": 24}),
    "sd3.5 large": (mf.sd3_checkpoint(38), ModelType.BASE_MODEL, BaseModel.SD35, {"variant": "large"}),
    "sd3.5 medium": (mf.sd3_checkpoint(24, sd35=True), ModelType.BASE_MODEL, BaseModel.SD35, {"variant": "medium"}),
    "flux dev": (mf.flux_diffusion_model("dev"), ModelType.DIFFUSION_MODEL, BaseModel.FLUX1, {"variant": "dev"}),
    "flux schnell": (
        mf.flux_diffusion_model("schnell"),
        ModelType.DIFFUSION_MODEL,
        BaseModel.FLUX1,
        {"variant": "schnell"},
    ),
    "flux comfy prefix": (
        mf.flux_diffusion_model("dev", prefix="model.diffusion_model."),
        ModelType.DIFFUSION_MODEL,
        BaseModel.FLUX1,
        {},
    ),
    "bare sdxl unet": (mf.unet_only("sdxl"), ModelType.DIFFUSION_MODEL, BaseModel.SDXL, {}),
    "bare sd15 unet": (mf.unet_only("sd15"), ModelType.DIFFUSION_MODEL, BaseModel.SD15, {}),
    "vae 4ch": (mf.vae(4), ModelType.VAE, BaseModel.UNKNOWN, {"latent_channels": 4}),
    "vae 16ch": (mf.vae(16), ModelType.VAE, BaseModel.UNKNOWN, {"latent_channels": 16}),
    "vae diffusers": (mf.vae(4, diffusers=True), ModelType.VAE, BaseModel.UNKNOWN, {"format": "diffusers"}),
    "controlnet ldm": (mf.controlnet("ldm", "sd15"), ModelType.CONTROLNET, BaseModel.SD15, {"format": "ldm"}),
    "controlnet diffusers": (mf.controlnet("diffusers", "sdxl"), ModelType.CONTROLNET, BaseModel.SDXL, {}),
    "t5 encoder": (mf.t5_encoder(), ModelType.TEXT_ENCODER, BaseModel.UNKNOWN, {"encoder": "t5xxl"}),
    "clip-l encoder": (mf.clip_l_encoder(), ModelType.TEXT_ENCODER, BaseModel.UNKNOWN, {"encoder": "clip_l"}),
    "embedding sd15": (mf.embedding("sd15"), ModelType.EMBEDDING, BaseModel.SD15, {"vectors": 4}),
    "embedding sdxl": (mf.embedding("sdxl"), ModelType.EMBEDDING, BaseModel.SDXL, {}),
    "kohya lora sd15": (mf.kohya_lora("sd15"), ModelType.LORA, BaseModel.SD15, {"family": "kohya", "rank": 8}),
    "kohya lora sdxl": (mf.kohya_lora("sdxl"), ModelType.LORA, BaseModel.SDXL, {"family": "kohya"}),
    "kohya lora flux": (mf.kohya_flux_lora(), ModelType.LORA, BaseModel.FLUX1, {"rank": 2}),
    "dora sd15": (mf.dora_lora("sd15"), ModelType.LORA, BaseModel.SD15, {"dora": True}),
    "peft lora sd15": (mf.diffusers_lora("sd15"), ModelType.LORA, BaseModel.SD15, {"family": "peft"}),
    "peft lora sdxl": (mf.diffusers_lora("sdxl"), ModelType.LORA, BaseModel.SDXL, {}),
    "peft lora flux": (mf.diffusers_lora("flux"), ModelType.LORA, BaseModel.FLUX1, {}),
    "loha sd15": (mf.lycoris("loha", "sd15"), ModelType.LYCORIS, BaseModel.SD15, {"algo": "loha"}),
    "lokr sd15": (mf.lycoris("lokr", "sd15"), ModelType.LYCORIS, BaseModel.SD15, {"algo": "lokr"}),
    "lokr sdxl": (mf.lycoris("lokr", "sdxl"), ModelType.LYCORIS, BaseModel.SDXL, {"algo": "lokr"}),
}


@pytest.mark.parametrize("spec, kind, base, details", list(RECOGNISED.values()), ids=list(RECOGNISED))
def test_each_recogniser_on_real_key_layouts(tmp_path: Path, spec, kind, base, details) -> None:
    path = mf.write_safetensors(tmp_path / "m.safetensors", spec)
    detection = inspect_file(path).detection
    assert (detection.kind, detection.base) == (kind, base), detection.evidence
    assert details.items() <= detection.details.items()
    assert detection.evidence and detection.confidence > 0


def test_unrecognised_tensors_say_so() -> None:
    detection = detect({"foo.bar": (3,), "baz": (1, 2)})
    assert (detection.kind, detection.base, detection.confidence) == (ModelType.OTHER, BaseModel.UNKNOWN, 0.0)


def test_recogniser_docstrings_say_how_they_recognise() -> None:
    from hubloader.library.inspection import RECOGNISERS

    for recogniser in RECOGNISERS:
        assert recogniser.__doc__ and len(recogniser.__doc__) > 40, recogniser.__name__


# --- base from metadata --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}, BaseModel.SDXL),
        ({"modelspec.architecture": "flux-1-dev/lora"}, BaseModel.FLUX1),
        ({"modelspec.architecture": "stable-diffusion-v3-medium"}, BaseModel.SD3),
        ({"modelspec.implementation": "https://github.com/black-forest-labs/flux"}, BaseModel.FLUX1),
        ({"ss_base_model_version": "sd_v2_v"}, BaseModel.SD2),
        ({"ss_base_model_version": "flux1"}, BaseModel.FLUX1),
        ({"ss_v2": "True"}, BaseModel.SD2),
        (
            {"ss_base_model_version": "sdxl_base_v1-0", "ss_sd_model_name": "ponyDiffusionV6XL_v6.safetensors"},
            BaseModel.PONY,
        ),
        ({"ss_sd_model_name": "illustriousXL_v01.safetensors"}, BaseModel.ILLUSTRIOUS),
        ({"ss_sd_model_name": "noobaiXLNAIXL_epsilonPred10.safetensors"}, BaseModel.NOOBAI),
        ({"ss_sd_model_name": "animefull-final-pruned-fp16.safetensors", "ss_v2": "False"}, BaseModel.UNKNOWN),
        ({}, BaseModel.UNKNOWN),
    ],
)
def test_base_from_metadata(metadata: dict[str, str], expected: BaseModel) -> None:
    assert base_from_metadata(metadata)[0] is expected


def test_tensors_decide_the_family_and_claims_refine_it() -> None:
    assert refine_base(BaseModel.SDXL, (BaseModel.PONY, "civitai"))[0] is BaseModel.PONY
    assert refine_base(BaseModel.SDXL, (BaseModel.SD15, "modelspec.architecture")) == (BaseModel.SDXL, "tensors")
    assert refine_base(BaseModel.UNKNOWN, (BaseModel.UNKNOWN, ""), (BaseModel.FLUX1, "civitai")) == (
        BaseModel.FLUX1,
        "civitai",
    )
    assert refine_base(BaseModel.UNKNOWN, fallback=(BaseModel.SDXL, "file name")) == (BaseModel.SDXL, "file name")


def test_pony_lora_from_kohya_metadata(tmp_path: Path) -> None:
    metadata = mf.kohya_metadata(
        "ponychar", "sdxl", ss_sd_model_name="ponyDiffusionV6XL_v6StartWithThisOne.safetensors"
    )
    path = mf.write_safetensors(tmp_path / "p.safetensors", mf.kohya_lora("sdxl"), metadata)
    header = read_header(path)
    assert detect(header).base is BaseModel.SDXL
    assert refine_base(detect(header).base, base_from_metadata(header.metadata))[0] is BaseModel.PONY
