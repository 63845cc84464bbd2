"""The builder's image transforms: Johnson's ONNX models, TransformerNet, grayscale, masks, sizing."""

from __future__ import annotations

import http.server
import pickle
import stat
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_fixtures import STYLE_MODELS  # noqa: E402

from mmr3_tasks import schema  # noqa: E402
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import masks
from mmr3_tasks.builder.onnx_patch import OnnxPatchError, make_size_free
from mmr3_tasks.builder.styles import (
    JOHNSON_ONNX_SHA256,
    StyleModelError,
    StyleModelSpec,
    TorchStyle,
    load_style_models,
    load_transformer_net_state,
    restyle,
    transformer_net,
)
from tests.conftest import STYLE_MODELS_ABSENT  # noqa: E402

# The research-use style models: a folder CI provides, never an install (the reason says how to get it).
needs_models = pytest.mark.skipif(not STYLE_MODELS.is_dir(), reason=STYLE_MODELS_ABSENT)


def _batch(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- Johnson's ONNX models


@pytest.fixture(scope="module")
def onnx_models():
    if not STYLE_MODELS.is_dir():
        pytest.skip(STYLE_MODELS_ABSENT)
    return load_style_models(StyleModelSpec(str(STYLE_MODELS), format="onnx", device="cpu"))


@needs_models
def test_published_hashes_match_the_shared_files():
    for name, digest in JOHNSON_ONNX_SHA256.items():
        assert imgs.sha256_file(STYLE_MODELS / f"{name}.onnx") == digest


@needs_models
def test_size_free_patch_is_bit_identical_at_720():
    import onnxruntime as ort

    raw = (STYLE_MODELS / "udnie.onnx").read_bytes()
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 720, 720)).astype(np.float32)
    original = ort.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"inputImage": x})[0]
    patched = ort.InferenceSession(make_size_free(raw), providers=["CPUExecutionProvider"]).run(
        None, {"inputImage": x}
    )[0]
    assert np.array_equal(original, patched)


@needs_models
@pytest.mark.parametrize("height,width", [(64, 96), (44, 48)])
def test_onnx_styles_keep_shape_and_are_deterministic(onnx_models, height, width):
    batch = _batch(2, height, width)
    for name, model in onnx_models.items():
        out = model.stylize(batch)
        assert out.shape == batch.shape and out.dtype == np.uint8, name
        assert np.array_equal(out, model.stylize(batch)), f"{name} is not deterministic"
        assert not np.array_equal(out, batch)
        # A batch gives what one image at a time gives: batching must not change the benchmark.
        assert np.array_equal(out[1:], model.stylize(batch[1:]))


@needs_models
def test_onnx_input_is_bgr(onnx_models):
    # A pure-red and a pure-blue image must not restyle alike: the channel order reaches the network.
    red = np.zeros((1, 48, 48, 3), np.uint8)
    red[..., 0] = 255
    blue = red[..., ::-1].copy()
    model = onnx_models["candy"]
    assert not np.array_equal(model.stylize(red), model.stylize(blue)[..., ::-1])


@needs_models
def test_restyle_gives_the_four_styles_in_schema_order(onnx_models):
    image = _batch(1, 48, 48)[0]
    out = restyle(image, onnx_models)
    assert tuple(out) == schema.STYLES
    gray = out["grayscale"]
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


@needs_models
@pytest.mark.parametrize(
    "height,width,message",
    [(48, 50, "multiples of 4"), (64, 46, "multiples of 4"), (40, 64, "at least 44")],  # 40 < the 40 px pad + 1
)
def test_unusable_sizes_are_refused(onnx_models, height, width, message):
    with pytest.raises(ValueError, match=message):
        onnx_models["mosaic"].stylize(_batch(1, height, width))


@pytest.mark.parametrize(
    "data,message",
    [
        (b"\x08\x03\x12\x04test", "no graph"),  # a valid protobuf without a graph
        (b"\x0a\x05ab", "is this really an ONNX file"),  # a truncated one
    ],
)
def test_patch_refuses_other_files(data, message):
    with pytest.raises(OnnxPatchError, match=message):
        make_size_free(data)


@needs_models
def test_patch_refuses_an_already_patched_model():
    with pytest.raises(OnnxPatchError, match="patched already"):
        make_size_free(make_size_free((STYLE_MODELS / "candy.onnx").read_bytes()))


def test_missing_style_folder_says_where_to_get_the_models(tmp_path):
    with pytest.raises(StyleModelError, match="Windows-Machine-Learning"):
        load_style_models(StyleModelSpec(str(tmp_path / "nowhere")))
    with pytest.raises(StyleModelError, match="no candy model"):
        load_style_models(StyleModelSpec(str(tmp_path)))


# --------------------------------------------------------------------------- pytorch/examples TransformerNet


def _random_state(seed: int) -> dict:
    """Random weights large enough that the image survives the final clamp to 0-255."""
    torch.manual_seed(seed)
    net = transformer_net()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.15)
    torch.nn.init.constant_(net.deconv3.conv2d.bias, 128.0)
    return net.state_dict()


def _pytorch_examples_checkpoint(path, seed: int = 0, legacy_keys: bool = True) -> dict:
    """A checkpoint as pytorch/examples saved it: the bare state dict, with the InstanceNorm
    running stats old torch versions stored (its `stylize` deletes them before loading)."""
    state = _random_state(seed)
    if legacy_keys:
        state["in1.running_mean"] = torch.zeros(32)
        state["res1.in2.running_var"] = torch.ones(128)
    torch.save(state, path)
    return state


def test_transformer_net_has_pytorch_examples_key_layout():
    keys = set(transformer_net().state_dict())
    expected = {
        "conv1.conv2d.weight",
        "in1.weight",
        "res5.conv2.conv2d.bias",
        "deconv1.conv2d.weight",
        "deconv3.conv2d.bias",
    }
    assert expected <= keys
    assert sum(p.numel() for p in transformer_net().parameters()) == 1_679_235


def test_transformer_net_checkpoint_loads_and_runs(tmp_path):
    for seed, name in enumerate(("candy", "mosaic", "udnie")):
        _pytorch_examples_checkpoint(tmp_path / f"{name}.pth", seed=seed)
    models = load_style_models(StyleModelSpec(str(tmp_path), device="cpu"), batch_size=2)
    assert {m.kind for m in models.values()} == {"transformer_net"}
    batch = _batch(3, 48, 52)
    out = models["candy"].stylize(batch)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert np.array_equal(out, models["candy"].stylize(batch))
    assert np.array_equal(out[2:], models["candy"].stylize(batch[2:]))
    assert not np.array_equal(out, models["udnie"].stylize(batch))


def test_transformer_net_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    state = transformer_net().state_dict()
    save_file(state, str(tmp_path / "candy.safetensors"))
    loaded = load_transformer_net_state(tmp_path / "candy.safetensors")
    assert all(torch.equal(loaded[k], state[k]) for k in state)


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_arbitrary_pickle_is_refused(tmp_path):
    path = tmp_path / "candy.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.conv2d.weight": _Evil()}, f, protocol=2)
    with pytest.raises(StyleModelError, match="weights-only"):
        load_transformer_net_state(path)


def test_wrong_checkpoint_names_the_keys(tmp_path):
    state = transformer_net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv1.conv2d.weight"]
    with pytest.raises(StyleModelError, match="conv1.conv2d.weight"):
        TorchStyle("candy", state, "x", device="cpu")


def test_style_models_from_a_url(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for name in ("candy", "mosaic", "udnie"):
        _pytorch_examples_checkpoint(served / f"{name}.pth", legacy_keys=False)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/models/"
        (served / "models").mkdir()
        for p in served.glob("*.pth"):
            p.rename(served / "models" / p.name)
        spec = StyleModelSpec(url, format="transformer_net", device="cpu", cache_dir=str(tmp_path / "cache"))
        models = load_style_models(spec)
        assert set(models) == {"candy", "mosaic", "udnie"}
        cached = list((tmp_path / "cache").rglob("*.pth"))
        assert len(cached) == 3 and all(stat.S_IMODE(f.stat().st_mode) & 0o044 for f in cached)
        with pytest.raises(StyleModelError, match="HTTP 404"):
            load_style_models(
                StyleModelSpec(url + "nothing/", format="transformer_net", cache_dir=str(tmp_path / "c2"))
            )
        assert not [f for f in (tmp_path / "c2").rglob("*") if f.is_file()]  # no partial download left
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("lines,coverage", [(1, 1.0), (3, 3 / 5), (5, 5 / 9), (7, 7 / 13)])
def test_k_lines_paint_k_stripes(lines, coverage):
    rows = masks.stripe_rows(117, lines)
    assert rows[0] and rows[-1]  # the top and bottom stripes are painted
    runs = np.flatnonzero(np.diff(np.r_[0, rows.astype(int), 0]) == 1)
    assert len(runs) == lines
    assert rows.mean() == pytest.approx(coverage, abs=0.02)


def test_ellipse_is_inscribed_in_the_box():
    ellipse = masks.shape_mask(200, 100, "ellipse")
    assert ellipse.mean() == pytest.approx(np.pi / 4, abs=0.01)
    assert ellipse[50, 100] and not ellipse[0, 0] and not ellipse[99, 199]
    assert masks.shape_mask(20, 10, "rectangle").all()


@pytest.mark.parametrize("kind", masks.ALL_KINDS[::7])
def test_render_mask_paints_only_inside_the_box(kind):
    image = np.full((60, 80, 3), 128, np.uint8)
    out = masks.render_mask(image, (10.2, 5, 50, 45.4), kind)
    changed = np.any(out != image, axis=2)
    ys, xs = np.nonzero(changed)
    assert ys.min() >= 5 and ys.max() < 45 and xs.min() >= 10 and xs.max() < 50
    assert {tuple(v) for v in out[changed]} == {masks.COLOR_RGB[kind.color]}
    assert np.array_equal(out, masks.render_mask(image, (10.2, 5, 50, 45.4), kind))
    assert np.array_equal(image, np.full((60, 80, 3), 128, np.uint8))  # input untouched


def test_mask_kinds_are_seeded_distinct_and_cover_every_option():
    a = masks.draw_kinds(0, "coco-1")
    assert a == masks.draw_kinds(0, "coco-1") and len(set(a)) == 3
    # Both the seed and the group id pick the draw (each alone would pass a check joined with `or`).
    assert a != masks.draw_kinds(1, "coco-1")
    assert a != masks.draw_kinds(0, "coco-2")
    # And a build's masks never change between versions of the builder: this group's, as built today.
    assert a == [
        masks.MaskKind("rectangle", 3, "blue"), masks.MaskKind("ellipse", 7, "green"),
        masks.MaskKind("ellipse", 3, "white"),
    ]  # fmt: skip
    drawn = [k for g in range(400) for k in masks.draw_kinds(0, f"g{g}")]
    assert {k.lines for k in drawn} == set(schema.MASK_LINES)
    assert {k.shape for k in drawn} == set(schema.MASK_SHAPES)
    assert {k.color for k in drawn} == set(schema.MASK_COLORS)
    # Uniform draws: each of the 4 line counts gets about a quarter.
    for lines in schema.MASK_LINES:
        assert 0.18 < sum(k.lines == lines for k in drawn) / len(drawn) < 0.32


@pytest.mark.parametrize("kind", [("circle", 1, "red"), ("ellipse", 2, "red"), ("ellipse", 1, "purple")])
def test_mask_kind_validates(kind):
    with pytest.raises(ValueError, match="is not one of"):
        masks.MaskKind(*kind)


def test_empty_box_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        masks.render_mask(np.zeros((10, 10, 3), np.uint8), (12, 0, 20, 5), masks.ALL_KINDS[0])


# --------------------------------------------------------------------------- sizing and encoding


@pytest.mark.parametrize(
    "size,max_side,multiple,expected",
    [
        ((640, 427), 384, 4, (384, 256)),  # 256.2 rounds to 256
        ((512, 512), 384, 4, (384, 384)),
        ((200, 165), 384, 4, (200, 164)),  # never enlarged; 165 -> 164
        ((1411, 1411), 384, 1, (384, 384)),
        ((448, 172), 384, 4, (384, 148)),
        ((30, 2), 384, 4, (32, 4)),  # tiny sides round up to one multiple
        ((385, 100), 384, 4, (384, 100)),
    ],
)
def test_fit_size(size, max_side, multiple, expected):
    assert imgs.fit_size(*size, max_side, multiple) == expected


def test_jpeg_encoding_is_deterministic_and_rgb():
    image = Image.fromarray(_batch(1, 40, 60)[0])
    a, b = imgs.encode_jpeg(image, 90), imgs.encode_jpeg(image, 90)
    assert a == b and a[:3] == b"\xff\xd8\xff"
    assert Image.open(__import__("io").BytesIO(a)).mode == "RGB"


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 5), bool), np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8), np.zeros((4, 5, 3), float)],
)
def test_to_rgb_accepts_sample_image_arrays(array):
    assert imgs.to_rgb(array).mode == "RGB" and imgs.to_rgb(array).size == (5, 4)


def test_open_rgb_names_the_bad_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(imgs.BadImageError, match="x.jpg"):
        imgs.open_rgb(bad)
    with pytest.raises(imgs.BadImageError, match="missing"):
        imgs.open_rgb(tmp_path / "absent.jpg")
