"""`mmr3 info`: where the tasks, the data and the embedding model are looked for, and what is there.

Each task's split of a data folder is checked as a load checks it (`data.verify_split`: shards
present, sizes and row counts as manifest.json lists them). `--verify` also compares every shard's
sha256 and exits 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import json

from mmr3_tasks.errors import MMR3Error

SPLITS = ("test", "train")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="where tasks, data and the embedding model are found (for --include_path too)")
    p.add_argument("--tasks-path", action="store_true", help="print only the task folder, for --include_path")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every shard of the data folder against manifest.json, sha256 included; exit 1 if any is wrong",
    )
    p.set_defaults(func=run)


def gather(verify: bool = False) -> dict:
    from pathlib import Path

    from mmr3_tasks import __version__, data, embedding, schema, taskdefs

    location = data.data_location()
    root = Path(location).expanduser()
    status, problems = {}, []
    for task in schema.TASKS:
        for split in SPLITS:
            if root.is_dir():
                check = data.verify_split(root, task, split, full=verify)
                status[f"{task}/{split}"] = check.status()
                problems += [{"split": f"{task}/{split}", "problem": p, "fix": check.fix()} for p in check.problems]
            else:
                status[f"{task}/{split}"] = "missing"
    return {
        "version": __version__,
        "tasks_path": str(taskdefs.TASKS_DIR),
        "tasks": [d.name for d in taskdefs.TASK_DEFS] + list(taskdefs.GROUPS),
        "data_location": location,
        "data_from": data.data_origin(),
        "data_is_folder": root.is_dir(),
        "data_checked": "bytes, rows and sha256" if verify else "bytes and rows",
        "data": status,
        "data_problems": problems,
        "demo_files": [str(data.demo_file(t, s)) for t in schema.TASKS for s in data.DEMO_SPLITS],
        "embedding_model": embedding.requested_embedding_model(),
        "embedding_model_path": embedding.resolve_embedding_model(),
    }


def run(args: argparse.Namespace) -> int:
    info = gather(verify=args.verify)
    if args.tasks_path:
        print(info["tasks_path"])
    elif args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"lmms-eval-mmr3 {info['version']}")
        print(f"tasks:           {', '.join(info['tasks'])}")
        print(f"task folder:     {info['tasks_path']}   (lmms-eval --include_path)")
        print(f"data:            {info['data_location']}   (from {info['data_from']})")
        bad = {p["split"] for p in info["data_problems"]}
        for key, value in info["data"].items():
            mark = "BAD " if key in bad else ("ok  " if value != "missing" else "    ")
            print(f"  {mark}{key:<16} {value}")
        for fix in dict.fromkeys(p["fix"] for p in info["data_problems"]):
            print(f"  fix: {fix}")
        print(f"embedding model: {info['embedding_model']} -> {info['embedding_model_path']}")
    if args.verify:
        verify_outcome(info)
        if not args.json:
            checked = sum(value != "missing" for value in info["data"].values())
            print(f"verified: {checked} split(s) of {info['data_location']}, no problem found")
    return 0


def verify_outcome(info: dict) -> None:
    """`--verify`: MMR3Error (exit 1) unless the folder holds data and every split of it checked out."""
    where = info["data_location"]
    if not info["data_is_folder"]:
        raise MMR3Error(
            f"--verify checks a build folder, and there is none at {where} (a hub dataset id is not verified "
            f"here): build one with `mmr3 build --out {where}`, or set MMR3_DATA to one"
        )
    if all(value == "missing" for value in info["data"].values()):
        raise MMR3Error(f"--verify found no MM-R³ data at {where}: build it with `mmr3 build --out {where}`")
    problems = info["data_problems"]
    if problems:
        splits = sorted({p["split"] for p in problems})
        fixes = "; ".join(dict.fromkeys(p["fix"] for p in problems))
        raise MMR3Error(
            f"{len(problems)} problem(s) in {', '.join(splits)} of {where} (listed in the output). Fix: {fixes}"
        )
