"""The inconsistency browser (mmr3_tasks/report/inconsistency.py): which groups, in which order, showing what.

The answers are scripted, so we know which groups are inconsistent. Every expected cosine, Con and
S_C is computed here from the embedding model's vectors, not read off the metrics module. The fast
tests write lmms-eval-shaped samples files from payloads that the real `hooks.process_results`
makes of the demo set's rows. The slow ones run the real `lmms-eval` with `mmr3_replay`.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmr3_tasks import data, hooks, metrics, report
from mmr3_tasks.embedding import get_embedder
from mmr3_tasks.report import inconsistency
from tests import mmr3_rows
from tests.conftest import run_lmms_cli
from tests.report_fixtures import write_run
from tests.test_data_verify import build_manifest

THRESHOLD = metrics.CONSISTENCY_THRESHOLD
TRICKY = '<b>A temple</b> & a "garden"'  # must reach the page as text, not markup
# Group -> the answers of its variants, in the builder's variant order; every other group answers its
# first ground truth for every variant, so it is consistent (Con 100) and never ranked.
SCRIPT = {
    "rephrase": {
        "rephrase-005": ["coffee", "a bicycle leaning on a wall", "the weather is cold today"],  # Con 0
        "rephrase-009": ["cat", "", "cat"],  # Con 33.3, S_C 33.3: an empty answer has cosine 0 with any
        "rephrase-012": ["cat", "", "cat"],  # the same numbers exactly: after rephrase-009 by group id
        "rephrase-002": ["america", "united states", "the moon"],  # Con 33.3, S_C ~51
        "rephrase-004": ["helmet", "a helmet", "a knife"],  # Con 33.3, S_C ~56
        "rephrase-006": ["spoon", "spoon", "fork"],  # Con 33.3, S_C ~63: sixth, so not in the top 5
    },
    "restyle": {"restyle-002": [TRICKY, "A sandy beach with waves.", TRICKY, "A kitchen with a stove."]},
    "context": {
        "context-005": ["The spoon.", "a fork in the masked region", "There is a knife."],  # Con 0
        "context-002": ["flag", "flag", "a dog"],  # Con 33.3
    },
}
EXPECTED_ORDER = {
    "mmr3_mini_rephrase": ["rephrase-005", "rephrase-009", "rephrase-012", "rephrase-002", "rephrase-004"],
    "mmr3_mini_restyle": ["restyle-002"],
    "mmr3_mini_context": ["context-005", "context-002"],
}
# What the context metrics compare, by the cleanup chain of the paper's Appendix A.3 (docs/metrics.md).
CONTEXT_SCORED = {"The spoon.": "spoon", "a fork in the masked region": "a fork", "There is a knife.": "a knife"}
# A small build of the full benchmark's layout, for the tasks that read $MMR3_DATA.
BUILD_ANSWERS = {"b1": ["cat"], "b2": ["dog"], "b3": ["red"]}
SAMPLING_SCRIPT = {"b1": ["cat"] * 4, "b2": ["dog", "a dog", "spoon", "dog"], "b3": ["", "", "", ""]}


def scripted_answers(task: str, ds) -> dict[str, str]:
    """Row id -> the scripted answer (SCRIPT, else the row's first ground truth)."""
    out = {}
    for row_id, group_id, index, answers in zip(
        ds["id"], ds["group_id"], ds["variant_index"], ds["answers"], strict=True
    ):
        script = SCRIPT[task].get(group_id)
        out[row_id] = script[index] if script else answers[0]
    return out


def independent_pairs(texts: list[str], context: bool = False) -> tuple[np.ndarray, float, float]:
    """Cosine matrix, Con and S_C (×100) of one group by the definitions alone: lower-cased, stripped
    texts embedded, cosine 0 where a text is empty, Con the share of pairs above the threshold."""
    texts = [CONTEXT_SCORED.get(t, t.lower()) if context else t for t in texts]
    keys = [t.strip().lower() for t in texts]
    vectors = get_embedder().encode([k or "-" for k in keys])
    n = len(texts)
    cos = np.full((n, n), np.nan)
    for i, j in itertools.combinations(range(n), 2):
        cos[i, j] = cos[j, i] = float(vectors[i] @ vectors[j]) if keys[i] and keys[j] else 0.0
    pairs = [cos[i, j] for i, j in itertools.combinations(range(n), 2)]
    return cos, 100.0 * np.mean([c > THRESHOLD for c in pairs]), 100.0 * float(np.mean(pairs))


def assert_cosines(shown, expected: np.ndarray) -> None:
    n = len(expected)
    assert len(shown) == n and all(len(row) == n for row in shown)
    for i, j in itertools.product(range(n), repeat=2):
        if i == j:
            assert shown[i][j] is None
        else:
            assert shown[i][j] == pytest.approx(expected[i, j], abs=1e-5), (i, j)


def decoded(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :], validate=True)))
    assert image.format == "PNG"
    return image.convert("RGB")


def assert_thumbnail_of(uri: str, original: Image.Image) -> None:
    """The thumbnail is `original` at 128 px on its longer side (never enlarged): same shape, same picture."""
    w, h = original.size
    scale = min(1.0, 128 / max(w, h))
    size = (round(w * scale), round(h * scale))
    image = decoded(uri)
    assert image.size == size
    diff = np.abs(np.asarray(image, np.float64) - np.asarray(original.convert("RGB").resize(size), np.float64))
    assert diff.mean() < 8.0


# --------------------------------------------------------------------------- the page, parsed


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        found = []
        for c in self.children:
            if isinstance(c, Node):
                if (tag is None or c.tag == tag) and (cls is None or cls in c.classes()):
                    found.append(c)
                found += c.all(tag, cls)
        return found

    def one(self, tag: str | None = None, cls: str | None = None) -> Node:
        [found] = self.all(tag, cls)
        return found


class TreeBuilder(HTMLParser):
    VOID = {"img", "br", "hr", "meta", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Node("#root", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.current)
        self.current.children.append(node)
        if tag not in self.VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None, f"</{tag}> closes nothing"
        self.current = node.parent

    def handle_data(self, text):
        self.current.children.append(text)


def parse(fragment: str) -> Node:
    builder = TreeBuilder()
    builder.feed(fragment)
    builder.close()
    assert builder.current is builder.root, "an element is left open"
    [section] = [c for c in builder.root.children if isinstance(c, Node)]
    assert section.tag == "section" and section.classes() == ["mmr3-browser"]
    every = section.all()
    assert not [n for n in every if n.tag == "script"]
    assert all(c.startswith("mmr3-") for n in every for c in n.classes())
    return section


def task_node(section: Node, task: str) -> Node:
    [node] = [n for n in section.all("div", "mmr3-task") if n.attrs["data-task"] == task]
    return node


def cells(group: Node, row_class: str) -> list[Node]:
    return group.one("tr", row_class).all("td")


# --------------------------------------------------------------------------- a demo run, written here


def demo_payloads(task: str, answers: dict[str, str] | None = None) -> list[dict]:
    """The payloads lmms-eval logs for a demo task, made by the real process_results."""
    ds = data.load_demo(task)
    answers = answers or scripted_answers(task, ds)
    docs = ds.remove_columns(["image"])
    fingerprint = data.fingerprint("demo")
    return [hooks.process_results({**doc, hooks.DATA_COLUMN: fingerprint}, [answers[doc["id"]]])["acc"] for doc in docs]


def results_of(payloads: list[dict]) -> dict:
    """A task's entry of the results file, as the real aggregation scores it."""
    scored = hooks.score_payloads(payloads, get_embedder(), n_resamples=0)
    return {k: scored[k] for k in ("acc", "s_gt", "con", "s_c", "embedding_model", "data_fingerprint")}


def write_samples_run(folder: Path, samples: dict[str, list[dict]]) -> Path:
    scores = {task: results_of(payloads) for task, payloads in samples.items()}
    return write_run(folder, "responses=answers.jsonl", scores, samples=samples)


@pytest.fixture(scope="module")
def demo_run_dir(tmp_path_factory) -> Path:
    samples = {f"mmr3_mini_{t}": demo_payloads(t) for t in ("rephrase", "restyle", "context")}
    return write_samples_run(tmp_path_factory.mktemp("demo_run"), samples)


def one_run(folder: Path) -> report.Run:
    [run] = report.load_runs([str(folder)])
    return run


def check_demo_groups(groups: dict[str, list[inconsistency.GroupView]], notes: list[str]) -> None:
    """Everything the scripted demo answers imply for the browser's data."""
    assert notes == []
    assert {t: [g.group_id for g in gs] for t, gs in groups.items()} == EXPECTED_ORDER
    for task in ("rephrase", "restyle", "context"):
        ds = data.load_demo(task)
        by_id = {row_id: i for i, row_id in enumerate(ds["id"])}
        for rank, g in enumerate(groups[f"mmr3_mini_{task}"], start=1):
            texts = SCRIPT[task][g.group_id]
            cos, con, s_c = independent_pairs(texts, context=task == "context")
            assert (g.rank, g.task) == (rank, f"mmr3_mini_{task}")
            assert [v.answer for v in g.variants] == texts
            assert_cosines(g.cosines, cos)
            assert g.con == pytest.approx(con) and g.s_c == pytest.approx(s_c, abs=1e-4)
            rows = [ds[by_id[v.id]] for v in g.variants]
            assert [v.variant for v in g.variants] == [r["variant"] for r in rows]  # the builder's order
            assert [r["variant_index"] for r in rows] == list(range(len(rows)))
            assert g.answers == tuple(rows[0]["answers"])
            assert [v.correct for v in g.variants] == [
                any(a.lower() in t.lower() for a in g.answers) for t in ([CONTEXT_SCORED.get(x, x) for x in texts])
            ]
            for v, row in zip(g.variants, rows, strict=True):
                assert_thumbnail_of(v.thumbnail, row["image"])
            if task == "rephrase":
                assert [v.label for v in g.variants] == [r["question"] for r in rows]
            elif task == "restyle":
                assert [v.label for v in g.variants] == ["candy", "mosaic", "udnie", "grayscale"]
    rephrase = {g.group_id: g for g in groups["mmr3_mini_rephrase"]}
    # The tie: same Con and S_C to the last bit, so the group id decides.
    assert (rephrase["rephrase-009"].con, rephrase["rephrase-009"].s_c) == (
        rephrase["rephrase-012"].con,
        rephrase["rephrase-012"].s_c,
    )
    assert [v.correct for v in rephrase["rephrase-012"].variants] == [False, False, False]  # "cat" is not 4
    assert [v.correct for v in rephrase["rephrase-002"].variants] == [True, True, False]
    [context_005, context_002] = groups["mmr3_mini_context"]
    assert [v.label for v in context_005.variants] == [
        "yellow ellipse, 3 lines",
        "red rectangle, 1 line",
        "red ellipse, 1 line",
    ]
    assert [v.scored_as for v in context_005.variants] == ["spoon", "a fork", "a knife"]
    assert [v.scored_as for v in context_002.variants] == [None, None, None]  # "flag" is scored as it is
    assert [v.correct for v in context_005.variants] == [True, False, False]
    thumbs = [decoded(v.thumbnail) for v in context_005.variants]  # each mask its own image
    assert all(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() > 1 for a, b in itertools.pairwise(thumbs))


def independent_ranking(task: str) -> list[str]:
    """The ranking rule applied to every group of a demo task, from independent numbers."""
    ds = data.load_demo(task)
    answers = scripted_answers(task, ds)
    texts: dict[str, list[str]] = {}
    for row_id, group_id in zip(ds["id"], ds["group_id"], strict=True):
        texts.setdefault(group_id, []).append(answers[row_id])
    keyed = []
    for group_id, group_texts in texts.items():
        if len(set(group_texts)) == 1 and group_texts[0].strip():
            continue  # identical answers: every cosine 1, Con 100
        _, con, s_c = independent_pairs(group_texts, context=task == "context")
        if con < 100:
            keyed.append((round(con, 6), round(s_c, 6), group_id))
    return [g for _, _, g in sorted(keyed)]


def test_the_groups_are_the_most_inconsistent_in_order_with_their_variants(demo_run_dir):
    groups, notes = inconsistency.inconsistent_groups(one_run(demo_run_dir), embedder=get_embedder())
    check_demo_groups(groups, notes)
    # The rule, from independent numbers over every group: the sixth inconsistent group is cut off.
    assert independent_ranking("rephrase") == [*EXPECTED_ORDER["mmr3_mini_rephrase"], "rephrase-006"]
    views = {v.task: v for v in inconsistency.browse(one_run(demo_run_dir), top=2, embedder=get_embedder())}
    assert [g.group_id for g in views["mmr3_mini_rephrase"].groups] == EXPECTED_ORDER["mmr3_mini_rephrase"][:2]
    assert (views["mmr3_mini_rephrase"].scored, views["mmr3_mini_rephrase"].ranked) == (36, 6)
    assert (views["mmr3_mini_restyle"].scored, views["mmr3_mini_restyle"].ranked) == (25, 1)


def check_demo_html(fragment: str) -> None:
    section = parse(fragment)
    assert [n.attrs["data-task"] for n in section.all("div", "mmr3-task")] == list(EXPECTED_ORDER)
    assert "lowest Con, then lowest S_C" in section.one("p", "mmr3-rule").text()
    for task, order in EXPECTED_ORDER.items():
        node = task_node(section, task)
        groups = node.all("div", "mmr3-group")
        assert [g.attrs["data-group"] for g in groups] == order
        assert [g.attrs["data-rank"] for g in groups] == [str(i) for i in range(1, len(order) + 1)]
        short = task.removeprefix("mmr3_mini_")
        for g in groups:
            texts = SCRIPT[short][g.attrs["data-group"]]
            answers = [c.one("span", "mmr3-answer").text() for c in cells(g, "mmr3-row-answer")]
            assert answers == [t if t.strip() else "(no answer)" for t in texts]
            header = [th.attrs["data-variant"] for th in g.one("table", "mmr3-variants").all("th") if th.attrs]
            assert len(header) == len(texts)
            cos, con, s_c = independent_pairs(texts, context=short == "context")
            assert f"Con {con:.2f}, S_C {s_c:.2f}" in g.one("h5", "mmr3-group-title").text()
            matrix = g.one("table", "mmr3-cosines")
            for td in matrix.all("td"):
                if "data-pair" in td.attrs:
                    a, b = td.attrs["data-pair"].split()
                    value = cos[header.index(a), header.index(b)]
                    assert float(td.text()) == pytest.approx(value, abs=5e-4)
                    assert td.classes() == ["mmr3-cos-high" if value > THRESHOLD else "mmr3-cos-low"]
            assert len([td for td in matrix.all("td") if "data-pair" in td.attrs]) == len(texts) * (len(texts) - 1)
            images = g.one("tr", "mmr3-row-image").all("img")
            assert images and all(decoded(img.attrs["src"]).size[0] <= 128 for img in images)
    rephrase = task_node(section, "mmr3_mini_rephrase")
    first = rephrase.all("div", "mmr3-group")[0]
    # One image, several questions: the image spans the columns, the questions do not.
    [image_cell] = cells(first, "mmr3-row-image")
    assert image_cell.attrs["colspan"] == "3"
    assert len(cells(first, "mmr3-row-label")) == 3
    assert [c.attrs["data-correct"] for c in cells(first, "mmr3-row-correct")] == ["true", "false", "false"]
    assert [s.text() for s in first.all("span", "mmr3-gt-answer")] == ["coffee", "espresso"]
    # Restyle: one image per style; the answer with markup reaches the page as text.
    restyle = task_node(section, "mmr3_mini_restyle").one("div", "mmr3-group")
    assert len(restyle.one("tr", "mmr3-row-image").all("img")) == 4
    assert [c.text() for c in cells(restyle, "mmr3-row-label")] == ["candy", "mosaic", "udnie", "grayscale"]
    assert "<b>A temple" not in fragment and "&lt;b&gt;A temple&lt;/b&gt; &amp; a &quot;garden&quot;" in fragment
    context = task_node(section, "mmr3_mini_context").all("div", "mmr3-group")[0]
    assert [s.text() for s in context.all("span", "mmr3-scored-as")] == [
        "scored as: spoon",
        "scored as: a fork",
        "scored as: a knife",
    ]
    summary = task_node(section, "mmr3_mini_rephrase").one("p", "mmr3-summary").text()
    assert summary.startswith("6 of 36 groups have a pair of answers at cosine ≤ 0.70; the 5 most inconsistent")


def test_the_html_shows_the_groups_in_order_with_answers_cosines_and_images(demo_run_dir):
    check_demo_html(inconsistency.browser_section(one_run(demo_run_dir), embedder=get_embedder()))


def test_a_run_without_an_inconsistent_group_says_so(tmp_path):
    ds = data.load_demo("context")
    consistent = {row_id: answers[0] for row_id, answers in zip(ds["id"], ds["answers"], strict=True)}
    folder = write_samples_run(tmp_path / "ok", {"mmr3_mini_context": demo_payloads("context", consistent)})
    groups, notes = inconsistency.inconsistent_groups(one_run(folder), embedder=get_embedder())
    assert (groups, notes) == ({"mmr3_mini_context": []}, [])
    section = parse(inconsistency.browser_section(one_run(folder), embedder=get_embedder()))
    node = task_node(section, "mmr3_mini_context")
    assert node.one("p", "mmr3-summary").text() == "none of the 30 groups has a pair of answers at cosine ≤ 0.70"
    assert node.all("div", "mmr3-group") == []


def test_a_missing_or_unusable_samples_file_is_a_note_and_the_other_tasks_still_show(demo_run_dir, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(demo_run_dir, folder)
    [restyle] = folder.glob("*_samples_mmr3_mini_restyle.jsonl")
    restyle.unlink()
    [context] = folder.glob("*_samples_mmr3_mini_context.jsonl")
    context.write_bytes(context.read_bytes()[:-40])  # cut off mid-line, as an interrupted copy leaves it
    groups, notes = inconsistency.inconsistent_groups(one_run(folder), embedder=get_embedder())
    assert [g.group_id for g in groups["mmr3_mini_rephrase"]] == EXPECTED_ORDER["mmr3_mini_rephrase"]
    assert groups["mmr3_mini_restyle"] == [] and groups["mmr3_mini_context"] == []
    assert notes == [
        "mmr3_mini_restyle: no --log_samples file beside 20250101_000000_results.json; rerun lmms-eval with "
        "--log_samples to see its groups",
        f"mmr3_mini_context: its samples file is unusable: {context}:90: the last line is cut short (truncated "
        "file): lmms-eval was interrupted while writing it, or the copy is incomplete; rerun the evaluation or copy "
        "the file again",
    ]
    section = parse(inconsistency.browser_section(one_run(folder), embedder=get_embedder()))
    assert [li.text() for li in task_node(section, "mmr3_mini_restyle").all("li", "mmr3-note")] == [notes[0]]
    assert [li.text() for li in task_node(section, "mmr3_mini_context").all("li", "mmr3-note")] == [notes[1]]
    assert len(task_node(section, "mmr3_mini_rephrase").all("div", "mmr3-group")) == 5


def test_a_demo_set_other_than_the_one_scored_is_said_and_no_image_is_guessed(tmp_path):
    payloads = [{**p, "data": "demo:0123456789abcdef"} for p in demo_payloads("restyle")]
    folder = write_samples_run(tmp_path, {"mmr3_mini_restyle": payloads})
    groups, notes = inconsistency.inconsistent_groups(one_run(folder), embedder=get_embedder())
    [g] = groups["mmr3_mini_restyle"]
    assert [v.thumbnail for v in g.variants] == [None] * 4
    assert [v.label for v in g.variants] == ["candy", "mosaic", "udnie", "grayscale"]  # from the samples
    assert notes == [
        f"mmr3_mini_restyle: the data at {data.DEMO_DIR} ({data.fingerprint('demo')}) is not the data the run "
        "scored (demo:0123456789abcdef); no images shown. the bundled demo set has changed since: use the "
        "lmms-eval-mmr3 version that ran it"
    ]


def test_samples_that_are_not_the_results_files_are_flagged(tmp_path):
    payloads = demo_payloads("restyle")
    scores = {**results_of(payloads), "acc": 12.5, "embedding_model": "someone/other-encoder"}
    folder = write_run(tmp_path, "responses=answers.jsonl", {"mmr3_mini_restyle": scores}, samples={
        "mmr3_mini_restyle": payloads
    })  # fmt: skip
    groups, notes = inconsistency.inconsistent_groups(one_run(folder), embedder=get_embedder())
    assert [g.group_id for g in groups["mmr3_mini_restyle"]] == ["restyle-002"]  # still shown
    recomputed = 100.0 * (1 - 2 / 100)  # restyle-002's beach and kitchen answers are the only wrong ones
    assert notes == [
        "mmr3_mini_restyle: the run was scored with someone/other-encoder; these cosines are "
        "sentence-transformers/all-MiniLM-L6-v2's",
        f"mmr3_mini_restyle: its samples file does not reproduce its results file (Acc {recomputed:.2f} vs 12.50); "
        "is it from another run?",
    ]


# --------------------------------------------------------------------------- data of a build: at hand or not


def write_small_build(root: Path, answers: dict[str, list[str]], manifest: bool = False) -> Path:
    rows = [r for gid, gts in answers.items() for r in mmr3_rows.group("rephrase", gid, gts)]
    mmr3_rows.write_build(root, "rephrase", rows)
    if manifest:
        build_manifest(root)
    return root


def build_payloads(build: Path) -> dict[str, list[dict]]:
    """mmr3_rephrase (All) and mmr3_rephrase_sampling payloads on a build, as process_results makes them."""
    ds = data.load_split("rephrase", "test", str(build))
    docs = ds.remove_columns(["image"])
    fingerprint = data.fingerprint("benchmark", str(build))
    all_protocol, sampling = [], []
    for doc in docs:
        doc = {**doc, hooks.DATA_COLUMN: fingerprint}
        repeats = SAMPLING_SCRIPT[doc["group_id"]]
        all_protocol.append(hooks.process_results(doc, [repeats[doc["variant_index"]]])["acc"])
        if doc["variant_index"] == 0:
            sampling.append(hooks.process_results(doc, repeats)["acc"])
    return {"mmr3_rephrase": all_protocol, "mmr3_rephrase_sampling": sampling}


def check_sampling_groups(groups: list[inconsistency.GroupView], build: Path | None) -> None:
    assert [g.group_id for g in groups] == ["b3", "b2"]
    for g in groups:
        texts = SAMPLING_SCRIPT[g.group_id]
        assert [v.answer for v in g.variants] == texts
        assert [v.variant for v in g.variants] == ["s1", "s2", "s3", "s4"]
        assert [v.id for v in g.variants] == [f"{g.group_id}/r1#s{k}" for k in range(1, 5)]
        cos, con, s_c = independent_pairs(texts)
        assert_cosines(g.cosines, cos)
        assert (g.con, g.s_c) == (pytest.approx(con), pytest.approx(s_c, abs=1e-4))
        assert g.answers == tuple(BUILD_ANSWERS[g.group_id])
    assert groups[0].con == 0.0 and groups[0].s_c == 0.0  # four empty answers: every cosine 0
    assert [v.correct for v in groups[1].variants] == [True, True, False, True]
    if build is None:
        assert all(v.thumbnail is None and v.label == "" for g in groups for v in g.variants)
        return
    ds = data.load_split("rephrase", "test", str(build))
    row = {r: i for i, r in enumerate(ds["id"])}
    for g in groups:
        original = ds[row[f"{g.group_id}/r1"]]
        assert [v.label for v in g.variants] == [original["question"]] * 4
        for v in g.variants:
            assert_thumbnail_of(v.thumbnail, original["image"])


@pytest.fixture
def build_run(tmp_path, monkeypatch):
    """A run of mmr3_rephrase and mmr3_rephrase_sampling on a small build, with no data where the
    tasks look by default (an empty cache, MMR3_DATA unset)."""
    build = write_small_build(tmp_path / "build", BUILD_ANSWERS, manifest=True)
    folder = write_samples_run(tmp_path / "run", build_payloads(build))
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    return one_run(folder), build


def test_the_data_of_a_build_is_found_through_data_dir_or_mmr3_data(build_run, monkeypatch):
    run, build = build_run
    groups, notes = inconsistency.inconsistent_groups(run, data_dir=str(build), embedder=get_embedder())
    assert notes == []
    check_sampling_groups(groups["mmr3_rephrase_sampling"], build)
    [g2, g3] = groups["mmr3_rephrase"]  # All protocol: r1, r2, r3 answered like the first three repeats
    assert [g2.group_id, g3.group_id] == ["b3", "b2"]
    assert [v.variant for v in g3.variants] == ["r1", "r2", "r3"]
    monkeypatch.setenv(data.DATA_ENV, str(build))
    groups, notes = inconsistency.inconsistent_groups(run, embedder=get_embedder())
    assert notes == []
    check_sampling_groups(groups["mmr3_rephrase_sampling"], build)


def test_data_not_at_hand_is_said_and_the_answers_and_cosines_still_show(build_run, tmp_path):
    run, build = build_run
    groups, notes = inconsistency.inconsistent_groups(run, embedder=get_embedder())
    check_sampling_groups(groups["mmr3_rephrase_sampling"], None)
    where = tmp_path / "empty-cache" / "mmr3" / "data"
    scored = data.fingerprint("benchmark", str(build))
    fix = "pass data_dir= the build folder the run read (its $MMR3_DATA then), or set MMR3_DATA to it"
    assert notes == [
        f"{task}: the data it scored ({scored}) is not at hand: no build folder at {where}; no images or questions "
        f"shown. To see them, {fix}; `mmr3 info` shows what a folder holds"
        for task in ("mmr3_rephrase", "mmr3_rephrase_sampling")
    ]
    section = parse(inconsistency.browser_section(run, embedder=get_embedder()))
    node = task_node(section, "mmr3_rephrase_sampling")
    assert [li.text() for li in node.all("li", "mmr3-note")] == [notes[1]]
    first = node.all("div", "mmr3-group")[0]
    assert [c.text() for c in cells(first, "mmr3-row-image")] == ["data not at hand"]
    assert [c.text() for c in cells(first, "mmr3-row-label")] == ["data not at hand"]
    assert [c.text() for c in cells(first, "mmr3-row-answer")] == ["(no answer)"] * 4
    assert section.all("img") == []

    # Another build at data_dir is not taken for the one scored.
    other = write_small_build(tmp_path / "other", {"b1": ["cat"], "b2": ["dog"]})
    groups, notes = inconsistency.inconsistent_groups(run, data_dir=str(other), embedder=get_embedder())
    assert all(v.thumbnail is None for g in groups["mmr3_rephrase_sampling"] for v in g.variants)
    here = data.fingerprint("benchmark", str(other))
    assert here != scored
    assert notes[1] == (
        f"mmr3_rephrase_sampling: the data at {other} ({here}) is not the data the run scored ({scored}); no images "
        f"or questions shown. {fix}; `mmr3 info` shows what a folder holds"
    )

    # The build scored, damaged since: the load's own message, first line.
    [shard] = build.glob("rephrase/*.parquet")
    shard.unlink()
    groups, notes = inconsistency.inconsistent_groups(run, data_dir=str(build), embedder=get_embedder())
    check_sampling_groups(groups["mmr3_rephrase_sampling"], None)
    assert notes[1] == (
        f"mmr3_rephrase_sampling: the data it scored ({scored}) does not load: MM-R³ rephrase data (test split) at "
        f"{build} does not match its manifest.json: MISSING shard rephrase/test-00000-of-00001.parquet (manifest.json "
        f"lists it with 9 rows). Fix: rerun the `mmr3 build --out {build} ...` command that made it (without its "
        f"resume state .mmr3-build/ it renders every shard again), or put back a good copy of the file; no images or "
        f"questions shown"
    )


# --------------------------------------------------------------------------- the helper in metrics


def test_group_details_are_the_numbers_group_scores_and_score_average():
    rng = np.random.default_rng(3)
    words = ["cat", "a cat", "dog", "", "the moon", "CAT", "spoon"]
    responses = [
        metrics.ScoredResponse(f"g{g}/v{v}", f"g{g}", f"v{v}", ("cat",), str(rng.choice(words)))
        for g in range(6)
        for v in range(int(rng.integers(1, 5)))
    ]
    emb = get_embedder()
    details = metrics.group_details(responses, emb)
    scores = metrics.group_scores(responses, emb)
    assert details.keys() == scores.keys()
    for group_id, d in details.items():
        assert d.scores == scores[group_id]
        mine = sorted((r for r in responses if r.group_id == group_id), key=lambda r: r.variant)
        assert d.ids == tuple(r.id for r in mine)
        assert d.correct == tuple("cat" in r.response.lower() for r in mine)
        cos, con, s_c = independent_pairs([r.response for r in mine])
        assert d.cosines.shape == (len(mine), len(mine))
        assert np.isnan(np.diag(d.cosines)).all()
        off = ~np.eye(len(mine), dtype=bool)
        assert np.allclose(d.cosines[off], cos[off], atol=1e-5)
        if len(mine) > 1:
            assert (d.scores.con, d.scores.s_c) == (pytest.approx(con), pytest.approx(s_c, abs=1e-4))


# --------------------------------------------------------------------------- the real lmms-eval


@pytest.fixture(scope="module")
def lmms_run(tmp_path_factory):
    """One real `lmms-eval` run with mmr3_replay: the demo tasks and, on a small build, the Sampling protocol."""
    root = tmp_path_factory.mktemp("lmms_browser")
    build = write_small_build(root / "build", BUILD_ANSWERS)
    lines = []
    for task in ("rephrase", "restyle", "context"):
        answers = scripted_answers(task, data.load_demo(task))
        lines += [{"id": row_id, "response": text} for row_id, text in answers.items()]
    lines += [{"id": f"{gid}/r1", "responses": texts} for gid, texts in SAMPLING_SCRIPT.items()]
    replay = root / "answers.jsonl"
    replay.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = [
        "--model",
        "mmr3_replay",
        "--model_args",
        f"responses={replay}",
        "--tasks",
        "mmr3_mini,mmr3_rephrase_sampling",
    ]
    run = run_lmms_cli(root / "out", *args, env={data.DATA_ENV: str(build), "OMP_NUM_THREADS": "1"})
    assert run.results["results"]["mmr3_rephrase_sampling"]["groups,none"] == 3, run.output[-3000:]
    return root / "out", build


@pytest.mark.slow
def test_a_real_run_is_browsed_in_order_with_its_answers_and_images(lmms_run):
    out, _ = lmms_run
    [demo] = [r for r in report.load_runs([str(out)]) if r.demo]
    groups, notes = inconsistency.inconsistent_groups(demo, embedder=get_embedder())
    check_demo_groups(groups, notes)
    check_demo_html(inconsistency.browser_section(demo, embedder=get_embedder()))


@pytest.mark.slow
def test_a_real_run_says_when_its_samples_or_data_are_not_at_hand(lmms_run, tmp_path, monkeypatch):
    out, build = lmms_run
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    [bench] = [r for r in report.load_runs([str(out)]) if not r.demo]
    groups, notes = inconsistency.inconsistent_groups(bench, embedder=get_embedder())
    check_sampling_groups(groups["mmr3_rephrase_sampling"], None)
    assert len(notes) == 1 and "is not at hand: no build folder at" in notes[0] and "pass data_dir=" in notes[0]
    groups, notes = inconsistency.inconsistent_groups(bench, data_dir=str(build), embedder=get_embedder())
    assert notes == []
    check_sampling_groups(groups["mmr3_rephrase_sampling"], build)

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    [samples] = copy.glob("*_samples_mmr3_rephrase_sampling.jsonl")
    samples.unlink()
    [bench] = [r for r in report.load_runs([str(copy)]) if not r.demo]
    groups, notes = inconsistency.inconsistent_groups(bench, data_dir=str(build), embedder=get_embedder())
    assert groups == {"mmr3_rephrase_sampling": []}
    [results] = copy.glob("*_results.json")
    assert notes == [
        f"mmr3_rephrase_sampling: no --log_samples file beside {results.name}; rerun lmms-eval with --log_samples "
        "to see its groups"
    ]
    section = parse(inconsistency.browser_section(bench, data_dir=str(build), embedder=get_embedder()))
    assert [li.text() for li in section.all("li", "mmr3-note")] == notes
