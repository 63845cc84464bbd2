"""Generation throughput: mmr3_llava (batched) against lmms-eval's llava_hf (one sample at a time).

CPU part (always): one random LLaVA, built offline, answers the demo group `mmr3_mini` through the
real lmms-eval machinery (`simple_evaluate` with the model id, as `lmms-eval --model ...` builds
it), once as `mmr3_llava` at batch 8 and once as lmms-eval's `llava_hf` at batch 1, alternating,
`--repeats` times. Reported per side: samples/s of the generation phase (time inside the model's
generate_until, which is what batching changes) and the end-to-end seconds of simple_evaluate
(model load, data, scoring included). Target: ratio of generation samples/s >= 3.

The model is a *benchmark-size* tiny LLaVA (Llama LM 256 wide, 4 layers; CLIP tower 64 wide):
the 70k-parameter test model is so small that per-call overhead, not generation, would be
timed. Both sides generate the same number of tokens: the random model never emits EOS or a
newline (mmr3_adapters.tiny), so every answer runs to the task's max_new_tokens (64).

GPU part (only when torch.cuda.is_available()): the full-size LLaVA-1.5-7B architecture
(CLIP ViT-L/14-336 + Vicuna-7B dims) with random fp16 weights, no download, through our
generator at batch 1, 8 and 32 with exactly 32 new tokens: samples/s and peak GPU memory.

Run: python benchmarks/models_throughput.py [--repeats 3] [--limit N] [--threads 1] [--skip-gpu]
Needs decord for llava_hf (`pip install lmms-eval-mmr3[bench]`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH_SIZE = {"text_hidden": 256, "text_layers": 4, "text_heads": 4, "vision_hidden": 64, "vision_layers": 2}
OUR_BATCH = 8
TARGET_RATIO = 3.0
GPU_BATCHES = (1, 8, 32)
GPU_NEW_TOKENS = 32


class GenerateTimer:
    """Wraps a model class's generate_until to record (seconds, requests) per call."""

    def __init__(self, cls: type) -> None:
        self.calls: list[tuple[float, int]] = []
        original = cls.generate_until

        def generate_until(model, requests):
            start = time.perf_counter()
            out = original(model, requests)
            self.calls.append((time.perf_counter() - start, len(requests)))
            return out

        cls.generate_until = generate_until

    def take(self) -> tuple[float, int]:
        seconds, n = sum(c[0] for c in self.calls), sum(c[1] for c in self.calls)
        self.calls.clear()
        return seconds, n


def cpu_comparison(repeats: int, limit: int | None, workdir: Path) -> float:
    from lmms_eval import models
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from mmr3_adapters.tiny import TinyLlavaSize, build_tiny_llava
    from mmr3_tasks import lmms_plugin

    path = build_tiny_llava(workdir / "bench-llava", size=TinyLlavaSize(**BENCH_SIZE))
    n_params = sum(p.numel() for p in _load_params(path))
    print(f"benchmark LLaVA: {n_params / 1e6:.2f} M random parameters at {path}")
    task_manager = TaskManager("WARNING", include_path=lmms_plugin.tasks_dir(), include_defaults=False)
    sides = {
        f"mmr3_llava  batch {OUR_BATCH}": ("mmr3_llava", f"pretrained={path},dtype=float32", OUR_BATCH),
        "llava_hf    batch 1": ("llava_hf", f"pretrained={path},dtype=float32,device_map=cpu", 1),
    }
    timers = {label: GenerateTimer(models.get_model(model_id)) for label, (model_id, _, _) in sides.items()}
    rows: dict[str, list[tuple[float, float, int]]] = {label: [] for label in sides}
    for rep in range(repeats):
        for label, (model_id, model_args, batch_size) in sides.items():
            start = time.perf_counter()
            results = simple_evaluate(
                model=model_id,
                model_args=model_args,
                tasks=["mmr3_mini"],
                batch_size=batch_size,
                device="cpu",
                limit=limit,
                task_manager=task_manager,
                log_samples=True,
            )
            wall = time.perf_counter() - start
            gen_seconds, n = timers[label].take()
            _check_answers(results, label)
            rows[label].append((n / gen_seconds, wall, n))
            rate = n / gen_seconds
            print(f"  rep {rep + 1}  {label}: {n} samples, {rate:7.2f} samples/s generating, {wall:6.1f} s end to end")
    print("\nmedian over repetitions")
    medians = {}
    for label, values in rows.items():
        medians[label] = statistics.median(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        print(f"  {label}: {medians[label]:7.2f} samples/s generating, {wall:6.1f} s end to end")
    ours, theirs = medians.values()
    ratio = ours / theirs
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"  ratio mmr3_llava / llava_hf: {ratio:.2f}x ({verdict} the {TARGET_RATIO:.0f}x target)")
    return ratio


def _load_params(path: Path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors")).values()


def _check_answers(results: dict, label: str) -> None:
    """A benchmark of empty answers would measure nothing: every sample must hold text."""
    for task, samples in results["samples"].items():
        empty = [s["doc_id"] for s in samples if not str(s["filtered_resps"][0]).strip()]
        if empty:
            raise RuntimeError(f"{label}: empty answers for {task} docs {empty[:10]}")


# LLaVA-1.5-7B (llava-hf/llava-1.5-7b-hf's config.json): CLIP ViT-L/14 at 336 px, Vicuna-7B.
LLAVA_7B_VISION = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "image_size": 336, "patch_size": 14, "projection_dim": 768,
}  # fmt: skip
LLAVA_7B_TEXT = {
    "vocab_size": 32064, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
}  # fmt: skip


def full_size_llava(device: str = "cuda", dtype_name: str = "float16", vision=None, text=None) -> None:
    """LLaVA-1.5-7B dims, random weights, our generator: samples/s and peak memory per batch size.

    The tokenizer is the tiny one (ids < 400 are valid in the 32k vocabulary) and the image token is
    re-pointed to its `<image>` id; neither changes the cost. Prompts: three demo questions, one
    image each. `vision` / `text` override the dims (a CPU smoke run of this code path uses tiny ones).
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from mmr3_adapters import tiny
    from mmr3_adapters.generation import GenerationSettings
    from mmr3_adapters.hf_models import LlavaGenerator, Sample

    vision, text = vision or LLAVA_7B_VISION, text or LLAVA_7B_TEXT
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text),
        image_token_index=tiny.IMAGE_TOKEN_ID,
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: no float32 copy of 7B weights
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    size = vision["image_size"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size},
            image_mean=tiny.CLIP_MEAN, image_std=tiny.CLIP_STD,
        ),
        tokenizer=tiny.build_tokenizer("llama", declare_image_token=True),
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tiny.LLAVA_CHAT_TEMPLATE,
    )  # fmt: skip
    generator = LlavaGenerator(model, processor)
    settings = GenerationSettings.from_gen_kwargs({"max_new_tokens": GPU_NEW_TOKENS, "min_new_tokens": GPU_NEW_TOKENS})
    questions = [
        "What is shown in this picture?",
        "Please describe the place in the image in two sentences.",
        "What kind of object is in the masked region?",
    ]
    image = _sample_image()
    cuda = device.startswith("cuda")
    where = torch.cuda.get_device_name() if cuda else device
    n_params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"\n{where}: LLaVA-1.5 architecture, {n_params:.2f} B random {dtype_name} parameters")
    print(f"  {GPU_NEW_TOKENS} new tokens per answer, one {image.size[0]}x{image.size[1]} image per prompt")
    for batch_size in GPU_BATCHES:
        samples = [Sample(f"s{i}", questions[i % len(questions)], (image,)) for i in range(batch_size)]
        generator.generate(samples, settings)  # warm-up (kernels, allocator)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rounds, start = 3, time.perf_counter()
        for _ in range(rounds):
            answers = generator.generate(samples, settings)
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / rounds
        peak = f"{torch.cuda.max_memory_allocated() / 2**30:6.1f} GiB" if cuda else "n/a (CPU)"
        tokens = sum(a.output_tokens for a in answers)  # pad / EOS ids a random model emits are not counted
        print(
            f"  batch {batch_size:3d}: {batch_size / seconds:8.2f} samples/s, "
            f"{tokens / seconds:9.1f} answer tokens/s, peak memory {peak}"
        )


def _sample_image():
    from PIL import Image

    try:
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image("china.jpg"))
    except ImportError:
        return Image.new("RGB", (640, 480), (120, 140, 160))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side (default 3)")
    parser.add_argument("--limit", type=int, default=None, help="docs per task (default: the whole demo set)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for both sides (default 1: on a shared small machine, OpenMP spin-waiting "
        "under contention made multi-thread timings swing by 10x; 0 keeps torch's default)",
    )
    parser.add_argument("--skip-gpu", action="store_true", help="skip the full-size GPU measurement")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads, cuda = torch.get_num_threads(), torch.cuda.is_available()
    print(f"torch {torch.__version__}, {threads} CPU threads, cuda available: {cuda}")
    with tempfile.TemporaryDirectory(prefix="mmr3-bench-") as tmp:
        os.environ.setdefault("HF_HOME", str(Path(tmp) / "hf"))
        ratio = cpu_comparison(args.repeats, args.limit, Path(tmp))
    if torch.cuda.is_available() and not args.skip_gpu:
        full_size_llava("cuda", "float16")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
