"""OK-VQA (rephrase): its official question and annotation files over COCO 2014 images, or the hub
dataset lmms-eval's own ok_vqa task loads."""

from __future__ import annotations

from pathlib import Path

from mmr3_tasks.builder.render import ImageRef
from mmr3_tasks.builder.sources.common import (
    OFFICIAL_SPLITS,
    SourceError,
    SourcePool,
    add_question,
    file_fingerprint,
    first_dir,
    hub_id,
    hub_questions,
    is_hub,
    load_json,
    long_enough,
    ranked_answers,
    records,
)

# The hub dataset lmms-eval 0.7.3's own ok_vqa task loads (its `dataset_path`).
OKVQA_HUB = "lmms-lab-encoder/OK-VQA"
_FIX = "re-download it (https://okvqa.allenai.org/download.html)"
_NONE_FOUND = (
    "no OK-VQA files in {root}: expected OpenEnded_mscoco_{{train,val}}2014_questions.json and "
    "mscoco_{{train,val}}2014_annotations.json (https://okvqa.allenai.org/download.html)"
)


def okvqa(location: str) -> SourcePool:
    """`OpenEnded_mscoco_{train,val}2014_questions.json`, `mscoco_{train,val}2014_annotations.json`
    and the COCO 2014 images `{train,val}2014/COCO_{train,val}2014_<12-digit id>.jpg`; or
    `hub:<dataset id>`."""
    if is_hub(location):
        return _okvqa_hub(hub_id(location, OKVQA_HUB))
    root = Path(location).expanduser()
    pool = SourcePool("okvqa", "rephrase")
    used = []
    for official, split in OFFICIAL_SPLITS.items():
        qpath = root / f"OpenEnded_mscoco_{official}2014_questions.json"
        apath = root / f"mscoco_{official}2014_annotations.json"
        if not qpath.is_file() and not apath.is_file():
            continue
        if not (qpath.is_file() and apath.is_file()):
            raise SourceError(f"OK-VQA {official}2014: need both {qpath.name} and {apath.name} in {root}")
        used += [qpath, apath]
        image_dir = first_dir(
            [root / f"{official}2014", root / "images" / f"{official}2014", root / "coco" / f"{official}2014"],
            f"COCO {official}2014 image",
        )
        ann_records = records(load_json(apath), "annotations", apath, {"question_id": int, "answers": list}, fix=_FIX)
        for i, ann in enumerate(ann_records):
            if not all(isinstance(a, dict) for a in ann["answers"]):
                raise SourceError(f"{apath}: annotations[{i}].answers holds a non-object: {_FIX}")
        annotations = {a["question_id"]: a for a in ann_records}
        questions = records(
            load_json(qpath), "questions", qpath, {"question_id": int, "question": str, "image_id": int}, fix=_FIX
        )
        items = []
        for q in sorted(questions, key=lambda q: q["question_id"]):
            if not long_enough(pool, q["question"]):
                continue
            ann = annotations.get(q["question_id"])
            if ann is None:
                pool.skipped["question without annotation"] += 1
                continue
            raw = [a.get("raw_answer", "") for a in ann["answers"]]
            processed = [a.get("answer", "") for a in ann["answers"]]
            image_id = int(q["image_id"])
            name = f"COCO_{official}2014_{image_id:012d}.jpg"
            image = ImageRef(key=f"coco2014:{image_id}", path=str(image_dir / name))
            answers = ranked_answers(raw) + ranked_answers(processed)
            where = f"OK-VQA {official}2014; COCO image {name}"
            add_question(items, pool, q["question_id"], q["question"], answers, image, where)
        pool.splits[split] = items
    pool.fingerprint = file_fingerprint(used, root, none_found=_NONE_FOUND.format(root=root))
    return pool


def _okvqa_hub(dataset_id: str) -> SourcePool:
    def parse(i: int, row: dict) -> tuple[object, str, list[str]]:
        qid = row.get("question_id", i)
        image_id = row.get("image_id") if row.get("image_id") is not None else f"q{qid}"
        return qid, f"coco2014:{image_id}", ranked_answers(list(row.get("answers") or []))

    columns = ("question", "question_id", "image_id", "answers")
    pool = SourcePool("okvqa", "rephrase")
    return hub_questions(pool, dataset_id, f"OK-VQA ({OKVQA_HUB})", columns, parse)
