"""Style-transfer throughput: Johnson's ONNX models (onnxruntime) and pytorch/examples
TransformerNet (torch, random weights), on CPU and, when there is one, batched on a GPU.

    python benchmarks/build_styles.py [--style-models johnson-onnx|DIR] [--sizes 224,640,1024]
        [--images 8] [--batch 8] [--device auto|cpu|cuda]

Reports images/s for one style and for the three network styles of a restyle group (grayscale is
negligible). The ONNX models are research-use files the project never ships (docs/data.md):
`johnson-onnx` (the default) fetches them once from their pinned address into
~/.cache/mmr3/style-models, as `mmr3 build --style-models johnson-onnx` does, and reads them from
there afterwards; DIR is a folder holding candy.onnx, mosaic.onnx and udnie.onnx. Where they cannot
be had (no network, no cached copy), Johnson ONNX is reported as not measured, with how to get them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from mmr3_tasks.builder.styles import (
    JOHNSON_ONNX_ALIAS,
    StyleModelError,
    StyleModelSpec,
    TorchStyle,
    load_style_models,
    resolve_style_files,
    transformer_net,
)

# Prints the folder holding the three models, downloading them first if they are not cached.
FETCH = (
    'python -c "from mmr3_tasks.builder.styles import StyleModelSpec, resolve_style_files; '
    "print(resolve_style_files(StyleModelSpec('johnson-onnx', format='onnx'))['candy'].parent)\""
)


def rate(model, batch: np.ndarray, batch_size: int, repeat: int = 1) -> float:
    model.stylize(batch[:batch_size])  # warm-up (CUDA kernels, allocator)
    started = time.perf_counter()
    for _ in range(repeat):
        for start in range(0, len(batch), batch_size):
            model.stylize(batch[start : start + batch_size])
    return repeat * len(batch) / (time.perf_counter() - started)


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises: httpx's transport errors (offline) are not OSErrors."""
    try:
        import httpx
    except ImportError:  # the download itself then raises ImportError
        return (ImportError, OSError)
    return (ImportError, OSError, httpx.HTTPError)


def johnson_onnx_folder(location: str) -> Path | None:
    """The folder of Johnson's three ONNX models (fetched into the cache for `johnson-onnx`), or None
    with the reason and the fix printed when they cannot be had here."""
    try:
        return resolve_style_files(StyleModelSpec(location, format="onnx"))["candy"].parent
    except StyleModelError as err:  # a folder without them, a changed file at the pinned address
        reason = str(err)
    except _fetch_errors() as err:  # offline, or no httpx to download with
        reason = f"cannot download them here ({type(err).__name__}: {err})"
    print(
        f"no Johnson ONNX style models from {location!r}: {reason}\n  Johnson ONNX not measured. Fetch them once "
        f"on a machine with a network, `{FETCH}` (it prints their folder; `mmr3 build --style-models "
        f"{JOHNSON_ONNX_ALIAS}` fetches the same files), then rerun, or pass --style-models FOLDER."
    )
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--style-models",
        default=JOHNSON_ONNX_ALIAS,
        help="johnson-onnx: Johnson's ONNX files, fetched once into ~/.cache/mmr3/style-models (default); "
        "or a folder of candy.onnx, mosaic.onnx and udnie.onnx",
    )
    parser.add_argument("--sizes", default="224,640,1024")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    import torch

    try:
        import onnxruntime as ort
    except ImportError:  # TransformerNet (torch) is still measured
        ort = None

    devices = ["cpu"] if args.device == "cpu" else (["cuda"] if args.device == "cuda" else ["cpu"])
    if args.device == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    providers = ort.get_available_providers() if ort else []
    runtime = f"onnxruntime {ort.__version__} providers: {providers}" if ort else "no onnxruntime"
    print(f"cpu cores: {os.cpu_count()}  torch {torch.__version__} cuda: {torch.cuda.is_available()}  {runtime}")
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    folder = johnson_onnx_folder(args.style_models) if ort is not None else None
    if ort is None:
        print("no onnxruntime: Johnson ONNX not measured")
    have_onnx = folder is not None
    for device in devices:
        onnx = {}
        if have_onnx and device == "cuda" and "CUDAExecutionProvider" not in providers:
            print("cuda: onnxruntime here has no CUDAExecutionProvider (onnxruntime-gpu): Johnson ONNX not measured")
        elif have_onnx:
            onnx = load_style_models(StyleModelSpec(str(folder), format="onnx", device=device))
        torch.manual_seed(0)
        tnet = TorchStyle("candy", transformer_net().state_dict(), "random", device=device, batch_size=args.batch)
        for size in sizes:
            n = args.images if device == "cpu" else max(args.images, 4 * args.batch)
            batch = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            bs = 1 if device == "cpu" else args.batch
            line = f"{device:4s} {size:4d}x{size:<4d} batch {bs:2d}:"
            if onnx:
                providers = onnx["candy"].providers[0]
                one = rate(onnx["candy"], batch, bs)
                line += f"  johnson-onnx ({providers}) {one:7.2f} img/s per style, {one / 3:6.2f} groups/s"
            line += f"  |  TransformerNet {rate(tnet, batch, bs):7.2f} img/s per style"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
