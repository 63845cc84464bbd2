"""Training the consistency adapter (or the LoRA baseline) on the MM-R³ train splits.

The paper's recipe (§5.2) by default: the backbone frozen, cross-entropy on the ground-truth answer,
lr 1e-5 with linear decay, batch size 2, the variants of one item sharing one target. Read `train`
top-down; the rest of the module is its helpers.

Multi-process: each process (`accelerate launch`) holds the frozen backbone and a copy of the
trainable weights, takes its share of every step's rows (data.shares), and the gradients are summed
over processes. Every loss is a sum over rows divided by the step's global row count, so 1 process
at batch 2, 2 processes at 1 row each and 1 process with 2 accumulation steps compute the same
gradient. Only the main process writes files.

The output folder (`--out`):

    adapter_config.json, adapter_model.safetensors   the adapter (LoRA: PEFT's files + mmr3_lora.json)
    train_config.json                               the TrainConfig
    train_log.jsonl                                 one line per logged step, and the checkpoint events
    checkpoints/step-0000200/                       periodic checkpoints (trainable weights, optimizer,
                                                    RNG, trainer_state.json); each appears atomically
    heldout_eval.json                               the held-out consistency evaluation, base and trained
    training_summary.json                           steps, time, samples/s, last loss
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from mmr3_adapters.adapter import losses
from mmr3_adapters.adapter.checkpoint import save_adapter
from mmr3_adapters.adapter.config import AdapterConfig, AdapterSizes, library_versions
from mmr3_adapters.adapter.data import Row, StepPlan, TrainingData, check_split, shares
from mmr3_adapters.adapter.lora import LoraSettings, apply_lora, save_lora
from mmr3_adapters.adapter.module import ConsistencyAdapter
from mmr3_adapters.models import FAMILIES, Sample, VisionLanguageGenerator
from mmr3_tasks import schema
from mmr3_tasks.builder.atomic import write_text_atomic
from mmr3_tasks.errors import MMR3Error

logger = logging.getLogger("mmr3")

METHODS = ("adapter", "lora")
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adam", "adamw")
SAMPLE_BY = ("variant", "group")
CHECKPOINTS = "checkpoints"
# Settings that may change when a run is resumed: they do not change what is trained (accumulation and
# activation checkpointing change only the order of float sums, and the memory a step needs).
RESUME_FREE = (
    "out", "device", "save_every", "keep_checkpoints", "log_every", "heldout_eval", "eval_batch_size",
    "grad_accum", "gradient_checkpointing",
)  # fmt: skip
# Collectives wait this long for the main process (held-out evaluation, checkpoint writes) before failing.
PROCESS_GROUP_TIMEOUT_S = 4 * 3600


class TrainingError(MMR3Error, RuntimeError):
    """Training stopped for a reason the message names (a NaN loss names its step)."""


@dataclass
class TrainConfig:
    """Every setting of one training run; `train_config.json` and the adapter's config record it.

    The paper's: lr 1e-5, linear decay, batch size 2, cross-entropy only, backbone frozen.
    P-Adapter's where the paper is silent: Adam with weight decay 5e-4, 5 epochs.
    Ours: everything else (docs/adapter.md lists which is which).
    """

    pretrained: str
    out: str
    method: str = "adapter"
    tasks: list[str] = field(default_factory=lambda: list(schema.TASKS))
    data: str = ""
    revision: str | None = None
    lr: float = 1e-5
    schedule: str = "linear"
    batch_size: int = 2
    epochs: int = 5
    optimizer: str = "adam"
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    max_steps: int | None = None
    grad_accum: int = 1
    precision: str = "fp32"
    dtype: str = "auto"
    device: str | None = None
    gradient_checkpointing: bool = False
    max_answer_tokens: int = 32
    sample_by: str = "variant"
    consistency_weight: float = 0.0
    consistency_loss: str = "js"
    heldout_groups: int = 32
    heldout_eval: bool = True
    eval_batch_size: int = 8
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    adapter: AdapterSizes = field(default_factory=AdapterSizes)
    lora: LoraSettings = field(default_factory=LoraSettings)
    generator_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, cls in (("adapter", AdapterSizes), ("lora", LoraSettings)):
            value = getattr(self, name)
            if isinstance(value, dict):
                try:
                    setattr(self, name, cls(**value))
                except TypeError as err:  # an unknown key
                    known = sorted(f.name for f in fields(cls))
                    raise ValueError(f"{name} settings: {err}; known: {known}") from None
        _choice("method", self.method, METHODS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("sample_by", self.sample_by, SAMPLE_BY)
        _choice("schedule", self.schedule, ("linear", "constant"))
        _choice("consistency_loss", self.consistency_loss, losses.DIVERGENCES)
        bad = [t for t in self.tasks if t not in schema.TASKS] if isinstance(self.tasks, list) else self.tasks
        if bad or not self.tasks:
            raise ValueError(f"tasks must be some of {', '.join(schema.TASKS)}, got {self.tasks}")
        positive = ("batch_size", "epochs", "grad_accum", "max_answer_tokens", "eval_batch_size", "save_every")
        for name in (*positive, "log_every", "keep_checkpoints"):
            _integer(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "heldout_groups", "seed"):
            _integer(name, getattr(self, name), minimum=0)
        if self.max_steps is not None:
            _integer("max_steps", self.max_steps, minimum=1)
        for name in ("lr", "weight_decay", "consistency_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.consistency_weight < 0:
            raise ValueError(f"consistency_weight must be >= 0, got {self.consistency_weight!r}")
        if self.consistency_weight > 0 and self.sample_by != "group":
            raise ValueError(
                "the consistency term compares the variants of one group, so batches must hold whole groups: "
                "add --sample-by group (batch_size then counts groups)"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    def resume_key(self) -> dict[str, Any]:
        """What must be equal for a run to continue another."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUME_FREE}


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def get_lr(step: int, config: TrainConfig, total_steps: int) -> float:
    """The learning rate at optimizer step `step` (0-based): linear warm-up, then linear decay to 0
    over the remaining steps (the paper's "linear decay"), or constant."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    remaining = max(1, total_steps - config.warmup_steps)
    return config.lr * max(0.0, 1.0 - (step - config.warmup_steps) / remaining)


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainingResult:
    """What `train` leaves: its summary, and (when it trained) the backbone with the trained weights
    attached, the trainable module and the optimizer (tests check what reached the optimizer)."""

    summary: dict[str, Any]
    generator: VisionLanguageGenerator | None = None
    trainable: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None


def train(config: TrainConfig, overwrite: bool = False) -> TrainingResult:
    """Trains (or resumes) one run. See the module docstring.

    Args:
        config: The run's settings.
        overwrite: Delete a previous run in `config.out` first (only a folder holding train_config.json).
    """
    from datetime import timedelta

    from accelerate import Accelerator, InitProcessGroupKwargs
    from tqdm import tqdm

    # The other processes wait while the main one evaluates the held-out groups: NCCL's default
    # 10-minute timeout would abort a full-size run there.
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))
    accelerator = Accelerator(cpu=config.device == "cpu", kwargs_handlers=[timeout])
    precision = _precision(config, accelerator)
    if precision != config.precision:  # `accelerate launch --mixed_precision bf16`: recorded as ours
        config = replace(config, precision=precision)
    out = Path(config.out)
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    check_split(config.batch_size, world, config.grad_accum)
    if overwrite and main:
        remove_run(out)
    accelerator.wait_for_everyone()
    finished = finished_run(out, config)
    if finished is not None:
        if main:
            print(f"mmr3 train-adapter: {out} already holds this run, trained; --overwrite trains it again")
        return TrainingResult(finished)

    # Data first (a missing split fails before a model loads), and the step plan: a pure function
    # of the seed, the same on every process.
    data = TrainingData(config.tasks, config.data, config.heldout_groups, config.seed)
    units = data.units(config.sample_by)
    plan = StepPlan(len(units), config.batch_size, config.epochs, config.max_steps, config.seed)

    # The frozen backbone, and what trains on top of it.
    device = accelerator.device if config.device in (None, "", "cpu") else torch.device(config.device)
    generator = load_generator(config, device)
    for p in generator.model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(config.seed)  # the same initial weights on every process
    trainable, peft_model = attach_trainable(generator, config, device)
    if config.gradient_checkpointing:
        generator.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for _, p in trainable.named_parameters() if p.requires_grad]
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)

    step = 0
    checkpoint = latest_checkpoint(out)
    if main:
        prepare_output(out, config, resuming=checkpoint is not None)
    accelerator.wait_for_everyone()
    if checkpoint is not None:  # weights, optimizer and each process's RNG as they were after that step
        step = load_checkpoint(checkpoint, config, trainable, optimizer, data.fingerprint(), rank, world)
        logger.info("mmr3 train-adapter: resuming %s at step %d of %d", out, step, plan.total_steps)
    else:
        torch.manual_seed(config.seed + 7919 * (rank + 1))  # dropout draws differ between processes

    if main:
        print(
            f"mmr3 train-adapter: {config.method} on {generator.family} "
            f"({generator.backbone}, H={generator.hidden_size}), "
            f"{sum(p.numel() for p in params):,} trainable parameters; {data.describe()}; {plan.total_steps} steps "
            f"of {config.batch_size} {'groups' if config.sample_by == 'group' else 'rows'} over {world} process(es)",
            flush=True,
        )
    if main and config.heldout_eval and data.heldout and not (out / "heldout_base.json").exists():
        with without_trainable(generator, peft_model):
            base_scores = evaluate_heldout(generator, data, config.eval_batch_size)
        write_text_atomic(out / "heldout_base.json", json.dumps(base_scores, indent=2) + "\n")
    accelerator.wait_for_everyone()

    set_training_mode(generator, trainable, config)
    started, rows_done = time.monotonic(), 0
    bar = tqdm(total=plan.total_steps, initial=step, disable=not main, desc=f"training {config.method}")
    while step < plan.total_steps:
        lr = get_lr(step, config, plan.total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_units = [units[u] for u in plan.units(step)]
        n_rows = sum(len(u) for u in step_units)
        n_pairs = sum(1 for u in step_units if len(u) > 1)
        optimizer.zero_grad(set_to_none=False)
        totals = torch.zeros(3, dtype=torch.float64)  # summed over this process: loss, CE, consistency
        for micro in shares(step_units, world, config.grad_accum, rank):
            rows = [data.rows[i] for unit in micro for i in unit]
            with _autocast(device, precision):
                loss, ce_sum, div_sum = micro_loss(generator, data, rows, config, n_rows, n_pairs)
            loss.backward()
            totals += torch.tensor([loss.item(), ce_sum, div_sum], dtype=torch.float64)
        if world > 1:
            _sum_over_processes([p.grad for p in params])
            totals = _sum_over_processes([totals.to(device)])[0].cpu()
        loss_value = float(totals[0])
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"the training loss became {loss_value} at step {step + 1} "
                f"(epoch {plan.epoch_of(step) + 1}, lr {lr:.3g}, "
                f"rows {[data.rows[i].id for u in step_units for i in u][:6]}); nothing after step {step} was saved. "
                "Start again with a lower --lr (and --overwrite, or a new --out), or with --precision fp32"
            )
        optimizer.step()
        step += 1
        rows_done += n_rows
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        if main and (step % config.log_every == 0 or step == plan.total_steps):
            ce = float(totals[1]) / n_rows
            div = float(totals[2]) / n_pairs if config.consistency_weight > 0 and n_pairs else None
            log_event(out, {"event": "step", "step": step, "loss": loss_value, "ce": ce, "consistency": div, "lr": lr})
        # Also after the last step: a kill during the held-out evaluation then costs no training.
        if step % config.save_every == 0 or step == plan.total_steps:
            rng = _gather_rng_states(world)
            if main:
                save_checkpoint(
                    out, step, config, trainable, optimizer, config.keep_checkpoints, rng, data.fingerprint()
                )
            accelerator.wait_for_everyone()
    bar.close()
    elapsed = time.monotonic() - started
    generator.model.eval()

    summary = {"steps": step, "rows_trained": rows_done, "seconds": round(elapsed, 2)}
    summary["rows_per_s"] = round(rows_done / elapsed, 3) if elapsed > 0 else None
    if main:
        trainable.eval()
        generator.model.eval()
        save_trained(out, generator, trainable, peft_model, config)
        log_event(out, {"event": "saved", "step": step, "dir": str(out)})
        if config.heldout_eval and data.heldout:
            trained_scores = evaluate_heldout(generator, data, config.eval_batch_size)
            base_scores = json.loads((out / "heldout_base.json").read_text())
            report = {"base": base_scores, config.method: trained_scores}
            write_text_atomic(out / "heldout_eval.json", json.dumps(report, indent=2) + "\n")
            summary["heldout"] = report
            print(format_heldout(report, config.method), flush=True)
        write_text_atomic(out / "training_summary.json", json.dumps(summary, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return TrainingResult(summary, generator, trainable, optimizer)


def micro_loss(
    generator: VisionLanguageGenerator,
    data: TrainingData,
    rows: list[Row],
    config: TrainConfig,
    n_rows: int,
    n_pairs: int,
) -> tuple[torch.Tensor, float, float]:
    """This micro-batch's share of the step's loss, and its summed CE and consistency terms."""
    samples = [data.sample(r) for r in rows]
    return batch_loss(generator, samples, [r.answer for r in rows], [r.group_id for r in rows], config, n_rows, n_pairs)


def batch_loss(
    generator: VisionLanguageGenerator,
    samples: list[Sample],
    answers: list[str],
    group_ids: list[str],
    config: TrainConfig,
    n_rows: int,
    n_pairs: int,
) -> tuple[torch.Tensor, float, float]:
    """The training forward of some samples: loss (with its graph), summed CE, summed divergence.

    loss = sum(CE per row) / n_rows + weight * sum(divergence per group) / n_pairs, where n_rows and
    n_pairs count the whole step: summed over micro-batches and processes it is the step's mean.
    """
    batch = generator.build_training_batch(samples, answers, config.max_answer_tokens)
    with torch.no_grad():  # the frozen backbone's input sequence needs no graph
        embeds, mask = generator.input_embeddings(batch.prompt)
    embeds, mask = generator.transform_embeddings(embeds, mask)  # the adapter's prefix, with its graph
    logits = generator.answer_logits(embeds, mask, batch.labels)
    ce = losses.answer_loss(logits, batch.labels)
    loss = ce.sum() / n_rows
    div_sum = 0.0
    if config.consistency_weight > 0 and n_pairs:
        div = losses.consistency_divergence(logits, batch.labels, group_ids, config.consistency_loss)
        loss = loss + config.consistency_weight * div.sum() / n_pairs
        div_sum = float(div.detach().sum())
    return loss, float(ce.detach().sum()), div_sum


# --------------------------------------------------------------------------- pieces


def load_generator(config: TrainConfig, device: torch.device) -> VisionLanguageGenerator:
    """The frozen backbone, by the family its config names, in eval mode (dropout off)."""
    from transformers import AutoConfig

    hub = {"revision": config.revision} if config.revision else {}
    model_type = getattr(AutoConfig.from_pretrained(config.pretrained, **hub), "model_type", None)
    family = {"llava": "llava", "blip-2": "blip2"}.get(model_type)
    if family is None:
        raise ValueError(
            f"{config.pretrained!r} is a {model_type!r} checkpoint; mmr3 train-adapter trains on LLaVA-1.5 "
            "(model_type llava) or BLIP-2 (blip-2) checkpoints"
        )
    return FAMILIES[family].from_pretrained(
        config.pretrained, revision=config.revision, dtype=config.dtype, device=device, **config.generator_options
    )


def attach_trainable(
    generator: VisionLanguageGenerator, config: TrainConfig, device: torch.device
) -> tuple[torch.nn.Module, Any]:
    """A fresh adapter attached to the generator (or LoRA injected into it): (trainable module, PeftModel | None)."""
    if config.method == "lora":
        peft_model = apply_lora(generator, config.lora)
        return peft_model, peft_model
    adapter_config = AdapterConfig(
        hidden_size=generator.hidden_size,
        backbone=generator.backbone,
        base_model_name_or_path=config.pretrained,
        revision=config.revision,
        **config.adapter.sizes(),
        generator_options=generator.options,
        training=config.to_dict(),
    )
    adapter = ConsistencyAdapter(adapter_config).to(device)
    generator.embedding_transform = adapter
    return adapter, None


@contextlib.contextmanager
def without_trainable(generator: VisionLanguageGenerator, peft_model: Any):
    """The bare backbone for a moment: the adapter detached, or LoRA disabled."""
    if peft_model is not None:
        with peft_model.disable_adapter():
            yield
        return
    transform, generator.embedding_transform = generator.embedding_transform, None
    try:
        yield
    finally:
        generator.embedding_transform = transform


def set_training_mode(generator: VisionLanguageGenerator, trainable: torch.nn.Module, config: TrainConfig) -> None:
    """Dropout where it belongs: in the adapter (`lstm_dropout`) and LoRA's own `lora_dropout`, never in
    the frozen backbone, so that its input sequence and forward are the same for both methods.

    With activation checkpointing the language model's checkpointed modules must be in train mode
    (transformers only recomputes then), so their dropout is set to 0 first: train mode then
    computes what eval mode does.
    """
    trainable.train()
    generator.model.eval()
    if config.gradient_checkpointing:
        for name, module in generator.model.named_modules():
            if "language_model" in name and getattr(module, "gradient_checkpointing", False) is True:
                _zero_dropout(module)
                module.train()
    for name, module in generator.model.named_modules():
        if name.endswith("lora_dropout") or ".lora_dropout." in name:
            module.train()
    if isinstance(trainable, ConsistencyAdapter):
        trainable.train()


def _zero_dropout(module: torch.nn.Module) -> None:
    """Every dropout probability inside `module` set to 0 (modules and the float attributes that
    functional dropout reads), LoRA's own excepted."""
    for name, sub in module.named_modules():
        if "lora_" in name:
            continue
        if isinstance(sub, torch.nn.Dropout):
            sub.p = 0.0
        for attr in ("dropout", "attention_dropout", "activation_dropout", "dropout_rate"):
            if isinstance(getattr(sub, attr, None), float):
                setattr(sub, attr, 0.0)


def _gather_rng_states(world: int) -> list[dict[str, Any]]:
    """Every process's RNG state (CPU, and CUDA where there is one), gathered on all of them."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if world == 1:
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * world
    dist.all_gather_object(states, state)
    return states


def _precision(config: TrainConfig, accelerator: Any) -> str:
    """Our --precision, or bf16 when `accelerate launch --mixed_precision bf16` asked for it."""
    theirs = getattr(accelerator, "mixed_precision", "no")
    if theirs == "fp16":
        raise ValueError("fp16 mixed precision is not supported (it needs loss scaling); use --precision bf16")
    return "bf16" if theirs == "bf16" else config.precision


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _sum_over_processes(tensors: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
    import torch.distributed as dist

    for t in tensors:
        if t is not None:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return tensors


def log_event(out: Path, event: dict[str, Any]) -> None:
    """Appends one line to train_log.jsonl, flushed and synced (a kill loses at most that line)."""
    with (out / "train_log.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------- output folder and checkpoints


def remove_run(out: Path) -> None:
    """Deletes a previous run, only if `out` is one (it holds train_config.json)."""
    if not out.exists():
        return
    if not (out / "train_config.json").is_file():
        raise ValueError(f"--overwrite: {out} holds no mmr3 training run (no train_config.json); not deleting it")
    shutil.rmtree(out)


def finished_run(out: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The summary of a finished run of these settings in `out`, else None."""
    summary, recorded = out / "training_summary.json", out / "train_config.json"
    if not (summary.is_file() and recorded.is_file()):
        return None
    previous = TrainConfig.from_dict(json.loads(recorded.read_text(encoding="utf-8")))
    if previous.resume_key() != config.resume_key():
        return None  # prepare_output names the difference
    return json.loads(summary.read_text(encoding="utf-8"))


def prepare_output(out: Path, config: TrainConfig, resuming: bool) -> None:
    """Creates the output folder; a folder of another run (other settings) is refused, never mixed."""
    out.mkdir(parents=True, exist_ok=True)
    recorded = out / "train_config.json"
    if recorded.is_file():
        previous = TrainConfig.from_dict(json.loads(recorded.read_text(encoding="utf-8")))
        theirs, ours = previous.resume_key(), config.resume_key()
        diff = {
            k: (theirs.get(k), ours.get(k)) for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)
        }
        if diff:
            shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in diff.items()))
            raise ValueError(
                f"{out} holds a run with other settings ({shown}); give a new --out, or --overwrite to start over"
            )
    elif any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no mmr3 training run; give a new or empty --out")
    write_text_atomic(recorded, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    log = out / "train_log.jsonl"
    if not resuming and log.is_file():
        log.unlink()  # a run killed before its first checkpoint starts over
    if resuming:
        # Log lines after the checkpoint we resume from are redone; drop them so each step appears once.
        step = latest_checkpoint_step(out)
        if log.is_file():
            kept = [line for line in log.read_text(encoding="utf-8").splitlines() if _line_step(line) <= step]
            write_text_atomic(log, "".join(line + "\n" for line in kept))


def _line_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a torn last line (a kill mid-write) is dropped


def _checkpoint_dirs(out: Path) -> list[Path]:
    root = out / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit())


def latest_checkpoint(out: Path) -> Path | None:
    dirs = _checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def latest_checkpoint_step(out: Path) -> int:
    latest = latest_checkpoint(out)
    return int(latest.name[5:]) if latest else 0


def save_checkpoint(
    out: Path,
    step: int,
    config: TrainConfig,
    trainable: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    keep: int,
    rng_states: list[dict[str, Any]],
    data_fingerprint: str,
) -> Path:
    """Everything a resume needs, written into a hidden folder that is then renamed into place."""
    from safetensors.torch import save_file

    root = out / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tensors = {n: p.detach().to("cpu").contiguous() for n, p in trainable.named_parameters() if p.requires_grad}
    save_file(tensors, str(tmp / "trainable.safetensors"), metadata={"format": "pt"})
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"ranks": rng_states}, tmp / "rng.pt")
    state = {
        "step": step,
        "config": config.to_dict(),
        "world_size": len(rng_states),
        "data_fingerprint": data_fingerprint,
        "library_versions": library_versions(),
    }
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    for path in tmp.iterdir():
        with path.open("rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(root)
    log_event(out, {"event": "checkpoint", "step": step, "dir": str(final)})
    for old in _checkpoint_dirs(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stray in root.glob(".step-*.tmp-*"):  # left by a process killed while saving
        shutil.rmtree(stray, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path,
    config: TrainConfig,
    trainable: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data_fingerprint: str,
    rank: int = 0,
    world: int = 1,
) -> int:
    """Restores the trainable weights, optimizer state and this process's RNG; returns the step.

    Optimizer and RNG state are read with `torch.load(weights_only=True)`, which refuses anything
    but tensors and plain containers: a checkpoint can never run code. A run resumed on another
    number of processes cannot take over their RNG streams: it reseeds them (dropout draws then
    differ from an uninterrupted run's; without dropout nothing does).
    """
    from safetensors.torch import load_file

    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    saved = TrainConfig.from_dict(state["config"]).resume_key()
    if saved != config.resume_key():
        raise ValueError(f"checkpoint {path} was written with other settings; give a new --out or --overwrite")
    if state.get("data_fingerprint") != data_fingerprint:
        raise ValueError(
            f"the train rows differ from those checkpoint {path} was trained on (another --data, a rebuilt split, "
            "or a changed $MMR3_DATA); point --data at the same rows, or start over with --overwrite or a new --out"
        )
    tensors = load_file(str(path / "trainable.safetensors"))
    named = {n: p for n, p in trainable.named_parameters() if p.requires_grad}
    if set(tensors) != set(named):
        raise ValueError(f"checkpoint {path} holds other weights than this run trains; give a new --out")
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(tensors[name].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu"))
    step = int(state["step"])
    ranks = torch.load(path / "rng.pt", weights_only=True)["ranks"]
    if len(ranks) == world:
        torch.set_rng_state(ranks[rank]["torch"])
        if "cuda" in ranks[rank] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ranks[rank]["cuda"])
    else:
        logger.warning(
            "mmr3 train-adapter: %s was written by %d process(es), this run has %d; dropout draws are reseeded",
            path, len(ranks), world,
        )  # fmt: skip
        torch.manual_seed(config.seed + 7919 * (rank + 1) + step)
    return step


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_trained(
    out: Path, generator: VisionLanguageGenerator, trainable: torch.nn.Module, peft_model: Any, config: TrainConfig
) -> None:
    """The trained weights in their final form: the adapter's files, or PEFT's LoRA files."""
    if peft_model is not None:
        save_lora(peft_model, out, generator, config.to_dict())
    else:
        save_adapter(trainable, out)


# --------------------------------------------------------------------------- held-out evaluation


@torch.no_grad()
def evaluate_heldout(generator: VisionLanguageGenerator, data: TrainingData, batch_size: int) -> dict[str, Any]:
    """Answers the held-out groups as the task would ask them (its prompt and generation settings)
    and scores them with the project's metrics: per task, the paper's four and the exact agreement."""
    from mmr3_adapters.models.generation import GenerationSettings
    from mmr3_tasks import embedding, metrics, taskdefs

    out: dict[str, Any] = {}
    for task in sorted({r.task for r in data.heldout}):
        rows = [r for r in data.heldout if r.task == task]
        settings = GenerationSettings.from_gen_kwargs(taskdefs.generation_kwargs(task))
        answers = []
        for k in range(0, len(rows), batch_size):
            chunk = rows[k : k + batch_size]
            answers += generator.generate([data.sample(r) for r in chunk], settings)
        responses = [
            metrics.ScoredResponse(
                id=r.id, group_id=r.group_id, variant=r.id.rsplit("/", 1)[-1], answers=r.answers, response=a.text
            )
            for r, a in zip(rows, answers, strict=True)
        ]
        report = metrics.score(
            responses, embedding.get_embedder(), clean_context=task == "context", n_resamples=0
        ).as_dict()
        keep = (*metrics.HEADLINE, "exact_agreement")
        out[task] = {k: report[k] for k in keep} | {"groups": report["counts"]["groups"]}
    return out


def format_heldout(report: dict[str, Any], method: str) -> str:
    """The held-out evaluation as a small markdown table: base, trained, delta."""
    from mmr3_tasks import metrics

    keys = (*metrics.HEADLINE, "exact_agreement")
    lines = ["held-out groups (train split, never trained on):", "| task | run | " + " | ".join(keys) + " |"]
    lines.append("|---|---|" + "---:|" * len(keys))
    for task, base in report["base"].items():
        trained = report[method][task]
        for label, values in (("base", base), (method, trained)):
            lines.append(f"| {task} | {label} | " + " | ".join(_fmt(values[k]) for k in keys) + " |")
        deltas = [None if base[k] is None or trained[k] is None else trained[k] - base[k] for k in keys]
        lines.append(f"| {task} | delta | " + " | ".join(_fmt(d, signed=True) for d in deltas) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"
