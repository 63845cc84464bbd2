"""The dataset card (README.md) of a build, generated from its manifest."""

from __future__ import annotations

from mmr3_tasks import schema

_TASK_TEXT = {
    "rephrase": (
        "Question Rephrasing: an OK-VQA / InfographicsVQA question of more than 10 words, rephrased 3 times "
        "with the paper's prompt (answer included); variants r1-r3 over the same image; `question` is the "
        "rephrasing, `original_question` the source question."
    ),
    "restyle": (
        "Image Restyling: a GLDv2 landmark or MIT Indoor scene in 4 styles (candy, mosaic, udnie through "
        "Johnson et al.'s fast style transfer with instance norm, and grayscale); `question` is "
        f'"{schema.RESTYLE_PROMPT}"; ground truths are the landmark name or readable scene label.'
    ),
    "context": (
        "Context Reasoning: a COCO image with one object (area 10-25% of the image) masked 3 ways; each "
        "row records `mask_shape`, `mask_lines`, `mask_color` and `mask_box` (pixels of the stored "
        f'image); `question` is "{schema.CONTEXT_PROMPT}"; the ground truth is the COCO category.'
    ),
}


def dataset_card(manifest: dict) -> str:
    tasks = manifest.get("tasks", {})
    lines = ["---", "configs:"]
    for task in schema.TASKS:
        if task not in tasks:
            continue
        lines += [f"- config_name: {task}", "  data_files:"]
        for split in sorted(tasks[task]):
            lines += [f"  - split: {split}", f"    path: {task}/{split}-*.parquet"]
    lines += [
        "license: other",
        "task_categories:",
        "- visual-question-answering",
        "pretty_name: MM-R³ (rebuilt from public sources)",
        "---",
        "",
        "# MM-R³, rebuilt",
        "",
        "A rebuild of the MM-R³ consistency benchmark (Chou et al., arXiv 2410.04778) from its public "
        "sources with `mmr3 build` (lmms-eval-mmr3). The paper's own data was never released; this is "
        "not it, but the same recipe at the same sizes. Run it with the `mmr3_*` lmms-eval tasks "
        "(`MMR3_DATA=<this folder or hub id>`).",
        "",
        "| task | split | groups | rows |",
        "|---|---|---|---|",
    ]
    for task in schema.TASKS:
        for split, entry in sorted(tasks.get(task, {}).items()):
            lines.append(f"| {task} | {split} | {entry['groups']:,} | {entry['rows']:,} |")
    lines += ["", "## Tasks", ""]
    for task in schema.TASKS:
        if task in tasks:
            lines += [f"- **{task}**: {_TASK_TEXT[task]}"]
    lines += [
        "",
        "Every row is one variant; the variants of an item share `group_id`, are adjacent and ordered by "
        "`variant_index`. Schema: `mmr3_tasks.schema.FEATURES`.",
        "",
        "## Build settings",
        "",
    ]
    for task in schema.TASKS:
        for split, entry in sorted(tasks.get(task, {}).items()):
            s = entry["settings"]
            extra = ""
            if "style_models" in s:
                extra = "; style models " + ", ".join(
                    f"{n} ({m['kind']}, sha256 {m['sha256'][:12]}...)" for n, m in s["style_models"].items()
                )
            if "generator" in s:
                g = s["generator"]
                extra = f"; rephrasings by {g['backend']} `{g['model']}` at temperature {g['temperature']}"
            lines.append(f"- {task}/{split}: seed {s['seed']}, images {s['image_policy']}{extra}")
    lines += [
        "",
        "`manifest.json` holds the settings, the input fingerprints and the sha256 of every image.",
        "",
        "## Licences",
        "",
        "The rows inherit the licences of their sources (column `image_license`): OK-VQA and COCO images are "
        "Flickr images under their own Creative Commons licences (COCO terms of use); InfographicsVQA is for "
        "research use; GLDv2 images carry Wikimedia Commons licences; MIT Indoor images were collected from "
        "the web for research. Johnson et al.'s style models are 'free for personal or research use'. "
        "Check each source's terms before redistributing.",
        "",
    ]
    return "\n".join(lines)
