"""Style-transfer throughput: Johnson's ONNX models (onnxruntime) and pytorch/examples
TransformerNet (torch, random weights), on CPU and, when there is one, batched on a GPU.

    python benchmarks/build_styles.py [--style-models ../shared/style-models] [--sizes 224,640,1024]
        [--images 8] [--batch 8] [--device auto|cpu|cuda]

Reports images/s for one style and for the three network styles of a restyle group (grayscale is
negligible). The ONNX models are research-use files the project never ships (docs/data.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from mmr3_tasks.builder.styles import StyleModelSpec, TorchStyle, load_style_models, transformer_net

ROOT = Path(__file__).resolve().parents[1]


def rate(model, batch: np.ndarray, batch_size: int, repeat: int = 1) -> float:
    model.stylize(batch[:batch_size])  # warm-up (CUDA kernels, allocator)
    started = time.perf_counter()
    for _ in range(repeat):
        for start in range(0, len(batch), batch_size):
            model.stylize(batch[start : start + batch_size])
    return repeat * len(batch) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style-models", default=str(ROOT.parent / "shared" / "style-models"))
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
    have_onnx = Path(args.style_models).is_dir() and ort is not None
    if not have_onnx:
        print(f"no onnxruntime or no style models at {args.style_models}: Johnson ONNX not measured")
    for device in devices:
        onnx = {}
        if have_onnx and device == "cuda" and "CUDAExecutionProvider" not in providers:
            print("cuda: onnxruntime here has no CUDAExecutionProvider (onnxruntime-gpu): Johnson ONNX not measured")
        elif have_onnx:
            onnx = load_style_models(StyleModelSpec(args.style_models, format="onnx", device=device))
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
