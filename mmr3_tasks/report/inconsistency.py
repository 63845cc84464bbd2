"""The inconsistency browser: per task, the groups where a model disagreed with itself most.

The paper's Table 7 ("failure cases") for any run: each group shown as its variants side by side,
with the image the model saw, the question (or style, or mask), the answer, whether it is correct,
the pairwise cosines and the ground truths, so a reader sees *how* a model is inconsistent.

`inconsistent_groups` reads a run's `--log_samples` files, re-scores every group with the metric's
own cosines (`metrics.group_details`: the numbers Con and S_C were computed from), ranks the groups
(`RANKING_RULE`) and fills in images and questions from the data the run scored, found by its
`data_fingerprint`. `browser_section` lays that out as one self-contained HTML fragment. What is
not at hand (a samples file, the data) is said in a note, never an exception
(docs/leaderboard.md#inconsistency-browser).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmr3_tasks import data, embedding, metrics, schema, taskdefs
from mmr3_tasks.errors import MMR3Error
from mmr3_tasks.report.errors import ReportInputError
from mmr3_tasks.report.runs import Run
from mmr3_tasks.report.samples import read_payloads

BROWSER_TOP = 5
THUMBNAIL_SIZE = 128  # px, the longer side
MAX_ANSWER_CHARS = 600  # an answer shown longer than this is cut, with its length said
RANKING_RULE = (
    "Groups with at least one pair of answers at cosine ≤ {threshold:.2f} (Con < 100), most inconsistent "
    "first: lowest Con, then lowest S_C (mean pairwise cosine), then group id. A group of one answer has no pairs "
    "and is not ranked."
)
# What tells one variant of a group from another, per task: the table's row header.
VARIANT_KIND = {"rephrase": "question", "restyle": "style", "context": "mask"}
SAMPLES_MISSING = "{task}: no --log_samples file beside {results}; rerun lmms-eval with --log_samples to see its groups"
DATA_FIX = (
    "pass data_dir= the build folder the run read (its $MMR3_DATA then), or set MMR3_DATA to it; "
    "`mmr3 info` shows what a folder holds"
)


@dataclass(frozen=True)
class VariantView:
    """One response of a group, as the browser shows it."""

    id: str  # the response id: the row id, or `<row id>#s<k>` for the Sampling protocol's k-th repeat
    variant: str  # r1, candy, m1; s1..s4 for the Sampling protocol's repeats
    kind: str  # what the label is: "question", "style" or "mask" (VARIANT_KIND)
    label: str  # the question asked / the style / the mask; "" when the data is not at hand
    answer: str  # the model's response, as logged
    correct: bool  # as Acc counts it
    thumbnail: str | None  # data:image/png;base64,… of the image the model saw; None without the data
    scored_as: str | None = None  # context: the cleaned answer the metrics compared, when it differs


@dataclass(frozen=True)
class GroupView:
    """One group of one task: its variants side by side and the numbers that ranked it."""

    task: str  # the lmms-eval task, e.g. mmr3_mini_rephrase
    group_id: str
    rank: int  # 1 = the most inconsistent group of the task
    answers: tuple[str, ...]  # the ground truths
    variants: tuple[VariantView, ...]  # in scoring order (by variant)
    cosines: tuple[tuple[float | None, ...], ...]  # [i][j]: cosine of variants i and j; None on the diagonal
    con: float  # ×100, as the group counts in Con
    s_c: float
    acc: float


@dataclass
class TaskView:
    """One task of a run in the browser: its ranked groups, what was scored, and what is missing."""

    task: str
    groups: list[GroupView] = field(default_factory=list)
    scored: int = 0  # groups in the samples file
    ranked: int = 0  # groups with Con < 100, of which `groups` are the first `top`
    notes: list[str] = field(default_factory=list)


def inconsistent_groups(
    run: Run,
    top: int = BROWSER_TOP,
    data_dir: str | None = None,
    embedder: metrics.Embedder | None = None,
) -> tuple[dict[str, list[GroupView]], list[str]]:
    """Per lmms-eval task of the run, its `top` most inconsistent groups (`RANKING_RULE`), and the notes.

    Args:
        run: one run of `mmr3 report` (`runs.load_runs`); its `samples` are read.
        top: groups per task.
        data_dir: the build folder the run scored; default `$MMR3_DATA` / the default location. The
            demo tasks read the bundled demo set.
        embedder: the sentence encoder; default the one the tasks score with.

    Returns:
        task -> its groups, most inconsistent first (every task of the run, [] where none can be
        shown), and one note per thing not at hand or not as expected, each naming its task.
    """
    views = browse(run, top, data_dir, embedder)
    return {v.task: v.groups for v in views}, [n for v in views for n in v.notes]


def browse(
    run: Run, top: int = BROWSER_TOP, data_dir: str | None = None, embedder: metrics.Embedder | None = None
) -> list[TaskView]:
    """`inconsistent_groups`, with each task's counts and notes kept apart."""
    views = []
    for d in taskdefs.TASK_DEFS:  # the tasks' own order, not the results file's
        name = run.task_names.get((d.task, d.protocol))
        if name != d.name:
            continue
        view = TaskView(name)
        views.append(view)
        path = run.samples.get(name)
        if path is None:
            results = ", ".join(Path(s).name for s in run.sources) or "its results file"
            view.notes.append(SAMPLES_MISSING.format(task=name, results=results))
            continue
        try:
            payloads = _task_payloads(Path(path), name)
        except ReportInputError as err:
            view.notes.append(f"{name}: its samples file is unusable: {err}")
            continue
        embedder = embedder or embedding.get_embedder(embedding.requested_embedding_model())
        _fill(view, payloads, run.scores.get((d.task, d.protocol), {}), top, data_dir, embedder)
    return views


def _task_payloads(path: Path, name: str) -> list[dict]:
    found = read_payloads([str(path)])
    if set(found) != {name}:
        raise ReportInputError(
            f"{path}: holds samples of {', '.join(sorted(found))}, not {name}; put the run's own samples file back"
        )
    return found[name]


def _fill(view: TaskView, payloads: list[dict], reported: dict, top: int, data_dir, embedder) -> None:
    from mmr3_tasks import hooks  # hooks imports `datasets`; the report's tables need not

    task = payloads[0]["task"]
    clean = task == "context"
    responses = [r for p in payloads for r in hooks.payload_responses(p)]
    payload_of = {r.id: p for p in payloads for r in hooks.payload_responses(p)}
    response_of = {r.id: r for r in responses}
    details = metrics.group_details(responses, embedder, clean_context=clean)
    view.scored = len(details)
    ranked = sorted(
        (d for d in details.items() if d[1].scores.con is not None and d[1].scores.con < 100.0),
        key=lambda item: (item[1].scores.con, item[1].scores.s_c, item[0]),
    )
    view.ranked = len(ranked)
    shown = ranked[: max(top, 0)]

    scored_with = getattr(embedder, "name", None)
    recorded = reported.get("embedding_model")
    if recorded and scored_with and recorded != scored_with:
        view.notes.append(f"{view.task}: the run was scored with {recorded}; these cosines are {scored_with}'s")
    acc = reported.get("acc")
    recomputed = sum(d.scores.acc for d in details.values()) / len(details)
    if isinstance(acc, int | float) and abs(recomputed - acc) > 1e-6:
        view.notes.append(
            f"{view.task}: its samples file does not reproduce its results file (Acc {recomputed:.2f} vs "
            f"{acc:.2f}); is it from another run?"
        )

    shown_rows = {payload_of[i]["id"] for _, d in shown for i in d.ids}
    rows = _scored_rows(view, task, payloads, shown_rows, data_dir)
    unmatched = 0
    for rank, (group_id, detail) in enumerate(shown, start=1):
        # Shown in the builder's variant order (candy, mosaic, udnie, grayscale), not the scorer's.
        order = sorted(range(len(detail.ids)), key=lambda k: (_variant_rank(task, detail.ids[k]), detail.ids[k]))
        variants = []
        for k in order:
            response_id = detail.ids[k]
            p, r = payload_of[response_id], response_of[response_id]
            row = rows.get(p["id"]) if rows is not None else None
            unmatched += rows is not None and row is None
            cleaned = metrics.clean_context_answer(r.response).strip() if clean else None
            variants.append(
                VariantView(
                    id=response_id,
                    variant=r.variant,
                    kind=VARIANT_KIND[task],
                    label=_label(task, p, row),
                    answer=r.response,
                    correct=detail.correct[k],
                    thumbnail=None if row is None else thumbnail(hooks.doc_to_visual(row)[0]),
                    scored_as=cleaned if cleaned is not None and cleaned != r.response.strip() else None,
                )
            )
        cos = detail.cosines
        view.groups.append(
            GroupView(
                task=view.task,
                group_id=group_id,
                rank=rank,
                answers=tuple(payload_of[detail.ids[0]]["answers"]),
                variants=tuple(variants),
                cosines=tuple(tuple(None if math.isnan(cos[i, j]) else float(cos[i, j]) for j in order) for i in order),
                con=detail.scores.con,
                s_c=detail.scores.s_c,
                acc=detail.scores.acc,
            )
        )
    if unmatched:
        view.notes.append(f"{view.task}: {unmatched} shown responses have no row in the data; shown without an image")


def _scored_rows(view: TaskView, task: str, payloads: list[dict], ids: set[str], data_dir) -> dict[str, dict] | None:
    """Row id -> row of the data the run scored, for `ids`; None, with a note, when it is not at hand."""
    if not ids:
        return {}
    scored = payloads[0].get("data") or ""
    base = scored.split("+rows:")[0]
    missing = "no images" + (" or questions" if task == "rephrase" else "") + " shown"
    if not base:
        view.notes.append(f"{view.task}: its samples do not name the data they scored; {missing}")
        return None
    source = "demo" if base.startswith("demo:") else "benchmark"
    if source == "demo":
        here, location = data.fingerprint("demo"), str(data.DEMO_DIR)
    else:
        location = data_dir or os.environ.get(data.DATA_ENV, "").strip() or _default_location(base)
        folder = Path(os.path.expanduser(location))
        if not base.startswith("hub:") and not folder.is_dir():
            view.notes.append(
                f"{view.task}: the data it scored ({base}) is not at hand: no build folder at {location}; "
                f"{missing}. To see them, {DATA_FIX}"
            )
            return None
        here = data.fingerprint("benchmark", location)
    if here != base:
        if source == "demo":
            fix = "the bundled demo set has changed since: use the lmms-eval-mmr3 version that ran it"
        else:
            fix = DATA_FIX
        view.notes.append(
            f"{view.task}: the data at {location} ({here}) is not the data the run scored ({base}); {missing}. {fix}"
        )
        return None
    try:
        ds = data.load_demo(task) if source == "demo" else data.load_split(task, "test", location)
    except MMR3Error as err:  # DataNotFoundError, DataSchemaError (DataIntegrityError)
        first = str(err).strip().splitlines()[0]
        view.notes.append(f"{view.task}: the data it scored ({base}) does not load: {first}; {missing}")
        return None
    index = {row_id: i for i, row_id in enumerate(ds["id"]) if row_id in ids}
    return {row_id: ds[i] for row_id, i in index.items()}


def _variant_rank(task: str, response_id: str) -> int:
    """A row id's variant's place in the builder's order; a Sampling repeat (`…#s2`) keeps its id's order."""
    variant = response_id.rsplit("/", 1)[-1]
    variants = schema.VARIANTS[task]
    return variants.index(variant) if variant in variants else len(variants)


def _default_location(fingerprint: str) -> str:
    """A hub build is found under its id; a local build at the default folder."""
    return fingerprint[len("hub:") :] if fingerprint.startswith("hub:") else str(data.default_data_dir())


def _label(task: str, payload: dict, row: dict | None) -> str:
    """The question asked, the style, or the mask: what sets this variant apart."""
    kinds = payload.get("kinds") or {}
    if task == "rephrase":
        return row["question"] if row is not None else ""
    if task == "restyle":
        return str(kinds.get("style") or (row or {}).get("style") or payload.get("variant", ""))
    source = kinds or row or {}
    lines, shape, color = source.get("mask_lines"), source.get("mask_shape"), source.get("mask_color")
    if not (lines or shape or color):
        return ""
    lines_text = f"{lines} line" + ("" if str(lines) == "1" else "s")
    return f"{color} {shape}, {lines_text}"


def thumbnail(image, size: int = THUMBNAIL_SIZE) -> str:
    """A PIL image as a `data:image/png;base64,…` URI, its longer side at most `size` px."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- HTML

CSS = """
.mmr3-browser { font-family: system-ui, sans-serif; font-size: 14px; }
.mmr3-browser .mmr3-note { color: #8a4b00; }
.mmr3-browser .mmr3-group { border-top: 1px solid #ccc; margin: 1em 0; padding-top: .5em; }
.mmr3-browser .mmr3-group-body { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.mmr3-browser table { border-collapse: collapse; }
.mmr3-browser th, .mmr3-browser td { border: 1px solid #ddd; padding: 4px 6px; vertical-align: top; }
.mmr3-browser .mmr3-variants td { max-width: 16em; }
.mmr3-browser .mmr3-thumb { display: block; max-width: 128px; max-height: 128px; }
.mmr3-browser .mmr3-correct { background: #e6f4e6; }
.mmr3-browser .mmr3-wrong { background: #fbe7e7; }
.mmr3-browser .mmr3-empty, .mmr3-browser .mmr3-missing { color: #888; font-style: italic; }
.mmr3-browser .mmr3-scored-as { color: #555; font-size: 90%; }
.mmr3-browser .mmr3-cos-low { background: #fbe7e7; }
.mmr3-browser .mmr3-cos-high { background: #e6f4e6; }
.mmr3-browser .mmr3-gt-answer { font-weight: 600; }
"""


def browser_section(
    run: Run, top: int = BROWSER_TOP, data_dir: str | None = None, *, embedder: metrics.Embedder | None = None
) -> str:
    """The inconsistency browser of one run: a self-contained `<section class="mmr3-browser">`.

    Per task of the run, its `top` most inconsistent groups (`RANKING_RULE`), each a table of its
    variants side by side (image, question / style / mask, answer, correct or not), its pairwise
    cosine matrix and its ground truths. What is not at hand is said in a note. No script; every
    class starts with `mmr3-`, and every text is escaped.
    """
    views = browse(run, top, data_dir, embedder)
    rule = RANKING_RULE.format(threshold=metrics.CONSISTENCY_THRESHOLD)
    out = [
        '<section class="mmr3-browser">',
        f"<style>{CSS}</style>",
        f"<h3>Inconsistency browser: {_e(run.label)}</h3>",
        f'<p class="mmr3-rule">{_e(rule)}</p>',
    ]
    if not views:
        out.append(f'<p class="mmr3-note">{_e(run.label)}: no MM-R³ task in this run</p>')
    for view in views:
        out.append(_task_html(view))
    out.append("</section>")
    return "\n".join(out)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _task_html(view: TaskView) -> str:
    out = [f'<div class="mmr3-task" data-task="{_e(view.task)}">', f"<h4>{_e(view.task)}</h4>"]
    if view.notes:
        out.append('<ul class="mmr3-notes">')
        out += [f'<li class="mmr3-note">{_e(n)}</li>' for n in view.notes]
        out.append("</ul>")
    if view.scored:
        threshold = metrics.CONSISTENCY_THRESHOLD
        if view.ranked:
            summary = (
                f"{view.ranked} of {view.scored} groups {'has' if view.ranked == 1 else 'have'} a pair of answers "
                f"at cosine ≤ {threshold:.2f}; "
                f"the {len(view.groups)} most inconsistent shown"
            )
        else:
            summary = f"none of the {view.scored} groups has a pair of answers at cosine ≤ {threshold:.2f}"
        out.append(f'<p class="mmr3-summary">{_e(summary)}</p>')
    out += [_group_html(g) for g in view.groups]
    out.append("</div>")
    return "\n".join(out)


def _group_html(g: GroupView) -> str:
    names = [v.variant for v in g.variants]
    title = f"#{g.rank} {g.group_id}: Con {g.con:.2f}, S_C {g.s_c:.2f}, Acc {g.acc:.2f}"
    truths = ", ".join(f'<span class="mmr3-gt-answer">{_e(a)}</span>' for a in g.answers)
    out = [
        f'<div class="mmr3-group" data-group="{_e(g.group_id)}" data-rank="{g.rank}">',
        f'<h5 class="mmr3-group-title">{_e(title)}</h5>',
        f'<p class="mmr3-gt">ground truth: {truths}</p>',
        '<div class="mmr3-group-body">',
        '<table class="mmr3-variants">',
        "<tr><th></th>" + "".join(f'<th data-variant="{_e(n)}">{_e(n)}</th>' for n in names) + "</tr>",
        _shared_row("mmr3-row-image", "image", g.variants, _image_cell),
        _shared_row("mmr3-row-label", g.variants[0].kind, g.variants, _label_cell),
        _row("mmr3-row-answer", "answer", g.variants, _answer_cell),
        _row("mmr3-row-correct", "correct", g.variants, _correct_cell),
        "</table>",
        _cosine_table(names, g.cosines),
        "</div>",
        "</div>",
    ]
    return "\n".join(out)


def _row(cls: str, header: str, variants, cell) -> str:
    cells = "".join(cell(v) for v in variants)
    return f'<tr class="{cls}"><th>{_e(header)}</th>{cells}</tr>'


def _shared_row(cls: str, header: str, variants, cell) -> str:
    """A row whose cells are all alike (the one image of a rephrase group) as one cell across the columns."""
    cells = [cell(v) for v in variants]
    if len(variants) > 1 and len(set(cells)) == 1:
        one = cells[0].replace("<td ", f'<td colspan="{len(variants)}" ', 1)
        return f'<tr class="{cls}"><th>{_e(header)}</th>{one}</tr>'
    return f'<tr class="{cls}"><th>{_e(header)}</th>{"".join(cells)}</tr>'


def _image_cell(v: VariantView) -> str:
    if v.thumbnail is None:
        return '<td class="mmr3-missing">data not at hand</td>'
    return f'<td class="mmr3-image"><img class="mmr3-thumb" src="{_e(v.thumbnail)}" alt="the image the model saw"></td>'


def _label_cell(v: VariantView) -> str:
    if not v.label:
        return '<td class="mmr3-missing">data not at hand</td>'
    return f'<td class="mmr3-label">{_e(v.label)}</td>'


def _answer_cell(v: VariantView) -> str:
    if not v.answer.strip():
        text = '<span class="mmr3-answer mmr3-empty">(no answer)</span>'
    else:
        shown = v.answer
        if len(shown) > MAX_ANSWER_CHARS:
            shown = f"{shown[:MAX_ANSWER_CHARS]}… ({len(v.answer):,} characters)"
        text = f'<span class="mmr3-answer">{_e(shown)}</span>'
    if v.scored_as is not None:
        text += f'<br><span class="mmr3-scored-as">scored as: {_e(v.scored_as or "(nothing)")}</span>'
    return f'<td data-variant="{_e(v.variant)}">{text}</td>'


def _correct_cell(v: VariantView) -> str:
    cls, text = ("mmr3-correct", "✓ correct") if v.correct else ("mmr3-wrong", "✗ wrong")
    return f'<td class="{cls}" data-variant="{_e(v.variant)}" data-correct="{str(v.correct).lower()}">{text}</td>'


def _cosine_table(names: list[str], cosines) -> str:
    threshold = metrics.CONSISTENCY_THRESHOLD
    out = [
        '<table class="mmr3-cosines">',
        f"<caption>pairwise cosines (&gt; {threshold:.2f}: consistent)</caption>",
        "<tr><th></th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>",
    ]
    for name, row in zip(names, cosines, strict=True):
        cells = []
        for other, value in zip(names, row, strict=True):
            if value is None:
                cells.append('<td class="mmr3-cos-self">–</td>')
            else:
                cls = "mmr3-cos-high" if value > threshold else "mmr3-cos-low"
                cells.append(f'<td class="{cls}" data-pair="{_e(name)} {_e(other)}">{value:.3f}</td>')
        out.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    out.append("</table>")
    return "\n".join(out)


__all__ = [
    "BROWSER_TOP",
    "RANKING_RULE",
    "GroupView",
    "TaskView",
    "VariantView",
    "browse",
    "browser_section",
    "inconsistent_groups",
    "thumbnail",
]
