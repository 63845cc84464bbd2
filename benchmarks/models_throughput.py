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
newline (mmr3_adapters.models.tiny), so every answer runs to the task's max_new_tokens (64).

GPU part (only when torch.cuda.is_available()): the full-size LLaVA-1.5-7B architecture
(CLIP ViT-L/14-336 + Vicuna-7B dims) and BLIP-2 OPT-2.7b architecture (ViT-g + Q-Former + OPT-2.7b),
random fp16 weights, no download, through our generator at batch 1, 8 and 32 with exactly 32 new
tokens: samples/s and peak GPU memory; and, on the same samples, the model's own `generate` one
sample at a time (the loop lmms-eval's llava_hf runs) as the baseline.

Run: python benchmarks/models_throughput.py [--repeats 3] [--limit N] [--threads 1] [--skip-gpu]
     python benchmarks/models_throughput.py --gpu-only [--families llava,blip2] [--json out.json]
     python benchmarks/models_throughput.py --smoke   (the GPU code path with tiny dims on CPU)
The CPU part needs lmms-eval and decord (`pip install lmms-eval-mmr3[bench]`); --gpu-only and
--smoke need only torch and transformers (benchmarks/gpu_check.sh runs them on a bare GPU machine).
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

    from mmr3_adapters.models.tiny import TinyLlavaSize, build_tiny_llava
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
# BLIP-2 OPT-2.7b (Salesforce/blip2-opt-2.7b's config.json): EVA ViT-g/14 at 224 px, 32 queries, OPT-2.7b
# (vocabulary 50304: the checkpoint's embeddings were resized when `<image>` was added).
BLIP2_VISION = {
    "hidden_size": 1408, "intermediate_size": 6144, "num_hidden_layers": 39, "num_attention_heads": 16,
    "image_size": 224, "patch_size": 14,
}  # fmt: skip
BLIP2_QFORMER = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "encoder_hidden_size": 1408, "vocab_size": 30522,
}  # fmt: skip
BLIP2_OPT_TEXT = {
    "vocab_size": 50304, "hidden_size": 2560, "ffn_dim": 10240, "num_hidden_layers": 32, "num_attention_heads": 32,
    "word_embed_proj_dim": 2560, "max_position_embeddings": 2048,
}  # fmt: skip
BLIP2_QUERIES = 32
# Tiny dims of the same code path, for `--smoke` (any machine, seconds).
SMOKE = {
    "llava": {
        "vision": {**LLAVA_7B_VISION, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "projection_dim": 32},
        "text": {**LLAVA_7B_TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "num_key_value_heads": 2},
    },
    "blip2": {
        "vision": {**BLIP2_VISION, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2},
        "qformer": {**BLIP2_QFORMER, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "encoder_hidden_size": 32},
        "text": {**BLIP2_OPT_TEXT, "hidden_size": 64, "ffn_dim": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 2, "word_embed_proj_dim": 64},
    },
}  # fmt: skip
QUESTIONS = (
    "What is shown in this picture?",
    "Please describe the place in the image in two sentences.",
    "What kind of object is in the masked region?",
)


def _random_model(model_class, config, device: str, dtype):
    """Random weights initialised directly in `dtype` on `device`: no float32 copy of 7B weights."""
    import torch

    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return model_class(config).eval()
    finally:
        torch.set_default_dtype(default_dtype)


def full_size_llava(device: str, dtype_name: str, dims: dict | None = None):
    """LLaVA-1.5-7B architecture with random weights, and our generator over it.

    The tokenizer is the tiny one (ids < 400 are valid in the 32k vocabulary) and the image token is
    re-pointed to its `<image>` id; neither changes the cost. `dims` overrides the vision / text
    dims (`SMOKE["llava"]` runs the same code with tiny ones).
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from mmr3_adapters.models import LlavaGenerator, tiny

    vision, text = (dims or {}).get("vision", LLAVA_7B_VISION), (dims or {}).get("text", LLAVA_7B_TEXT)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text),
        image_token_index=tiny.IMAGE_TOKEN_ID,
        image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = _random_model(LlavaForConditionalGeneration, config, device, getattr(torch, dtype_name))
    processor = tiny.llava_processor(vision["image_size"], vision["patch_size"])
    return LlavaGenerator(model, processor)


def full_size_blip2(device: str, dtype_name: str, dims: dict | None = None):
    """BLIP-2 OPT-2.7b architecture with random weights, and our generator over it (see full_size_llava)."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        OPTConfig,
    )

    from mmr3_adapters.models import Blip2Generator, tiny

    dims = dims or {}
    vision = dims.get("vision", BLIP2_VISION)
    qformer = dims.get("qformer", BLIP2_QFORMER)
    text = dims.get("text", BLIP2_OPT_TEXT)
    ids = {
        name: tiny.SPECIAL_TOKENS.index(tok) for name, tok in (("bos", tiny.BOS), ("eos", tiny.EOS), ("pad", tiny.PAD))
    }
    config = Blip2Config(
        vision_config=Blip2VisionConfig(**vision).to_dict(),
        qformer_config=Blip2QFormerConfig(**qformer).to_dict(),
        text_config=OPTConfig(**text, **{f"{k}_token_id": v for k, v in ids.items()}).to_dict(),
        num_query_tokens=BLIP2_QUERIES,
        image_token_index=tiny.IMAGE_TOKEN_ID,
    )
    model = _random_model(Blip2ForConditionalGeneration, config, device, getattr(torch, dtype_name))
    processor = tiny.blip2_processor("opt", vision["image_size"], BLIP2_QUERIES)
    return Blip2Generator(model, processor)


FULL_SIZE = {"llava": ("LLaVA-1.5-7B", full_size_llava), "blip2": ("BLIP-2 OPT-2.7b", full_size_blip2)}


def full_size(
    family: str,
    device: str = "cuda",
    dtype_name: str = "float16",
    batches: tuple[int, ...] = GPU_BATCHES,
    new_tokens: int = GPU_NEW_TOKENS,
    rounds: int = 3,
    smoke: bool = False,
    on_row=None,
) -> list[dict]:
    """Samples/s and peak memory of our batched generator per batch size, and of the model's own
    `generate` one sample at a time (what lmms-eval's llava_hf does) on the same samples.

    min_new_tokens = max_new_tokens, so every answer is exactly `new_tokens` long; the new-token ids
    are counted as decoded, and any other width raises. (The random model's ids mostly lie beyond
    the tiny tokenizer's 400, so the decoded texts are empty: the ids, not the texts, are counted.)

    Returns one dict per measured line (also printed), for `--json`; `on_row(rows so far)` is
    called after each line.
    """
    import torch

    from mmr3_adapters.models import Sample
    from mmr3_adapters.models.generation import GenerationSettings

    name, build = FULL_SIZE[family]
    started = time.perf_counter()
    generator = build(device, dtype_name, SMOKE[family] if smoke else None)
    model = generator.model
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    build_seconds = time.perf_counter() - started
    settings = GenerationSettings.from_gen_kwargs({"max_new_tokens": new_tokens, "min_new_tokens": new_tokens})
    image = _sample_image()
    where = torch.cuda.get_device_name() if cuda else device
    n_params = sum(p.numel() for p in model.parameters()) / 1e9
    attn = getattr(model.config, "_attn_implementation", None)
    label = f"{name} architecture{' (SMOKE: tiny dims)' if smoke else ''}"
    print(
        f"\n{where}: {label}, {n_params:.2f} B random {dtype_name} parameters, attention {attn}, "
        f"built in {build_seconds:.1f} s"
    )
    print(f"  {new_tokens} new tokens per answer, one {image.size[0]}x{image.size[1]} image per prompt")
    base = {"model": name, "smoke": smoke, "device": where, "dtype": dtype_name, "params_b": round(n_params, 3),
            "attn_implementation": attn, "new_tokens": new_tokens}  # fmt: skip
    rows = []

    # Both paths decode their new-token ids through _decode: count what was really generated there.
    generated: list[int] = []
    decode = generator._decode

    def counting_decode(new_token_ids, batch, settings_):
        if new_token_ids.shape[1] != new_tokens:
            raise RuntimeError(f"{name}: generated {new_token_ids.shape[1]} tokens per answer, not {new_tokens}")
        generated.append(new_token_ids.numel())
        return decode(new_token_ids, batch, settings_)

    generator._decode = counting_decode

    def timed(run) -> tuple[float, int, float | None]:
        run()  # warm-up (kernels, allocator)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        generated.clear()
        start = time.perf_counter()
        for _ in range(rounds):
            run()
        if cuda:
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        return (time.perf_counter() - start) / rounds, sum(generated) // rounds, peak

    def samples_of(n: int) -> list:
        return [Sample(f"s{i}", QUESTIONS[i % len(QUESTIONS)], (image,)) for i in range(n)]

    def record(how: str, batch_size: int, n: int, seconds: float, tokens: int, peak: float | None) -> None:
        row = {**base, "how": how, "batch_size": batch_size, "samples": n, "seconds": round(seconds, 4),
               "samples_per_s": round(n / seconds, 3), "new_tokens_per_s": round(tokens / seconds, 1),
               "peak_gib": None if peak is None else round(peak, 2)}  # fmt: skip
        rows.append(row)
        memory = f"{peak:6.1f} GiB" if peak is not None else "n/a (CPU)"
        print(
            f"  {how:26s} batch {batch_size:3d}: {row['samples_per_s']:8.2f} samples/s, "
            f"{row['new_tokens_per_s']:9.1f} new tokens/s, peak memory {memory}",
            flush=True,
        )

    for batch_size in batches:
        samples = samples_of(batch_size)
        seconds, tokens, peak = timed(lambda s=samples: generator.generate(s, settings))
        record("mmr3 batched generator", batch_size, batch_size, seconds, tokens, peak)
        if on_row:
            on_row(rows)
    # The model's own generate, one sample at a time, as lmms-eval's llava_hf loops: the baseline.
    samples = samples_of(max(batches))[: min(8, max(batches))]
    seconds, tokens, peak = timed(lambda: generator.reference_generate(samples, settings))
    record("HF generate, one at a time", 1, len(samples), seconds, tokens, peak)
    if on_row:
        on_row(rows)
    return rows


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
    parser.add_argument(
        "--gpu-only",
        action="store_true",
        help="only the full-size GPU measurement: needs torch and transformers, not lmms-eval",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run the full-size code path with tiny dims on CPU in seconds (checks an environment; no lmms-eval)",
    )
    parser.add_argument(
        "--families", default="llava,blip2", help="full-size architectures to measure (default llava,blip2)"
    )
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--json", type=Path, help="also write the full-size figures to this JSON file")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FULL_SIZE))
    if unknown:
        parser.error(f"--families: unknown {unknown}; choose from {sorted(FULL_SIZE)}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads, cuda = torch.get_num_threads(), torch.cuda.is_available()
    print(f"torch {torch.__version__}, {threads} CPU threads, cuda available: {cuda}")
    if args.gpu_only and not cuda and not args.smoke:
        parser.error("--gpu-only: torch sees no CUDA device here; add --smoke for the tiny CPU run")
    ratio, rows = TARGET_RATIO, []
    if not (args.gpu_only or args.smoke):
        with tempfile.TemporaryDirectory(prefix="mmr3-bench-") as tmp:
            os.environ.setdefault("HF_HOME", str(Path(tmp) / "hf"))
            ratio = cpu_comparison(args.repeats, args.limit, Path(tmp))

    def save(family_rows: list[dict]) -> None:  # after every line: a later crash or timeout loses nothing
        if args.json:
            _write_json(args.json, rows + family_rows)

    if args.smoke:
        for family in families:
            rows += full_size(family, "cpu", "float32", batches=(1, 2), new_tokens=4, rounds=1, smoke=True, on_row=save)
    elif cuda and not args.skip_gpu:
        import gc

        for family in families:
            rows += full_size(family, "cuda", args.dtype, on_row=save)
            gc.collect()  # the model goes before the next one is built and its peak is read
            torch.cuda.empty_cache()
    return 0 if ratio >= TARGET_RATIO else 1


def _write_json(path: Path, rows: list[dict]) -> None:
    import json

    from mmr3_tasks.builder.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
