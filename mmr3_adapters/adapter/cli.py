"""`mmr3 train-adapter`: train the consistency adapter (or the LoRA baseline) on the train splits.

    mmr3 train-adapter --pretrained llava-hf/llava-1.5-7b-hf --out adapters/llava --precision bf16
    accelerate launch --num_processes 4 -m mmr3_adapters.adapter.cli --pretrained ... --out ...

Run the same command again after a crash or kill: it resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmr3_tasks.errors import MMR3Error

HELP = "train the paper's consistency adapter (or a LoRA baseline) on the MM-R³ train splits"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-adapter", help=HELP, description=HELP)
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to train")
    g.add_argument("--pretrained", help="the backbone: LLaVA-1.5 or BLIP-2 hub id or local folder (required)")
    g.add_argument("--revision", help="hub revision of --pretrained")
    g.add_argument("--out", help="output folder: the adapter, checkpoints, logs (required)")
    g.add_argument("--method", choices=("adapter", "lora"), help="the paper's adapter (default) or the LoRA baseline")
    g.add_argument("--tasks", help="comma-separated tasks trained jointly (default rephrase,restyle,context)")
    g.add_argument(
        "--data", help="train splits: a build folder or hub id (default $MMR3_DATA or ~/.cache/mmr3/data), or 'demo'"
    )
    g.add_argument("--config", type=Path, help="a train_config.json to start from; flags given override it")
    g.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a wrapper option, as in --model_args: prompt=..., image_aspect=pad|crop, use_chat_template=false",
    )

    g = p.add_argument_group("the paper's recipe (defaults)")
    g.add_argument("--lr", type=float, help="initial learning rate (1e-5)")
    g.add_argument("--schedule", choices=("linear", "constant"), help="learning-rate schedule (linear decay to 0)")
    g.add_argument("--batch-size", type=int, help="rows per optimizer step over all processes (2)")

    g = p.add_argument_group("where the paper is silent (P-Adapter's defaults, or ours)")
    g.add_argument("--epochs", type=int, help="passes over the train rows (5)")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    g.add_argument("--optimizer", choices=("adam", "adamw"), help="adam (P-Adapter) or adamw")
    g.add_argument("--weight-decay", type=float, help="5e-4 (P-Adapter)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps (0)")
    g.add_argument("--grad-accum", type=int, help="accumulation steps per optimizer step (1)")
    g.add_argument("--precision", choices=("fp32", "bf16"), help="bf16: autocast the backbone (the adapter stays fp32)")
    g.add_argument("--dtype", help="backbone weights: auto, float32, bfloat16, float16 (auto)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 (default: accelerate's choice)")
    g.add_argument("--gradient-checkpointing", action="store_true", default=None, help="recompute LLM activations")
    g.add_argument("--max-answer-tokens", type=int, help="targets are cut to this many tokens (32)")
    g.add_argument("--seed", type=int, help="data order, held-out groups, initial weights (0)")

    g = p.add_argument_group("adapter sizes (None: P-Adapter's, from the backbone's hidden size H)")
    g.add_argument("--prefix-length", type=int, help="prefix embeddings (3, the paper)")
    g.add_argument("--lstm-layers", type=int, help="BiLSTM layers (2, the paper)")
    g.add_argument("--lstm-hidden-size", type=int, help="units per direction (H/2)")
    g.add_argument("--lstm-dropout", type=float, help="(0, the paper)")
    g.add_argument("--mlp-hidden-size", type=int, help="(H)")
    g.add_argument("--mlp-activation", choices=("relu", "gelu", "tanh"), help="(relu)")

    g = p.add_argument_group("LoRA baseline (--method lora)")
    g.add_argument("--lora-r", type=int, help="rank (8)")
    g.add_argument("--lora-alpha", type=int, help="(16)")
    g.add_argument("--lora-dropout", type=float, help="(0.05)")
    g.add_argument("--lora-targets", help="comma-separated projection names in the LLM (q_proj,v_proj; T5: q,v)")

    g = p.add_argument_group("beyond the paper")
    g.add_argument("--consistency-weight", type=float, help="weight of the explicit consistency term (0: off)")
    g.add_argument("--consistency-loss", choices=("js", "skl"), help="Jensen-Shannon or symmetric KL (js)")
    g.add_argument("--sample-by", choices=("variant", "group"), help="batches of rows, or of whole groups")

    g = p.add_argument_group("evaluation, checkpoints, logs")
    g.add_argument("--heldout-groups", type=int, help="train groups per task kept for the held-out evaluation (32)")
    g.add_argument("--no-heldout-eval", action="store_true", help="skip the held-out evaluation")
    g.add_argument("--eval-batch-size", type=int, help="(8)")
    g.add_argument("--save-every", type=int, help="checkpoint every N steps (500)")
    g.add_argument("--keep-checkpoints", type=int, help="checkpoints kept (2)")
    g.add_argument("--log-every", type=int, help="log the loss every N steps (10)")
    g.add_argument("--overwrite", action="store_true", help="delete the run in --out and start over")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


FLAGS = {  # flag dest -> TrainConfig field (nested: "adapter.x", "lora.x")
    "pretrained": "pretrained", "revision": "revision", "out": "out", "method": "method", "data": "data",
    "lr": "lr", "schedule": "schedule", "batch_size": "batch_size", "epochs": "epochs", "max_steps": "max_steps",
    "optimizer": "optimizer", "weight_decay": "weight_decay", "warmup_steps": "warmup_steps",
    "grad_accum": "grad_accum", "precision": "precision", "dtype": "dtype", "device": "device",
    "gradient_checkpointing": "gradient_checkpointing", "max_answer_tokens": "max_answer_tokens", "seed": "seed",
    "prefix_length": "adapter.prefix_length", "lstm_layers": "adapter.lstm_layers",
    "lstm_hidden_size": "adapter.lstm_hidden_size", "lstm_dropout": "adapter.lstm_dropout",
    "mlp_hidden_size": "adapter.mlp_hidden_size", "mlp_activation": "adapter.mlp_activation",
    "lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
    "consistency_weight": "consistency_weight", "consistency_loss": "consistency_loss", "sample_by": "sample_by",
    "heldout_groups": "heldout_groups", "eval_batch_size": "eval_batch_size", "save_every": "save_every",
    "keep_checkpoints": "keep_checkpoints", "log_every": "log_every",
}  # fmt: skip


class TrainAdapterError(MMR3Error, ValueError):
    """A train-adapter failure the user can fix: a flag, the --config file, --out, a setting train refuses."""


def config_from_args(args: argparse.Namespace):
    """A TrainConfig from --config (if any) with the flags given on top."""
    from mmr3_adapters.adapter.train import TrainConfig
    from mmr3_adapters.models.pretrained import check_pretrained

    base = read_config(args.config) if args.config else {}
    base.setdefault("adapter", {})
    base.setdefault("lora", {})
    for dest, name in FLAGS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if "." in name:
            section, key = name.split(".")
            base[section][key] = value
        else:
            base[name] = value
    if args.tasks:
        base["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.lora_targets:
        base["lora"]["target_modules"] = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    if args.no_heldout_eval:
        base["heldout_eval"] = False
    if args.model_option:
        base["generator_options"] = {**base.get("generator_options", {}), **parse_options(args.model_option)}
    missing = [f"--{k}" for k in ("pretrained", "out") if not base.get(k)]
    if missing:
        raise TrainAdapterError(
            f"{' and '.join(missing)} required (e.g. --pretrained llava-hf/llava-1.5-7b-hf --out adapters/x)"
        )
    base["pretrained"] = check_pretrained(str(base["pretrained"]), "--pretrained ")
    return TrainConfig.from_dict(base)


def read_config(path: Path) -> dict:
    """The settings of a --config train_config.json."""
    try:
        base = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TrainAdapterError(f"--config {path}: cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # not UTF-8, or not JSON
        raise TrainAdapterError(f"--config {path}: not a JSON file ({err})") from None
    if not isinstance(base, dict):
        raise TrainAdapterError(f"--config {path}: expected a JSON object of settings, got {type(base).__name__}")
    return base


def parse_options(items: list[str]) -> dict:
    """`key=value` strings as lmms-eval parses --model_args: true/false -> bool, numbers -> numbers."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TrainAdapterError(f"--model-option expects KEY=VALUE, got {item!r}")
        lowered = value.lower()
        out[key] = True if lowered == "true" else False if lowered == "false" else value
    return out


def run(args: argparse.Namespace) -> int:
    """Trains; an expected failure is raised as an MMR3Error, which `mmr3` (or `main`) prints as
    one line, exit code 1."""
    from mmr3_adapters.adapter.train import train

    try:
        train(config_from_args(args), overwrite=args.overwrite)
    except MMR3Error:
        raise
    except (ValueError, OSError) as err:  # train's own checks of the settings, --out and the files it reads
        raise TrainAdapterError(str(err)) from err
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m mmr3_adapters.adapter.cli ...`: the same command, for `accelerate launch -m`,
    with the same one-line errors as `mmr3 train-adapter` (`--debug`: the traceback)."""
    parser = argparse.ArgumentParser(prog="mmr3 train-adapter", description=HELP)
    add_arguments(parser)
    from mmr3_tasks.cli import run_command

    return run_command("train-adapter", run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
