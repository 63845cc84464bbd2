"""The consistency adapter's cost: its size, training samples/s, memory, and added time per answer.

CPU part (default): the benchmark-size random LLaVA of models_throughput.py (Llama LM 256 wide,
4 layers) and an adapter of P-Adapter sizes for it. Side by side in one run:
  - the adapter's parameter count, against the backbone's;
  - training samples/s at the paper's batch size 2, the adapter and the LoRA baseline, alternating;
  - time per generated answer with and without the adapter (same samples, 32 new tokens each,
    alternating repetitions): the added latency, as a ratio.

GPU part (--gpu-only, only with CUDA): the full-size LLaVA-1.5-7B and BLIP-2 Flan-T5-XXL
architectures with random bf16 weights (no download) and an adapter at H = 4096:
  - peak memory of one training step at batch 2 in bf16 (target: fits the paper's 48 GB A40);
  - training samples/s;
  - added latency per answer with the adapter (target under 10 %), at batch 1 and 8.

--meta: the full-size parameter counts and static training memory (weights, gradients, Adam
states) computed on the meta device, no memory used; --activations: the activation memory of the
training step, measured on CPU at full width and 1 and 2 LLM layers (bytes autograd saves for the
backward pass) and extrapolated linearly to the full depth. --smoke: the GPU code path with tiny
dims on CPU, in seconds.

Run: python benchmarks/adapter_train.py [--steps 12] [--answers 16] [--repeats 3] [--threads 1]
     python benchmarks/adapter_train.py --gpu-only [--families llava,blip2-t5] [--json out.json]
     python benchmarks/adapter_train.py --meta [--activations]
     python benchmarks/adapter_train.py --smoke
A script, not a timed test. Needs torch and transformers only (no lmms-eval, no datasets).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import models_throughput as mt  # noqa: E402  (the full-size architectures and the benchmark-size LLaVA)

A40_GIB = 48 * 10**9 / 2**30  # the paper's GPU: 48 GB = 44.7 GiB
LATENCY_TARGET = 0.10
NEW_TOKENS = 32
PROMPTS = ("What is shown in this picture?", "Please describe the place in the image in two sentences.")
ANSWERS = ("a red bus", "a church near the river")

# BLIP-2 Flan-T5-XXL (Salesforce/blip2-flan-t5-xxl's config.json): ViT-g and Q-Former as blip2-opt-2.7b,
# T5 v1.1 XXL (d_model 4096, 24 + 24 layers, 64 heads, gated-GELU), the MM-R³ paper's BLIP-2.
T5_XXL_TEXT = {
    "vocab_size": 32128, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_decoder_layers": 24,
    "num_heads": 64, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
}  # fmt: skip
SMOKE_T5 = {
    **T5_XXL_TEXT,
    "d_model": 64,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
}


def full_size_blip2_t5(device: str, dtype_name: str, dims: dict | None = None):
    """BLIP-2 Flan-T5-XXL architecture with random weights, and our generator over it."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        T5Config,
    )

    from mmr3_adapters.models import Blip2Generator, tiny

    dims = dims or {}
    vision, qformer = dims.get("vision", mt.BLIP2_VISION), dims.get("qformer", mt.BLIP2_QFORMER)
    text = dims.get("text", T5_XXL_TEXT)
    ids = {tok: tiny.SPECIAL_TOKENS.index(tok) for tok in (tiny.EOS, tiny.PAD)}
    config = Blip2Config(
        vision_config=Blip2VisionConfig(**vision).to_dict(),
        qformer_config=Blip2QFormerConfig(**qformer).to_dict(),
        text_config=T5Config(
            **text, eos_token_id=ids[tiny.EOS], pad_token_id=ids[tiny.PAD], decoder_start_token_id=ids[tiny.PAD]
        ).to_dict(),
        num_query_tokens=mt.BLIP2_QUERIES,
        image_token_index=tiny.IMAGE_TOKEN_ID,
    )
    model = mt._random_model(Blip2ForConditionalGeneration, config, device, getattr(torch, dtype_name))
    processor = tiny.blip2_processor("t5", vision["image_size"], mt.BLIP2_QUERIES)
    return Blip2Generator(model, processor)


FULL_SIZE = {
    "llava": ("LLaVA-1.5-7B", mt.full_size_llava, mt.SMOKE["llava"]),
    "blip2-t5": ("BLIP-2 Flan-T5-XXL", full_size_blip2_t5, {**mt.SMOKE["blip2"], "text": SMOKE_T5}),
}


def make_adapter(generator, device, seed: int = 0):
    import torch

    from mmr3_adapters.adapter import AdapterConfig, ConsistencyAdapter

    torch.manual_seed(seed)
    config = AdapterConfig(hidden_size=generator.hidden_size, backbone=generator.backbone)
    return ConsistencyAdapter(config).to(device)


def samples_of(n: int, image):
    from mmr3_adapters.models import Sample

    return [Sample(f"s{i}", PROMPTS[i % len(PROMPTS)], (image,)) for i in range(n)]


def training_steps(generator, trainable_params, samples, steps: int, precision: str, device: str) -> float:
    """Seconds per optimizer step at len(samples) rows, after one warm-up step (the paper's recipe:
    cross-entropy on the answer, Adam at lr 1e-5)."""
    import torch

    from mmr3_adapters.adapter.train import TrainConfig, batch_loss

    config = TrainConfig(pretrained="benchmark", out="unused", max_answer_tokens=8)
    optimizer = torch.optim.Adam(trainable_params, lr=1e-5, weight_decay=5e-4)
    answers = [ANSWERS[i % len(ANSWERS)] for i in range(len(samples))]
    groups = [f"g{i}" for i in range(len(samples))]
    cuda = device.startswith("cuda")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _, _ = batch_loss(generator, samples, answers, groups, config, len(samples), 0)
        loss.backward()
        optimizer.step()
        if not torch.isfinite(loss):
            raise RuntimeError(f"benchmark training loss is {loss.item()}")

    step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def answer_seconds(generator, adapter, samples, repeats: int, device: str) -> tuple[float, float]:
    """Median seconds per batch of answers without and with the adapter, alternating, after a warm-up."""
    import torch

    from mmr3_adapters.models.generation import GenerationSettings

    settings = GenerationSettings.from_gen_kwargs({"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS})
    cuda = device.startswith("cuda")
    times: dict[bool, list[float]] = {False: [], True: []}
    for rep in range(repeats + 1):
        for with_adapter in (False, True):
            generator.embedding_transform = adapter if with_adapter else None
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            answers = generator.generate(samples, settings)
            if cuda:
                torch.cuda.synchronize()
            if any(a.output_tokens != NEW_TOKENS for a in answers):
                raise RuntimeError(f"an answer was not {NEW_TOKENS} tokens long: the timing would compare unequal work")
            if rep:  # the first round warms both paths up
                times[with_adapter].append(time.perf_counter() - start)
    generator.embedding_transform = None
    return statistics.median(times[False]), statistics.median(times[True])


# --------------------------------------------------------------------------- CPU


def cpu_benchmark(steps: int, answers: int, repeats: int, workdir: Path) -> list[dict]:

    from mmr3_adapters.adapter.lora import LoraSettings, apply_lora
    from mmr3_adapters.models import LlavaGenerator
    from mmr3_adapters.models.tiny import TinyLlavaSize, build_tiny_llava

    path = build_tiny_llava(workdir / "bench-llava", size=TinyLlavaSize(**mt.BENCH_SIZE))
    generator = LlavaGenerator.from_pretrained(path, dtype="float32")
    for p in generator.model.parameters():
        p.requires_grad_(False)
    adapter = make_adapter(generator, "cpu")
    n_backbone = sum(p.numel() for p in generator.model.parameters())
    n_adapter = adapter.num_parameters()
    print(f"benchmark LLaVA: {n_backbone / 1e6:.2f} M parameters, H = {generator.hidden_size}")
    print(
        f"adapter (P-Adapter sizes): {n_adapter / 1e6:.3f} M parameters = {n_adapter / n_backbone:.1%} of the backbone"
    )
    image = mt._sample_image()
    rows = [{"part": "cpu", "what": "parameters", "backbone": n_backbone, "adapter": n_adapter}]

    batch = samples_of(2, image)
    per_step: dict[str, list[float]] = {"adapter": [], "lora": []}
    for _ in range(repeats):
        generator.embedding_transform = adapter
        per_step["adapter"].append(training_steps(generator, list(adapter.parameters()), batch, steps, "fp32", "cpu"))
        generator.embedding_transform = None
        peft_model = apply_lora(generator, LoraSettings())
        lora_params = [p for p in peft_model.parameters() if p.requires_grad]
        per_step["lora"].append(training_steps(generator, lora_params, batch, steps, "fp32", "cpu"))
        generator.model = peft_model.unload()  # the bare backbone again for the next repetition
    for method, seconds in per_step.items():
        rate = 2 / statistics.median(seconds)
        print(
            f"training, {method:7s} batch 2: {rate:6.2f} samples/s (per repetition: "
            f"{', '.join(f'{2 / s:.2f}' for s in seconds)})"
        )
        rows.append({"part": "cpu", "what": "training", "method": method, "batch_size": 2, "samples_per_s": rate})

    for batch_size in (1, 8):
        chosen = samples_of(min(batch_size, answers), image)
        bare, adapted = answer_seconds(generator, adapter, chosen, repeats, "cpu")
        added = adapted / bare - 1
        print(
            f"answers at batch {batch_size}: {bare / len(chosen) * 1e3:7.1f} ms bare, "
            f"{adapted / len(chosen) * 1e3:7.1f} ms with the adapter per answer ({added:+.1%})"
        )
        rows.append(
            {
                "part": "cpu",
                "what": "latency",
                "batch_size": batch_size,
                "bare_s": bare,
                "adapter_s": adapted,
                "added": added,
            }
        )
    return rows


# --------------------------------------------------------------------------- GPU


def gpu_benchmark(family: str, dtype_name: str, steps: int, repeats: int, smoke: bool, on_row) -> list[dict]:
    import gc

    import torch

    name, build, smoke_dims = FULL_SIZE[family]
    device = "cpu" if smoke else "cuda"
    cuda = device == "cuda"
    started = time.perf_counter()
    generator = build(device, dtype_name, smoke_dims if smoke else None)
    for p in generator.model.parameters():
        p.requires_grad_(False)
    adapter = make_adapter(generator, device)
    built = time.perf_counter() - started
    n_backbone = sum(p.numel() for p in generator.model.parameters()) / 1e9
    label = f"{name}{' (SMOKE: tiny dims)' if smoke else ''}"
    where = torch.cuda.get_device_name() if cuda else "cpu"
    print(
        f"\n{where}: {label}, {n_backbone:.2f} B random {dtype_name} parameters, adapter "
        f"{adapter.num_parameters() / 1e6:.1f} M fp32, built in {built:.0f} s",
        flush=True,
    )
    base = {
        "part": "gpu",
        "model": name,
        "smoke": smoke,
        "device": where,
        "backbone_b": round(n_backbone, 3),
        "adapter_m": round(adapter.num_parameters() / 1e6, 2),
    }
    rows = []
    image = mt._sample_image()

    generator.embedding_transform = adapter
    batch = samples_of(2, image)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = training_steps(generator, list(adapter.parameters()), batch, steps, "bf16", device)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    row = {
        **base,
        "what": "training step, batch 2, bf16 autocast",
        "samples_per_s": round(2 / seconds, 3),
        "peak_gib": None if peak is None else round(peak, 2),
        "fits_a40": None if peak is None else peak < A40_GIB,
    }
    rows.append(row)
    memory = f"peak {peak:.1f} GiB ({'fits' if peak < A40_GIB else 'does NOT fit'} 48 GB)" if cuda else "n/a on CPU"
    print(f"  training at batch 2: {2 / seconds:.2f} samples/s, {memory}", flush=True)
    on_row(rows)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()

    adapter.eval()
    for batch_size in (1, 8):
        bare, adapted = answer_seconds(generator, adapter, samples_of(batch_size, image), repeats, device)
        added = adapted / bare - 1
        verdict = "meets" if added < LATENCY_TARGET else "MISSES"
        print(
            f"  answers at batch {batch_size}: {bare * 1e3:8.1f} ms bare, {adapted * 1e3:8.1f} ms with the adapter "
            f"per batch of {NEW_TOKENS}-token answers: {added:+.1%} ({verdict} the <10% target)",
            flush=True,
        )
        rows.append(
            {
                **base,
                "what": "latency",
                "batch_size": batch_size,
                "bare_s": round(bare, 4),
                "adapter_s": round(adapted, 4),
                "added": round(added, 4),
            }
        )
        on_row(rows)
    del generator, adapter
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------- meta device / activations


def meta_figures() -> list[dict]:
    """Parameter counts and static training memory at full size, computed on the meta device."""
    import torch

    rows = []
    for name, build, _ in FULL_SIZE.values():
        generator = build("meta", "bfloat16")
        adapter = make_adapter(generator, "meta")
        backbone = sum(p.numel() for p in generator.model.parameters())
        n = adapter.num_parameters()
        weights = backbone * 2  # bf16
        adapter_static = n * 4 * 4  # fp32 weights, gradients, Adam's two moments
        gib = 2**30
        row = {
            "part": "meta",
            "model": name,
            "hidden_size": generator.hidden_size,
            "backbone_params": backbone,
            "adapter_params": n,
            "backbone_bf16_gib": round(weights / gib, 2),
            "adapter_train_state_gib": round(adapter_static / gib, 2),
            "static_total_gib": round((weights + adapter_static) / gib, 2),
        }
        lstm = sum(p.numel() for p in adapter.lstm.parameters())
        print(
            f"{name}: backbone {backbone / 1e9:.3f} B ({weights / gib:.1f} GiB bf16); adapter {n / 1e6:.2f} M "
            f"(LSTM {lstm / 1e6:.2f} M, MLP {(n - lstm) / 1e6:.2f} M); adapter weights + grads + Adam in fp32 "
            f"{adapter_static / gib:.2f} GiB; static total {row['static_total_gib']} GiB"
        )
        rows.append(row)
        del generator, adapter
    torch.set_default_dtype(torch.float32)
    return rows


def activation_figures() -> list[dict]:
    """Bytes autograd keeps for backward in one training step at batch 2 (bf16 autocast), measured on
    CPU at full width with 1 and 2 LLM layers, extrapolated linearly to the full depth."""

    from mmr3_adapters.models import Sample

    rows = []
    image = mt._sample_image()
    for family, (name, build, smoke_dims) in FULL_SIZE.items():
        full_depth = mt.LLAVA_7B_TEXT["num_hidden_layers"] if family == "llava" else T5_XXL_TEXT["num_layers"]
        real = build("meta", "bfloat16")  # the real prompt length (LLaVA: 576 image slots at 336 px)
        prompt = real.build_batch([Sample("s", PROMPTS[1], (image,))] * 2)
        length = prompt.input_ids.shape[1]
        del real
        measured = {}
        for depth in (1, 2):
            generator = build("cpu", "bfloat16", _at_depth(family, smoke_dims, depth))
            for p in generator.model.parameters():
                p.requires_grad_(False)
            adapter = make_adapter(generator, "cpu")
            measured[depth] = saved_bytes(generator, adapter, length)
            del generator, adapter
        per_layer = measured[2] - measured[1]
        total = measured[1] + per_layer * (full_depth - 1)
        gib = 2**30
        print(
            f"{name}: prompt {length} tokens x 2 rows; saved for backward: {measured[1] / gib:.3f} GiB at 1 layer, "
            f"{measured[2] / gib:.3f} GiB at 2 -> {total / gib:.2f} GiB at {full_depth} "
            f"{'layers' if family == 'llava' else 'encoder + decoder layers'} (extrapolated)"
        )
        row = {"part": "activations", "model": name, "prompt_tokens": length, "depth": full_depth}
        row |= {"saved_1_layer_gib": measured[1] / gib, "saved_2_layers_gib": measured[2] / gib}
        rows.append(row | {"extrapolated_gib": total / gib})
    return rows


def _at_depth(family: str, smoke_dims: dict, depth: int) -> dict:
    """Full-width LLM dims at `depth` layers; the vision side tiny (it runs without a graph)."""
    if family == "llava":
        return {"vision": smoke_dims["vision"], "text": {**mt.LLAVA_7B_TEXT, "num_hidden_layers": depth}}
    return {**smoke_dims, "text": {**T5_XXL_TEXT, "num_layers": depth, "num_decoder_layers": depth}}


def saved_bytes(generator, adapter, length: int) -> int:
    """Bytes of the distinct tensors autograd saves in one training forward of 2 rows of `length`."""
    import torch

    from mmr3_adapters.adapter import losses

    params = {p.data_ptr() for p in generator.model.parameters()} | {p.data_ptr() for p in adapter.parameters()}
    storages: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            storages[ptr] = max(storages.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    torch.manual_seed(0)
    embeds = torch.randn(2, length, generator.hidden_size, dtype=torch.bfloat16)
    mask = torch.ones(2, length, dtype=torch.long)
    labels = torch.tensor([[5, 6, 7, generator.answer_stop_id]] * 2)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        embeds, mask = adapter(embeds, mask)
        logits = generator.answer_logits(embeds, mask, labels)
        loss = losses.answer_loss(logits, labels).mean()
    del loss
    return sum(storages.values())


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per measurement (default 12)")
    parser.add_argument("--answers", type=int, default=8, help="answers per latency batch on CPU (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 keeps torch's)")
    parser.add_argument("--gpu-only", action="store_true", help="the full-size GPU measurement only")
    parser.add_argument("--smoke", action="store_true", help="the GPU code path with tiny dims on CPU")
    parser.add_argument("--meta", action="store_true", help="full-size counts and static memory on the meta device")
    parser.add_argument("--activations", action="store_true", help="with --meta: activation memory, measured on CPU")
    parser.add_argument("--families", default="llava,blip2-t5", help="full-size architectures (default both)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file (after every line)")
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FULL_SIZE))
    if unknown:
        parser.error(f"--families: unknown {unknown}; choose from {sorted(FULL_SIZE)}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cuda available: {cuda}")
    if args.gpu_only and not cuda and not args.smoke:
        parser.error("--gpu-only: torch sees no CUDA device here; add --smoke for the tiny CPU run")
    rows: list[dict] = []

    def save(more: list[dict]) -> None:
        if args.json:
            mt._write_json(args.json, rows + more)

    status = 0
    if args.meta:
        rows += meta_figures()
        if args.activations:
            rows += activation_figures()
    elif args.smoke or args.gpu_only:
        for family in families:
            family_rows = gpu_benchmark(
                family, "bfloat16", 1 if args.smoke else args.steps, 1 if args.smoke else args.repeats, args.smoke, save
            )
            rows += family_rows
            if not args.smoke:
                peak_ok = all(r.get("fits_a40") is not False for r in family_rows)
                latency_ok = all(r["added"] < LATENCY_TARGET for r in family_rows if r["what"] == "latency")
                status |= 0 if peak_ok and latency_ok else 1
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mmr3-adapter-bench-") as tmp:
            rows += cpu_benchmark(args.steps, args.answers, args.repeats, Path(tmp))
    save([])
    return status


if __name__ == "__main__":
    sys.exit(main())
