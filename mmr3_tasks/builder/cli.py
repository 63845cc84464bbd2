"""`mmr3 build`: the MM-R³ benchmark and its training splits from the public sources, or the demo set.

    mmr3 build --out DIR --okvqa DIR --infovqa DIR --gldv2 DIR --mit-indoor DIR --coco DIR \
               --style-models johnson-onnx [--rephrase-backend openai --rephrase-model gpt-3.5-turbo]
    mmr3 build --demo --style-models DIR        # the bundled demo set, same renderers

Run the same command again after an interruption, or `mmr3 build --config OUT/build_config.json
--out OUT` (which also repairs a build whose shards were deleted or damaged): finished shards are
kept, cached rephrasings are reused. docs/data.md describes every option.
"""

from __future__ import annotations

import argparse
import logging
import re


def register(sub) -> None:
    parser = sub.add_parser(
        "build",
        help="build the MM-R³ benchmark (or, with --demo, the bundled demo set)",
        description=(
            "Builds MM-R³'s rephrase / restyle / context splits from the public sources into parquet "
            "shards the mmr3_* tasks read (docs/data.md). Resumable: run the same command again. "
            "With --demo, rebuilds the bundled demo set."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--demo", action="store_true", help="build the bundled demo set (mmr3_mini_*)")
    parser.add_argument("--out", default=None, help="output folder (default: $MMR3_DATA or ~/.cache/mmr3/data)")
    parser.add_argument(
        "--config",
        default=None,
        help="a build_config.json to start from (flags override it); OUT/build_config.json reruns or repairs a build",
    )
    what = parser.add_argument_group("what to build")
    what.add_argument("--tasks", default=None, help="comma-separated: rephrase,restyle,context (default all)")
    what.add_argument("--splits", default=None, help="comma-separated: test,train (default both)")
    what.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="TASK.SPLIT=N",
        help="groups of a split (default: the paper's; e.g. --size context.train=0); repeatable",
    )
    what.add_argument("--seed", type=int, default=None, help="seed of every random choice (default 0)")
    sources = parser.add_argument_group("sources (a folder in the official format, or hub:<dataset id>)")
    sources.add_argument("--okvqa", default=None, help="OK-VQA questions/annotations + COCO 2014 images")
    sources.add_argument("--infovqa", default=None, help="InfographicsVQA JSON + images")
    sources.add_argument("--gldv2", default=None, help="Google Landmarks v2: train.csv, labels, train/")
    sources.add_argument("--mit-indoor", default=None, help="MIT Indoor 67: Images/, Train/TestImages.txt")
    sources.add_argument("--coco", default=None, help="COCO: annotations/instances_*.json + images")
    style = parser.add_argument_group("restyle")
    style.add_argument(
        "--style-models",
        default=None,
        help="folder or URL prefix with candy/mosaic/udnie (.onnx, or TransformerNet .pth/.safetensors), "
        "or 'johnson-onnx' to fetch Johnson's ONNX models from their pinned source (research-use licence)",
    )
    style.add_argument("--style-format", default=None, choices=("auto", "onnx", "transformer_net"))
    style.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"), help="for style models")
    style.add_argument("--resolution", type=int, default=None, choices=(224, 640, 1024), help="square size first")
    style.add_argument("--restyle-max-side", type=int, default=None, help="longest side otherwise (default 640)")
    style.add_argument("--style-batch-size", type=int, default=None, help="images per network call (default 8)")
    gen = parser.add_argument_group("rephrase")
    gen.add_argument("--rephrase-backend", default=None, choices=("openai", "transformers"))
    gen.add_argument("--rephrase-model", default=None, help="chat model name, or a transformers model folder/id")
    gen.add_argument("--api-base", default=None, help="OpenAI-compatible base URL ending in /v1 ($OPENAI_BASE_URL)")
    gen.add_argument("--api-key-env", default=None, help="environment variable with the key (OPENAI_API_KEY)")
    gen.add_argument("--concurrency", type=int, default=None, help="requests in flight (default 16)")
    gen.add_argument("--temperature", type=float, default=None, help="default 1.0")
    gen.add_argument("--max-tokens", type=int, default=None, help="default 256")
    gen.add_argument("--max-retries", type=int, default=None, help="per request (default 6)")
    gen.add_argument("--request-timeout", type=float, default=None, help="seconds (default 60)")
    out = parser.add_argument_group("output")
    out.add_argument("--jpeg-quality", type=int, default=None, help="of re-encoded images (default 95)")
    out.add_argument("--shard-rows", type=int, default=None, help="rows per parquet shard (default 1000)")
    out.add_argument("--workers", type=int, default=None, help="threads for images (default 2)")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    out.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload the build to this hub dataset")
    out.add_argument("--hub-private", action="store_true", help="create the hub repository private")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from mmr3_tasks.errors import MMR3Error

    try:
        return _run_demo(args) if args.demo else _run_full(args)
    except MMR3Error:
        raise  # `mmr3` prints it as one line and exits 1
    except ValueError as err:  # a flag's value the dataclasses refuse (they raise ValueError)
        raise MMR3Error(str(err)) from err


def _run_demo(args: argparse.Namespace) -> int:
    from mmr3_tasks.builder.demo_set import DEMO_OUT, DemoConfig, build_demo
    from mmr3_tasks.builder.styles import StyleModelSpec

    if not args.style_models:
        raise ValueError(
            "--demo needs --style-models FOLDER|URL|johnson-onnx: the demo's restyled images come from "
            "Johnson's candy/mosaic/udnie models, which the project does not ship"
        )
    spec = StyleModelSpec(args.style_models, format=args.style_format or "auto", device=args.device or "auto")
    config = DemoConfig(style_models=spec, out=args.out or str(DEMO_OUT), seed=args.seed or 0)
    manifest = build_demo(config)
    for task, splits in manifest["tasks"].items():
        for split, info in splits.items():
            line = f"{task:9s} {split:5s} {info['groups']:4d} groups {info['rows']:5d} rows"
            print(f"{line} -> {config.out}/{info['file']}")
    print(f"done in {manifest['elapsed_s']} s; manifest: {config.out}/manifest.json")
    return 0


_SIZE = re.compile(r"^(rephrase|restyle|context)\.(test|train)=(\d+)$")


def config_from_args(args: argparse.Namespace):
    """A BuildConfig from --config (if any) with the flags given on top."""
    from mmr3_tasks import data
    from mmr3_tasks.builder.config import BuildConfig, ConfigError
    from mmr3_tasks.builder.styles import StyleModelSpec

    base = BuildConfig.from_json(args.config).to_dict() if args.config else {"out": ""}
    if args.out:
        base["out"] = args.out
    if not base.get("out"):
        base["out"] = data.data_location()
    if args.tasks:
        base["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.splits:
        base["splits"] = [s.strip() for s in args.splits.split(",") if s.strip()]
    for spec in args.size:
        m = _SIZE.match(spec.strip())
        if not m:
            raise ConfigError(f"--size {spec!r}: expected TASK.SPLIT=N, e.g. rephrase.test=100")
        base.setdefault("sizes", BuildConfig(out="x").sizes).setdefault(m[1], {})[m[2]] = int(m[3])
    scalar = {
        "seed": args.seed,
        "restyle_resolution": args.resolution,
        "restyle_max_side": args.restyle_max_side,
        "style_batch_size": args.style_batch_size,
        "jpeg_quality": args.jpeg_quality,
        "shard_rows": args.shard_rows,
        "workers": args.workers,
    }
    base.update({k: v for k, v in scalar.items() if v is not None})
    if args.no_progress:
        base["progress"] = False
    sources = base.setdefault("sources", {})
    for name in ("okvqa", "infovqa", "gldv2", "mit_indoor", "coco"):
        if getattr(args, name) is not None:
            sources[name] = getattr(args, name)
    generator = base.setdefault("generator", {})
    flags = {
        "backend": args.rephrase_backend,
        "model": args.rephrase_model,
        "base_url": args.api_base,
        "api_key_env": args.api_key_env,
        "concurrency": args.concurrency,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "max_retries": args.max_retries,
        "timeout_s": args.request_timeout,
    }
    generator.update({k: v for k, v in flags.items() if v is not None})
    if generator.get("backend") == "transformers" and not args.rephrase_model and not args.config:
        raise ConfigError("--rephrase-backend transformers needs --rephrase-model FOLDER_OR_ID")
    if args.style_models or args.style_format or args.device:
        current = base.get("style_models") or {}
        base["style_models"] = StyleModelSpec(
            location=args.style_models or current.get("location", ""),
            format=args.style_format or current.get("format", "auto"),
            device=args.device or current.get("device", "auto"),
        ).__dict__
    return BuildConfig.from_dict(base)


def _run_full(args: argparse.Namespace) -> int:
    from mmr3_tasks.builder.build_report import summary
    from mmr3_tasks.builder.hub import push_to_hub
    from mmr3_tasks.builder.pipeline import build

    config = config_from_args(args)
    report = build(config)
    print(summary(report))
    print(f"built into {config.out} (manifest.json, README.md, build_report.json)")
    if args.push_to_hub:
        url = push_to_hub(config.out, args.push_to_hub, private=args.hub_private)
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub} ({url})")
    return 0
