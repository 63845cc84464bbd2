"""The restyle task's four styles: candy, mosaic, udnie (Johnson et al.'s fast style transfer with
instance normalisation) and grayscale.

Two kinds of style model run here, both on batches of equally sized RGB uint8 images:

- Johnson's own published instance-norm models as ONNX (the paper-faithful default), run with
  onnxruntime after `onnx_patch.make_size_free` lifts their fixed 720x720 size. They take BGR in
  0-255 and subtract the mean inside the graph.
- pytorch/examples' `TransformerNet` checkpoints (`fast_neural_style/saved_models/*.pth`), loaded
  safely (`torch.load(weights_only=True)` or safetensors, never arbitrary pickle). They take RGB
  in 0-255.

Neither kind of model is shipped with the project: users fetch them from their source
(`JOHNSON_ONNX_URL`; research-use licence) and pass `--style-models DIR|URL`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder.atomic import atomic_target
from mmr3_tasks.builder.onnx_patch import make_size_free
from mmr3_tasks.errors import MMR3Error

log = logging.getLogger(__name__)

NETWORK_STYLES = tuple(s for s in schema.STYLES if s != "grayscale")  # candy, mosaic, udnie

# Justin Johnson's own instance-norm models (github.com/jcjohnson/fast-neural-style) converted to
# ONNX, as microsoft/Windows-Machine-Learning publishes them at a pinned commit. Licence: the
# models' own metadata says "Free for personal or research use", so the project never ships them.
JOHNSON_ONNX_URL = (
    "https://github.com/microsoft/Windows-Machine-Learning/raw/"
    "155b5eeb1f48b49235f31ef3a68db0bd8707ce89/Samples/StyleTransfer/Assets/"
)
JOHNSON_ONNX_ALIAS = "johnson-onnx"
JOHNSON_ONNX_SHA256 = {
    "candy": "4cc994e51bc371584fe38d91ac66015909d8e06eec5b22de9a6b969ad091c2c0",
    "mosaic": "88bae7a0b1df776190c0edceb94878dc9d39178a06df97ca44d08dfb5b56e035",
    "udnie": "8a1576e5014f3a24461217b1829c27c1af61cba1bfa831c008b2b7958c1085cb",
}
# pytorch/examples' pretrained TransformerNet checkpoints (a zip of saved_models/*.pth).
TRANSFORMER_NET_ZIP_URL = "https://www.dropbox.com/s/lrvwfehqdcxoza8/saved_models.zip?dl=1"

FORMATS = ("auto", "onnx", "transformer_net")
_SUFFIXES = {"onnx": (".onnx",), "transformer_net": (".safetensors", ".pth", ".pt", ".model")}


class StyleModelError(MMR3Error, ValueError):
    """A style model that cannot be found, fetched, verified or loaded."""


class StyleModel(Protocol):
    name: str
    sha256: str
    kind: str

    def stylize(self, batch: np.ndarray) -> np.ndarray:
        """[N, H, W, 3] RGB uint8 (H, W multiples of 4) -> the same shape, restyled."""
        ...


# Johnson's ONNX graphs reflect-pad 40 px first, which needs sides above 40; the next multiple of 4.
MIN_SIDE = 44


def _check_batch(batch: np.ndarray) -> None:
    if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"style batch must be [N, H, W, 3] uint8 RGB, got {batch.shape} {batch.dtype}")
    h, w = batch.shape[1:3]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"style transfer needs sides of at least {MIN_SIDE} px, got {w}x{h}")
    if h % imgs.SIZE_MULTIPLE or w % imgs.SIZE_MULTIPLE:
        raise ValueError(
            f"style transfer needs sides that are multiples of {imgs.SIZE_MULTIPLE}, got {w}x{h}; "
            "resize with images.fit_size(..., multiple=4) first"
        )


def _to_uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- ONNX (Johnson's own)


class OnnxStyle:
    """One of Johnson's ONNX models, made size-free, on onnxruntime (CUDA when asked and present)."""

    kind = "onnx"

    def __init__(self, name: str, model_bytes: bytes, sha256: str, device: str = "cpu", threads: int = 0):
        import onnxruntime as ort

        self.name = name
        self.sha256 = sha256
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.providers = _onnx_providers(device)
        self._session = ort.InferenceSession(make_size_free(model_bytes), options, providers=self.providers)
        self._input = self._session.get_inputs()[0].name

    def stylize(self, batch: np.ndarray) -> np.ndarray:
        _check_batch(batch)
        # RGB -> BGR, NHWC -> NCHW, 0-255 float: the graph subtracts its own mean.
        x = np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        y = self._session.run(None, {self._input: x})[0]
        return _to_uint8(y.transpose(0, 2, 3, 1)[..., ::-1])


def _onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise StyleModelError(
            f"--device cuda: onnxruntime here has no CUDAExecutionProvider (has {available}); "
            "install onnxruntime-gpu, or use --device cpu"
        )
    return ["CPUExecutionProvider"]


# --------------------------------------------------------------------------- pytorch/examples TransformerNet


def _torch_modules():
    import torch
    from torch import nn

    class ConvLayer(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
            super().__init__()
            self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
            self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

        def forward(self, x):
            return self.conv2d(self.reflection_pad(x))

    class ResidualBlock(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
            self.in1 = nn.InstanceNorm2d(channels, affine=True)
            self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
            self.in2 = nn.InstanceNorm2d(channels, affine=True)
            self.relu = nn.ReLU()

        def forward(self, x):
            out = self.relu(self.in1(self.conv1(x)))
            return self.in2(self.conv2(out)) + x

    class UpsampleConvLayer(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, upsample: int):
            super().__init__()
            self.upsample = upsample
            self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
            self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

        def forward(self, x):
            x = torch.nn.functional.interpolate(x, mode="nearest", scale_factor=self.upsample)
            return self.conv2d(self.reflection_pad(x))

    class TransformerNet(nn.Module):
        """Johnson et al.'s image transformation network with instance norm, in pytorch/examples'
        module layout (`fast_neural_style/neural_style/transformer_net.py`), so its checkpoints'
        keys load unchanged: conv1/in1 ... res1-res5 ... deconv1-deconv3."""

        def __init__(self):
            super().__init__()
            self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
            self.in1 = nn.InstanceNorm2d(32, affine=True)
            self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
            self.in2 = nn.InstanceNorm2d(64, affine=True)
            self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
            self.in3 = nn.InstanceNorm2d(128, affine=True)
            self.res1 = ResidualBlock(128)
            self.res2 = ResidualBlock(128)
            self.res3 = ResidualBlock(128)
            self.res4 = ResidualBlock(128)
            self.res5 = ResidualBlock(128)
            self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
            self.in4 = nn.InstanceNorm2d(64, affine=True)
            self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
            self.in5 = nn.InstanceNorm2d(32, affine=True)
            self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
            self.relu = nn.ReLU()

        def forward(self, x):  # x: [N, 3, H, W] RGB in 0-255
            y = self.relu(self.in1(self.conv1(x)))
            y = self.relu(self.in2(self.conv2(y)))
            y = self.relu(self.in3(self.conv3(y)))
            y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
            y = self.relu(self.in4(self.deconv1(y)))
            y = self.relu(self.in5(self.deconv2(y)))
            return self.deconv3(y)

    return TransformerNet


def transformer_net():
    """A freshly initialised pytorch/examples `TransformerNet` (1,679,235 parameters)."""
    return _torch_modules()()


# Old pytorch/examples checkpoints carry InstanceNorm running stats that current torch rejects;
# pytorch/examples' own `stylize` deletes them the same way.
_DEPRECATED_KEYS = re.compile(r"in\d+\.running_(mean|var)$")


def load_transformer_net_state(path: Path) -> dict:
    """Reads a TransformerNet state dict without running pickled code.

    Raises:
        StyleModelError: the file holds anything but tensors (weights_only refuses it), or is not
            a checkpoint at all.
    """
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
            raise StyleModelError(
                f"cannot load {path} as a weights-only checkpoint ({type(err).__name__}: {err}). "
                "Only plain state dicts of tensors are accepted (arbitrary pickles are refused); "
                "convert the file to .safetensors or save its state_dict()."
            ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise StyleModelError(f"{path} holds a {type(state).__name__}, expected a TransformerNet state dict")
    return {k: v for k, v in state.items() if not _DEPRECATED_KEYS.search(k)}


class TorchStyle:
    """A pytorch/examples TransformerNet checkpoint, batched on a GPU when there is one."""

    kind = "transformer_net"

    def __init__(self, name: str, state: dict, sha256: str, device: str = "cpu", batch_size: int = 8):
        import torch

        self.name = name
        self.sha256 = sha256
        self.batch_size = batch_size
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise StyleModelError("--device cuda: torch sees no CUDA device; use --device cpu or auto")
        self.device = torch.device(device)
        net = transformer_net()
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise StyleModelError(
                f"style model {name!r} is not a pytorch/examples TransformerNet checkpoint: "
                f"missing keys {sorted(missing)[:6]}, unexpected keys {sorted(unexpected)[:6]}. "
                "Johnson's ONNX files go through the onnx format instead (--style-format onnx)."
            )
        self.net = net.eval().to(self.device)

    def stylize(self, batch: np.ndarray) -> np.ndarray:
        import torch

        _check_batch(batch)
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(batch[start : start + self.batch_size]))
                x = x.to(self.device).permute(0, 3, 1, 2).float()
                y = self.net(x).clamp(0, 255).round().to(torch.uint8)
                out.append(y.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)


# --------------------------------------------------------------------------- locating and loading


@dataclass(frozen=True)
class StyleModelSpec:
    """Where the candy / mosaic / udnie models come from.

    Attributes:
        location: a folder, an http(s) URL prefix, or "johnson-onnx" (Johnson's ONNX files at their
            pinned source, JOHNSON_ONNX_URL). Files are named `<style><suffix>`.
        format: "onnx", "transformer_net" or "auto" (by the files' suffixes).
        device: "auto", "cpu" or "cuda".
        cache_dir: where downloaded models are kept.
    """

    location: str
    format: str = "auto"
    device: str = "auto"
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise StyleModelError(f"unknown style model format {self.format!r}; expected one of {FORMATS}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise StyleModelError(f"unknown device {self.device!r}; expected auto, cpu or cuda")


def default_model_cache() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmr3" / "style-models"


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _download(url: str, dest: Path, expected_sha256: str | None) -> None:
    import httpx

    with atomic_target(dest, suffix=".part") as tmp:
        with open(tmp, "wb") as f, httpx.stream("GET", url, follow_redirects=True, timeout=60) as resp:
            if resp.status_code != 200:
                raise StyleModelError(f"downloading style model {url}: HTTP {resp.status_code}")
            for block in resp.iter_bytes():
                f.write(block)
        actual = imgs.sha256_file(tmp)
        if expected_sha256 and actual != expected_sha256:
            raise StyleModelError(
                f"style model {url} has sha256 {actual}, expected {expected_sha256}: "
                "the file at that address changed or the download was corrupted"
            )


def resolve_style_files(spec: StyleModelSpec, names: Sequence[str] = NETWORK_STYLES) -> dict[str, Path]:
    """One local file per style name, downloading into the cache when the location is a URL."""
    location = JOHNSON_ONNX_URL if spec.location == JOHNSON_ONNX_ALIAS else spec.location
    suffixes = _SUFFIXES["onnx"] + _SUFFIXES["transformer_net"] if spec.format == "auto" else _SUFFIXES[spec.format]
    files: dict[str, Path] = {}
    if _is_url(location):
        cache = Path(spec.cache_dir) if spec.cache_dir else default_model_cache()
        suffix = ".onnx" if spec.format in ("auto", "onnx") else ".pth"
        base = location if location.endswith("/") else location + "/"
        for name in names:
            expected = JOHNSON_ONNX_SHA256.get(name) if location == JOHNSON_ONNX_URL else None
            url = f"{base}{name}{suffix}"
            dest = cache / re.sub(r"[^A-Za-z0-9._-]", "_", base.split("://", 1)[1]) / f"{name}{suffix}"
            if not dest.is_file():
                log.info("downloading style model %s", url)
                _download(url, dest, expected)
            files[name] = dest
        return files
    folder = Path(os.path.expanduser(location))
    if not folder.is_dir():
        raise StyleModelError(
            f"style model folder {folder} does not exist. Fetch Johnson's candy/mosaic/udnie ONNX models "
            f"from {JOHNSON_ONNX_URL}<style>.onnx (research-use licence) into a folder and pass "
            f"--style-models FOLDER, or pass --style-models {JOHNSON_ONNX_ALIAS} to download them."
        )
    for name in names:
        found = [folder / f"{name}{s}" for s in suffixes if (folder / f"{name}{s}").is_file()]
        if not found:
            raise StyleModelError(
                f"no {name} model in {folder} (looked for {', '.join(name + s for s in suffixes)}); "
                f"Johnson's ONNX file is at {JOHNSON_ONNX_URL}{name}.onnx, pytorch/examples' TransformerNet "
                f"checkpoints in {TRANSFORMER_NET_ZIP_URL} (unzip it, pass its saved_models folder)"
            )
        files[name] = found[0]
    return files


def load_style_models(
    spec: StyleModelSpec, names: Sequence[str] = NETWORK_STYLES, threads: int = 0, batch_size: int = 8
) -> dict[str, StyleModel]:
    """Loads candy, mosaic and udnie (or `names`) from `spec`, verifying Johnson's ONNX hashes."""
    models: dict[str, StyleModel] = {}
    for name, path in resolve_style_files(spec, names).items():
        digest = imgs.sha256_file(path)
        if path.suffix == ".onnx":
            known = JOHNSON_ONNX_SHA256.get(name)
            if known and digest != known:
                log.warning(
                    "style model %s has sha256 %s, not the published %s file's %s; the manifest records it",
                    path,
                    digest,
                    name,
                    known,
                )
            models[name] = OnnxStyle(name, path.read_bytes(), digest, device=spec.device, threads=threads)
        else:
            models[name] = TorchStyle(
                name, load_transformer_net_state(path), digest, device=spec.device, batch_size=batch_size
            )
    return models


def restyle(image: np.ndarray, models: dict[str, StyleModel]) -> dict[str, np.ndarray]:
    """All four styles of one [H, W, 3] uint8 image, in schema.STYLES order."""
    return {k: v[0] for k, v in restyle_batch(image[None], models).items()}


def restyle_batch(batch: np.ndarray, models: dict[str, StyleModel]) -> dict[str, np.ndarray]:
    """All four styles of a [N, H, W, 3] uint8 batch, in schema.STYLES order."""
    from PIL import Image

    out: dict[str, np.ndarray] = {}
    for style in schema.STYLES:
        if style == "grayscale":
            out[style] = np.stack([np.asarray(imgs.grayscale(Image.fromarray(x, "RGB"))) for x in batch])
        else:
            if style not in models:
                raise StyleModelError(f"no model loaded for style {style!r}; loaded: {sorted(models)}")
            out[style] = models[style].stylize(batch)
    return out
