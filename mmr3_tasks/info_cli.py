"""`mmr3 info`: where the tasks, the data and the embedding model are looked for, and what is there."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="where tasks, data and the embedding model are found (for --include_path too)")
    p.add_argument("--tasks-path", action="store_true", help="print only the task folder, for --include_path")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def gather() -> dict:
    from pathlib import Path

    from mmr3_tasks import __version__, data, embedding, schema, taskdefs

    location = data.data_location()
    root = Path(location).expanduser()
    status = {}
    for task in schema.TASKS:
        for split in ("test", "train"):
            files = data.split_files(root, task, split) if root.is_dir() else []
            status[f"{task}/{split}"] = f"{len(files)} parquet shard(s)" if files else "missing"
    return {
        "version": __version__,
        "tasks_path": str(taskdefs.TASKS_DIR),
        "tasks": [d.name for d in taskdefs.TASK_DEFS] + list(taskdefs.GROUPS),
        "data_location": location,
        "data_from": data.data_origin(),
        "data": status,
        "demo_files": [str(data.demo_file(t, s)) for t in schema.TASKS for s in data.DEMO_SPLITS],
        "embedding_model": embedding.requested_embedding_model(),
        "embedding_model_path": embedding.resolve_embedding_model(),
    }


def run(args: argparse.Namespace) -> int:
    info = gather()
    if args.tasks_path:
        print(info["tasks_path"])
    elif args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"lmms-eval-mmr3 {info['version']}")
        print(f"tasks:           {', '.join(info['tasks'])}")
        print(f"task folder:     {info['tasks_path']}   (lmms-eval --include_path)")
        print(f"data:            {info['data_location']}   (from {info['data_from']})")
        for key, value in info["data"].items():
            print(f"  {key:<16} {value}")
        print(f"embedding model: {info['embedding_model']} -> {info['embedding_model_path']}")
    return 0
