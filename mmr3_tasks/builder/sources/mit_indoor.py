"""MIT Indoor Scenes 67 (restyle): `Images/<class>/<file>.jpg` and the official
`TrainImages.txt` / `TestImages.txt` lists."""

from __future__ import annotations

from pathlib import Path

from mmr3_tasks.builder import labels
from mmr3_tasks.builder.render import ImageRef, RestyleItem, safe_id
from mmr3_tasks.builder.sources.common import LICENSES, SourceError, SourcePool, file_fingerprint, first_dir, is_hub

_NONE_FOUND = "MIT Indoor: no TrainImages.txt / TestImages.txt in {root} (https://web.mit.edu/torralba/www/indoor.html)"


def mit_indoor(location: str) -> SourcePool:
    """The images of each list, labelled by their class folder."""
    if is_hub(location):
        raise SourceError("MIT Indoor is read from a local copy only (Images/, TrainImages.txt, TestImages.txt)")
    root = Path(location).expanduser()
    image_dir = first_dir([root / "Images", root / "indoorCVPR_09" / "Images"], "MIT Indoor Images")
    pool = SourcePool("mit_indoor", "restyle")
    used = []
    for list_name, split in (("TestImages.txt", "test"), ("TrainImages.txt", "train")):
        path = root / list_name
        if not path.is_file():
            continue
        used.append(path)
        items = []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise SourceError(f"MIT Indoor: {path} is not UTF-8 text ({err}); re-download it") from err
        for line in sorted({ln.strip() for ln in text.splitlines() if ln.strip()}):
            rel = line.replace("\\", "/")
            if "/" not in rel:
                pool.skipped["list line without a class folder"] += 1
                continue
            label = rel.split("/", 1)[0]
            answers = labels.scene_answers(label)
            items.append(
                RestyleItem(
                    group_id=safe_id("mit_indoor", rel.rsplit(".", 1)[0].replace("/", "-")),
                    source="mit_indoor",
                    source_id=rel,
                    image=ImageRef(key=f"mit_indoor:{rel}", path=str(image_dir / rel)),
                    answers=answers,
                    image_license=LICENSES["mit_indoor"],
                    image_source=f"MIT Indoor 67 Images/{rel}",
                )
            )
        pool.splits[split] = items
    pool.fingerprint = file_fingerprint(used, root, none_found=_NONE_FOUND.format(root=root))
    return pool
