"""`mmr3 demo`: the whole pipeline on the bundled demo set, ending in the MM-R³ tables.

It evaluates a small real VLM from the hub on CPU when the hub is reachable. When it is not, it
says so and builds a tiny untrained LLaVA locally instead, whose numbers mean nothing: they only
show that every part runs. Either way it runs the real `lmms-eval` command, which leaves its
results JSON and samples under --out, and prints the tables of `mmr3 report`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from mmr3_tasks.errors import MMR3Error


class DemoError(MMR3Error, RuntimeError):
    """The demo's lmms-eval run failed; its own output above says why."""


DEFAULT_HUB_MODEL = "llava-hf/llava-interleave-qwen-0.5b-hf"  # LLaVA architecture, 0.9B parameters
MEANINGLESS = "tiny untrained LLaVA: numbers are MEANINGLESS, they only show that the pipeline runs"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run MM-R³ on the bundled demo set with a small VLM and print the tables")
    p.add_argument(
        "--model-id", default=DEFAULT_HUB_MODEL, help=f"hub checkpoint to try first (default {DEFAULT_HUB_MODEL})"
    )
    p.add_argument("--offline", action="store_true", help="do not try the hub; use the tiny local model")
    p.add_argument(
        "--out", type=Path, default=Path("mmr3_out/demo"), help="lmms-eval --output_path (default %(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--limit", type=int, help="lmms-eval --limit per task (testing only)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def hub_checkpoint(model_id: str) -> Path | None:
    """The local snapshot of `model_id`, downloading it if the hub answers; None when it cannot."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, etag_timeout=10))
    except Exception as err:  # offline mode, DNS failure, timeout, gated repo: all mean "not available here"
        print(f"mmr3 demo: the model hub is not reachable for {model_id} ({type(err).__name__}: {str(err)[:200]})")
        return None


def tiny_checkpoint() -> Path:
    from mmr3_adapters.models.tiny import build_tiny_llava
    from mmr3_tasks.data import cache_root

    return Path(build_tiny_llava(cache_root() / "tiny-llava"))


def lmms_eval_executable() -> str:
    """The `lmms-eval` command of this Python's environment, else the one on PATH.

    The environment's own comes first so that a venv used without activation runs its own
    lmms-eval (with our entry points), not another one found on PATH.
    """
    exe = Path(sys.executable).with_name("lmms-eval")
    return str(exe) if exe.exists() else (shutil.which("lmms-eval") or "lmms-eval")


def lmms_eval_command(checkpoint: Path, args: argparse.Namespace) -> list[str]:
    cmd = [lmms_eval_executable()]
    cmd += ["--model", "mmr3_llava", "--model_args", f"pretrained={checkpoint},dtype=float32"]
    cmd += ["--tasks", "mmr3_mini", "--batch_size", str(args.batch_size), "--device", args.device]
    cmd += ["--output_path", str(args.out), "--log_samples"]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    return cmd


def run(args: argparse.Namespace) -> int:
    checkpoint = None if args.offline else hub_checkpoint(args.model_id)
    if checkpoint is None:
        print(f"mmr3 demo: falling back to a {MEANINGLESS}.")
        checkpoint, label = tiny_checkpoint(), "tiny untrained LLaVA (meaningless)"
    else:
        label = args.model_id
    cmd = lmms_eval_command(checkpoint, args)
    print("mmr3 demo: running", " ".join(cmd), flush=True)
    started = set(args.out.rglob("*_results.json")) if args.out.exists() else set()
    proc = subprocess.run(cmd)
    new = sorted(set(args.out.rglob("*_results.json")) - started)
    if proc.returncode != 0 or not new:  # lmms-eval can exit 0 on failure: the results file is the proof
        raise DemoError(f"lmms-eval wrote no results (exit code {proc.returncode}); see its output above")
    from mmr3_tasks import report

    runs = report.load_runs([str(new[-1])], [label])
    tables = report.build_tables(runs, with_paper=True)
    print()
    if "meaningless" in label:
        print(f"!!! {MEANINGLESS} !!!\n")
    for table in tables:
        print(report.render_markdown(table))
    print(f"results JSON: {new[-1]}")
    for samples in sorted(new[-1].parent.glob(f"{new[-1].name.split('_results')[0]}_samples_*.jsonl")):
        print(f"samples:      {samples}")
    return 0
