"""InfographicsVQA (rephrase): its official JSON files and images folder, or the hub dataset
lmms-eval's own infovqa task loads."""

from __future__ import annotations

from pathlib import Path

from mmr3_tasks.builder.render import ImageRef
from mmr3_tasks.builder.sources.common import (
    OFFICIAL_SPLITS,
    SourcePool,
    add_question,
    file_fingerprint,
    first_dir,
    hub_id,
    hub_questions,
    is_hub,
    load_json,
    long_enough,
    records,
)

# The hub dataset (and config) lmms-eval 0.7.3's own infovqa task loads (its `dataset_path`).
INFOVQA_HUB = "lmms-lab-encoder/DocVQA"
INFOVQA_HUB_CONFIG = "InfographicVQA"
_NONE_FOUND = (
    "no InfographicsVQA files in {root}: expected infographicsVQA_{{train,val}}_v1.0.json and the "
    "images folder (https://rrc.cvc.uab.es/?ch=17, task 3)"
)


def infovqa(location: str) -> SourcePool:
    """`infographicsVQA_{train,val}_v1.0.json` ({"data": [{questionId, question, image_local_name,
    answers, ...}]}) and the images folder; or `hub:<dataset id>`."""
    if is_hub(location):
        return _infovqa_hub(hub_id(location, INFOVQA_HUB))
    root = Path(location).expanduser()
    pool = SourcePool("infographicvqa", "rephrase")
    used = []
    for official, split in OFFICIAL_SPLITS.items():
        path = root / f"infographicsVQA_{official}_v1.0.json"
        if not path.is_file():
            continue
        used.append(path)
        image_dir = first_dir(
            [root / "infographicsvqa_images", root / "images", root / f"{official}_images", root],
            "InfographicsVQA image",
        )
        questions = records(
            load_json(path),
            "data",
            path,
            {"questionId": int, "question": str, "image_local_name": str},
            optional={"answers": list},
            fix="re-download it (https://rrc.cvc.uab.es/?ch=17)",
        )
        items = []
        for q in sorted(questions, key=lambda q: q["questionId"]):
            if not long_enough(pool, q["question"]):
                continue
            name = q["image_local_name"]
            image = ImageRef(key=f"infographicvqa:{name}", path=str(image_dir / name))
            where = f"InfographicsVQA {official}; {q.get('image_url') or name}"
            add_question(items, pool, q["questionId"], q["question"], q.get("answers") or [], image, where)
        pool.splits[split] = items
    pool.fingerprint = file_fingerprint(used, root, none_found=_NONE_FOUND.format(root=root))
    return pool


def _infovqa_hub(dataset_id: str) -> SourcePool:
    def parse(i: int, row: dict) -> tuple[object, str, list[str]]:
        qid = row.get("questionId", i)
        image_key = row.get("image_local_name") or row.get("image_url") or f"q{qid}"
        return qid, f"infographicvqa:{image_key}", row.get("answers") or []

    columns = ("question", "questionId", "answers", "image_url", "image_local_name")
    config = INFOVQA_HUB_CONFIG if dataset_id == INFOVQA_HUB else None
    pool = SourcePool("infographicvqa", "rephrase")
    return hub_questions(pool, dataset_id, f"InfographicsVQA ({INFOVQA_HUB})", columns, parse, config)
