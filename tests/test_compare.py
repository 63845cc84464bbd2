"""Per-group scores, the paired group bootstrap, and `mmr3 report --paired` (docs/compare.md)."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from mmr3_tasks import cli, data, metrics, report
from mmr3_tasks.embedding import DEFAULT_EMBEDDING_MODEL as DEFAULT_MODEL
from mmr3_tasks.embedding import get_embedder
from mmr3_tasks.errors import MMR3Error
from mmr3_tasks.metrics import ScoredResponse
from mmr3_tasks.report import paired
from tests.report_fixtures import reference_interval, write_run

HEADLINE = metrics.HEADLINE


def resp(group, variant, response, answers=("cat",), size=3):
    return ScoredResponse(f"{group}/{variant}", group, variant, tuple(answers), response, size)


# --------------------------------------------------------------------------- per-group scores

# Real MiniLM cosines, so nothing is 0 or 1 by construction; g4 has one response (no pairs), g5 an
# empty one, g6 duplicates an id.
MIXED = [
    resp("g1", "r1", "A cat."), resp("g1", "r2", "a kitten"), resp("g1", "r3", "It is a dog"),
    resp("g2", "r1", "red", ["red", "crimson"]), resp("g2", "r2", "crimson", ["red", "crimson"]),
    resp("g2", "r3", "blue", ["red", "crimson"]),
    resp("g3", "r1", "There is a tennis racket in the masked region.", ["tennis racket"]),
    resp("g3", "r2", "The racket", ["tennis racket"]), resp("g3", "r3", "a tennis racket", ["tennis racket"]),
    resp("g4", "r1", "two people"),
    resp("g5", "r1", "umbrella", ["umbrella"]), resp("g5", "r2", "  ", ["umbrella"]),
    resp("g6", "r1", "cat"), resp("g6", "r1", "dog"), resp("g6", "r2", "cat"),
]  # fmt: skip


@pytest.mark.parametrize("clean_context", [False, True])
def test_group_scores_average_to_what_score_reports(clean_context):
    rows = list(MIXED)
    random.Random(1).shuffle(rows)
    emb = get_embedder()
    report_ = metrics.score(rows, emb, clean_context=clean_context, n_resamples=0)
    groups = metrics.group_scores(rows, emb, clean_context=clean_context)
    assert sorted(groups) == ["g1", "g2", "g3", "g4", "g5", "g6"]
    assert groups["g4"].con is None and groups["g4"].s_c is None  # one response: no pairs
    assert groups["g6"].responses == 2  # the duplicate id is dropped, as in score
    for m in HEADLINE:
        values = [getattr(g, m) for g in groups.values() if getattr(g, m) is not None]
        assert np.mean(values) == pytest.approx(getattr(report_, m), rel=1e-12, abs=1e-12), m
    # Spot-check one group by hand: g5 is "umbrella" and an empty answer.
    assert groups["g5"].acc == 50.0 and groups["g5"].con == 0.0 and groups["g5"].s_c == 0.0
    assert groups["g5"].s_gt == pytest.approx(50.0, abs=1e-4)


# --------------------------------------------------------------------------- paired bootstrap

SPREAD = {f"g{i:02d}": float(v) for i, v in enumerate(np.random.default_rng(7).uniform(0, 100, 40))}


@pytest.mark.parametrize(
    "a, b, delta, ci, counts",
    [
        # Identical runs: every resample's delta is exactly 0.
        (SPREAD, SPREAD, 0.0, [0.0, 0.0], (40, 0, 0)),
        # A constant shift of every group: the delta and both interval ends are the shift.
        (SPREAD, {g: v + 2.5 for g, v in SPREAD.items()}, 2.5, [2.5, 2.5], (40, 0, 0)),
        # g3 only in a and g4 only in b are counted, never used: the delta is g1's and g2's +5.
        ({"g1": 10, "g2": 20, "g3": 99}, {"g1": 15, "g2": 25, "g4": 0}, 5.0, [5.0, 5.0], (2, 1, 1)),
        # None = not scored there (Con of a one-response group): like a missing group.
        ({"g1": None, "g2": 10.0}, {"g1": 50.0, "g2": 10.0}, 0.0, [0.0, 0.0], (1, 0, 1)),
        # Nothing shared: no number at all.
        ({"g1": 1.0}, {"g2": 1.0}, None, None, (0, 1, 1)),
    ],
)
def test_paired_bootstrap_hand_cases(a, b, delta, ci, counts):
    d = metrics.paired_bootstrap(a, b)
    assert (d.shared, d.only_a, d.only_b) == counts
    if delta is None:
        assert d.delta is None and d.ci is None
    else:
        assert d.delta == pytest.approx(delta, abs=1e-9)
        assert d.ci == pytest.approx(ci, abs=1e-9)


def test_paired_bootstrap_resamples_groups_in_pairs():
    # b follows a closely on each group but the groups spread over 0-100: pairing the groups gives a
    # narrow interval around +1, resampling the runs independently would give one ~25 points wide.
    noise = np.random.default_rng(3).normal(0, 0.5, len(SPREAD))
    b = {g: v + 1.0 + n for (g, v), n in zip(SPREAD.items(), noise, strict=True)}
    d = metrics.paired_bootstrap(SPREAD, b)
    assert d.ci[0] < d.delta < d.ci[1] and d.ci[1] - d.ci[0] < 1.0
    assert d.delta == pytest.approx(np.mean(list(b.values())) - np.mean(list(SPREAD.values())))


def test_paired_bootstrap_is_seeded_and_ignores_mapping_order():
    b = {g: v * 0.8 + 15 for g, v in SPREAD.items()}
    first = metrics.paired_bootstrap(SPREAD, b)
    shuffled = dict(sorted(b.items(), reverse=True))
    assert metrics.paired_bootstrap(SPREAD, shuffled) == first
    assert metrics.paired_bootstrap(SPREAD, b, seed=1).ci != first.ci
    assert metrics.paired_bootstrap(SPREAD, b, n_resamples=0).ci is None


def test_paired_bootstrap_matches_the_documented_procedure():
    b = {g: v * 0.8 + 15 for g, v in SPREAD.items()}
    diffs = [b[g] - SPREAD[g] for g in sorted(SPREAD)]
    assert metrics.paired_bootstrap(SPREAD, b).ci == pytest.approx(reference_interval(diffs), abs=1e-9)


# --------------------------------------------------------------------------- report: pairing and notes


def scores(acc, con, fingerprint="build:aaaa", groups=10):
    return {"acc": acc, "s_gt": acc - 1, "con": con, "s_c": con - 1, "data_fingerprint": fingerprint, "groups": groups}


def test_adapter_and_lora_runs_pair_with_their_base_automatically(tmp_path):
    llava, reph = "pretrained=/ckpt/llava,dtype=float16", {"mmr3_rephrase": scores(30.0, 40.0)}
    write_run(tmp_path / "base", llava, reph)
    write_run(tmp_path / "ad", f"{llava},adapter=/runs/ckpt-3/", {"mmr3_rephrase": scores(33.0, 50.0)})
    write_run(tmp_path / "lo", "pretrained=/ckpt/llava,lora=/runs/lora-1,dtype=float16", reph)  # any argument order
    # Not pairs: another base model, and the same adapter decoded with other settings.
    write_run(tmp_path / "x", "pretrained=/ckpt/other,adapter=/runs/a", reph)
    write_run(tmp_path / "t", f"{llava},adapter=/runs/ckpt-3", reph, gen_kwargs="temperature=0.7")
    runs = report.load_runs([str(tmp_path / n) for n in ("base", "ad", "lo", "x", "t")])
    pairs = report.find_pairs(runs)
    assert [(p.base.label, p.other.label, p.how) for p in pairs] == [
        ("mmr3_llava (llava)", "mmr3_llava (llava) + adapter ckpt-3 [default generation]", "adapter"),
        ("mmr3_llava (llava)", "mmr3_llava (llava) + lora lora-1", "lora"),
    ]
    [c, _] = report.compare_pairs(pairs)
    cell = c["tasks"]["rephrase"]["metrics"]["con"]
    assert (cell["base"], cell["other"], cell["delta"], cell["ci95"]) == (40.0, 50.0, 10.0, None)
    assert c["tasks"]["rephrase"]["status"] == "unpaired"  # no samples files: no interval, and a note
    assert any("--log_samples" in n for n in c["notes"])
    # --paired instead: the first run given is the base of every other.
    assert [p.other.label for p in report.find_pairs(runs[2:4], paired=True)] == ["mmr3_llava (other) + adapter a"]
    with pytest.raises(MMR3Error, match="--paired compares the first run with every other, but found one run"):
        report.find_pairs(runs[:1], paired=True)


def test_different_data_or_unknown_shared_groups_give_a_note_not_a_number(tmp_path):
    base = write_run(tmp_path / "a", "pretrained=/m", {
        "mmr3_rephrase": scores(30.0, 40.0), "mmr3_restyle": scores(10.0, 20.0), "mmr3_context": scores(5.0, 5.0),
    })  # fmt: skip
    other = write_run(tmp_path / "b", "pretrained=/m,adapter=/ad", {
        "mmr3_rephrase": scores(35.0, 45.0, fingerprint="build:bbbb"), "mmr3_restyle": scores(12.0, 22.0, groups=4),
    })  # fmt: skip
    runs = report.load_runs([str(base), str(other)])
    [c] = report.compare_pairs(report.find_pairs(runs))
    assert {t: e["status"] for t, e in c["tasks"].items()} == {
        "rephrase": "different data", "restyle": "different groups", "context": "missing",
    }  # fmt: skip
    assert all(cell["delta"] is None for e in c["tasks"].values() for cell in e["metrics"].values())
    table = report.paired_table([c], with_paper=False)
    delta_row = table.rows[2]
    assert delta_row[0] == "Δ [95% CI]"
    assert delta_row[1:5] == ["different data"] * 4 and delta_row[5:9] == ["different groups"] * 4
    assert delta_row[9:] == ["–"] * 4
    assert "the runs scored different data (build:aaaa vs build:bbbb); no Δ" in table.note
    assert "has no CR results" in table.note


def payloads(task, groups: dict[str, list[str]], answer="cat", data_fp="build:aaaa"):
    """All-protocol payloads: group -> one response per variant."""
    return [
        {"id": f"{g}/v{k}", "group_id": g, "task": task, "variant": f"v{k}", "group_size": len(texts),
         "answers": [answer], "kinds": {}, "data": data_fp, "response": text}
        for g, texts in groups.items() for k, text in enumerate(texts, 1)
    ]  # fmt: skip


BASE_GROUPS = {"g1": ["cat", "cat", "cat"], "g2": ["cat", "", ""], "g3": ["", "", ""]}
OTHER_GROUPS = {"g1": ["cat", "cat", "cat"], "g2": ["cat", "cat", "cat"], "g4": ["cat", "cat", "cat"]}


def write_paired_runs(out, **base_scores):
    """Base and adapted run in one output folder, told apart by their stamps, each with its samples."""
    for n, (groups, args) in enumerate(((BASE_GROUPS, "pretrained=/m"), (OTHER_GROUPS, "pretrained=/m,adapter=/ad"))):
        acc = sum(100 * sum(bool(t) for t in v) / 3 for v in groups.values()) / 3
        reported = scores(acc, 0.0, groups=3) | {"embedding_model": "sentence-transformers/all-MiniLM-L6-v2"}
        reported |= base_scores if n == 0 else {}
        write_run(out, args, {"mmr3_rephrase": reported},
                  samples={"mmr3_rephrase": payloads("rephrase", groups)}, stamp=f"20250101_00000{n}")  # fmt: skip
    return out


def test_samples_files_give_paired_intervals_over_the_shared_groups_only(tmp_path, capsys):
    # Base: g1 agrees, g2 has one answer of three, g3 none. Adapted: g1, g2 agree; g4 only there.
    out = write_paired_runs(tmp_path / "out")
    runs = report.load_runs([str(out)])
    assert [r.samples["mmr3_rephrase"].name for r in runs] == [
        "20250101_000000_samples_mmr3_rephrase.jsonl", "20250101_000001_samples_mmr3_rephrase.jsonl",
    ]  # fmt: skip
    [c] = report.compare_pairs(report.find_pairs(runs))
    e = c["tasks"]["rephrase"]
    assert e["status"] == "paired" and (e["groups_shared"], e["groups_only_base"], e["groups_only_other"]) == (2, 1, 1)
    # Over g1 and g2: Acc base (100 + 33.3) / 2, other 100; Con base (100 + 0) / 2, other 100.
    assert e["metrics"]["acc"]["delta"] == pytest.approx(100 - (100 + 100 / 3) / 2)
    assert e["metrics"]["con"]["delta"] == pytest.approx(50.0)
    assert e["metrics"]["acc"]["ci95"] == pytest.approx(reference_interval([0.0, 200 / 3]))
    left_out = "left out: 1 group only mmr3_llava (m) scored, 1 group only mmr3_llava (m) + adapter ad scored"
    assert any(n.endswith(left_out) for n in c["notes"])
    assert not any("--log_samples" in n or "does not reproduce" in n for n in c["notes"])

    assert cli.main(["report", str(out), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert text.index(report.PAIRED_TITLE) < text.index("Table 2:")  # the comparison comes first
    assert "| Δ [95% CI] | +33.33 [+0.0, +66.7] | " in text
    assert "| LLaVA-1.5 + adapter (paper) | 31.40 |" in text and "| Δ (paper) | +4.5 | +6.7 | +10.7 | +8.5 |" in text
    assert cli.main(["report", str(out), "--format", "csv", "--no-paper"]) == 0
    text = capsys.readouterr().out
    assert 'Δ [95% CI],"+33.33 [+0.0, +66.7]",' in text and "(paper)" not in text
    assert "# mmr3_llava (m) + adapter ad vs mmr3_llava (m): QR: rows and Δ over the 2 groups both runs scored" in text


def test_samples_from_another_run_or_another_embedding_model_are_flagged(tmp_path):
    runs = report.load_runs([str(write_paired_runs(tmp_path / "a", acc=12.0))])
    [c] = report.compare_pairs(report.find_pairs(runs))
    assert any("mmr3_llava (m)'s samples file does not reproduce its results file" in n for n in c["notes"])
    runs = report.load_runs([str(write_paired_runs(tmp_path / "b", embedding_model="/models/e5"))])
    [c] = report.compare_pairs(report.find_pairs(runs))
    recomputed = "its Δ is recomputed with sentence-transformers/all-MiniLM-L6-v2"
    assert c["notes"][-1] == f"QR: mmr3_llava (m) was scored with /models/e5; {recomputed}"


def test_runs_that_share_no_group_get_a_note_not_a_number(tmp_path):
    for n, (gid, args) in enumerate((("g1", "pretrained=/m"), ("g9", "pretrained=/m,lora=/lo"))):
        write_run(tmp_path, args, {"mmr3_rephrase": scores(100.0, 100.0, groups=1)},
                  samples={"mmr3_rephrase": payloads("rephrase", {gid: ["cat", "cat"]})}, stamp=f"s{n}")  # fmt: skip
    [c] = report.compare_pairs(report.find_pairs(report.load_runs([str(tmp_path)])))
    e = c["tasks"]["rephrase"]
    assert e["status"] == "no shared groups" and e["metrics"]["acc"]["delta"] is None
    assert report.paired_table([c], with_paper=False).rows[2][1] == "no shared groups"
    assert c["notes"] == ["QR: the runs share no group (1 and 1 groups); no Δ"]


def approx_tree(value, tol=1e-4):
    """`value` with every float a pytest.approx: whole nested results compare with `==`, floats
    within `tol` (S_GT and S_C are float32 cosines, 1 - 1e-7 for identical strings)."""
    if isinstance(value, float):
        return pytest.approx(value, abs=tol)
    if isinstance(value, dict):
        return {k: approx_tree(v, tol) for k, v in value.items()}
    if isinstance(value, list):
        return [approx_tree(v, tol) for v in value]
    return value


def cell(base, other, delta=None, ci95=None, groups=None, base_reported=None, other_reported=None) -> dict:
    """One metric of a compared task, as `compare_pairs` returns it (the keys of docs/compare.md)."""
    return {"base": base, "other": other, "delta": delta, "ci95": ci95, "groups": groups,
            "base_reported": base_reported, "other_reported": other_reported}  # fmt: skip


def task_entry(tasks, status, data, samples, metrics_, notes, shared=None, only_base=None, only_other=None) -> dict:
    """One task of a compared pair, as `compare_pairs` returns it."""
    return {"tasks": tasks, "status": status, "data": data, "samples": samples, "groups_shared": shared,
            "groups_only_base": only_base, "groups_only_other": only_other, "metrics": metrics_,
            "notes": notes}  # fmt: skip


M_RUN, AD_RUN = "mmr3_llava (m)", "mmr3_llava (m) + adapter ad"  # labels of write_run's runs below


def test_compare_pairs_paired_missing_and_different_groups_key_by_key(tmp_path, monkeypatch):
    # Base QR: 4 variants per group, g1-g5 answered 4, 3, 2, 1, 0 times, g6 4, g7 once: 375 / 7
    # recomputed, 54.0 in its results file (0.43 off: flagged). Adapted QR: g1-g5, never answered:
    # 0.0 recomputed, 1e-6 reported (exactly the tolerance: not flagged). IR only in the adapted run,
    # CR without samples.
    answered = {"g1": 4, "g2": 3, "g3": 2, "g4": 1, "g5": 0, "g6": 4, "g7": 1}
    base_qr = {g: ["cat"] * k + [""] * (4 - k) for g, k in answered.items()}
    other_qr = {g: [""] * 4 for g in ("g1", "g2", "g3", "g4", "g5")}
    minilm = {"embedding_model": DEFAULT_MODEL}
    base_rep = {"acc": 54.0, "s_gt": 53.0, "con": 30.0, "s_c": 29.0, "data_fingerprint": "build:aaaa", "groups": 7}
    other_rep = {"acc": 1e-6, "s_gt": 0.5, "con": 1.5, "s_c": 2.5, "data_fingerprint": "build:aaaa", "groups": 5}
    restyle = scores(20.0, 30.0)
    write_run(tmp_path, "pretrained=/m", {"mmr3_rephrase": base_rep | minilm, "mmr3_context": scores(5.0, 6.0)},
              samples={"mmr3_rephrase": payloads("rephrase", base_qr)}, stamp="20250101_000000")  # fmt: skip
    write_run(tmp_path, "pretrained=/m,adapter=/ad", {
        "mmr3_rephrase": other_rep | minilm, "mmr3_restyle": restyle, "mmr3_context": scores(7.0, 8.0, groups=12),
    }, samples={"mmr3_rephrase": payloads("rephrase", other_qr)}, stamp="20250101_000001")  # fmt: skip
    runs = report.load_runs([str(tmp_path)])
    embedder = get_embedder(DEFAULT_MODEL)
    # The embedder given scores; what the environment asks for is not what was used, so it is never named.
    monkeypatch.setenv("MMR3_EMBEDDING_MODEL", "/models/never-loaded")
    [c] = report.compare_pairs(report.find_pairs(runs), n_resamples=200, seed=3, embedder=embedder)

    # Over the shared g1-g5 the adapted run has 0 everywhere; the base has Acc 100, 75, 50, 25, 0 and
    # Con 100, 50, 100 / 6, 0, 0 (of the 6 pairs of 4 variants, those of two right answers agree):
    # means 50 and 100 / 3.
    acc_diffs, con_diffs = [-100.0, -75.0, -50.0, -25.0, 0.0], [-100.0, -50.0, -100 / 6, 0.0, 0.0]
    ci_acc, ci_con = reference_interval(acc_diffs, 200, 3), reference_interval(con_diffs, 200, 3)
    qr_notes = [
        f"QR: rows and Δ over the 5 groups both runs scored; left out: 2 groups only {M_RUN} scored, "
        f"0 groups only {AD_RUN} scored",
        f"QR: {M_RUN}'s samples file does not reproduce its results file (Acc {375 / 7} vs 54.0); "
        "is it from another run?",
    ]
    ir_notes = [f"IR: {M_RUN} has no IR results; no Δ"]
    cr_notes = [
        "CR: the runs scored 10 and 12 groups, and without samples files the shared ones are unknown; no Δ "
        "(run lmms-eval with --log_samples)"
    ]
    expected = {
        "base": M_RUN, "other": AD_RUN, "how": "adapter",
        "tasks": {
            "rephrase": task_entry(
                ["mmr3_rephrase"] * 2, "paired", ["build:aaaa"] * 2,
                [str(tmp_path / f"20250101_00000{n}_samples_mmr3_rephrase.jsonl") for n in (0, 1)],
                {
                    "acc": cell(50.0, 0.0, -50.0, ci_acc, 5, 54.0, 1e-6),
                    "s_gt": cell(50.0, 0.0, -50.0, ci_acc, 5, 53.0, 0.5),
                    "con": cell(100 / 3, 0.0, -100 / 3, ci_con, 5, 30.0, 1.5),
                    "s_c": cell(100 / 3, 0.0, -100 / 3, ci_con, 5, 29.0, 2.5),
                },
                qr_notes, shared=5, only_base=2, only_other=0,
            ),
            "restyle": task_entry(
                [None, "mmr3_restyle"], "missing", [None, "build:aaaa"], [None, None],
                {m: cell(None, restyle[m], other_reported=restyle[m]) for m in HEADLINE}, ir_notes,
            ),
            "context": task_entry(
                ["mmr3_context"] * 2, "different groups", ["build:aaaa"] * 2, [None, None],
                {m: cell(scores(5.0, 6.0)[m], scores(7.0, 8.0)[m], base_reported=scores(5.0, 6.0)[m],
                         other_reported=scores(7.0, 8.0)[m]) for m in HEADLINE},
                cr_notes,
            ),
        },
        "notes": qr_notes + ir_notes + cr_notes,
    }  # fmt: skip
    assert c == approx_tree(expected)
    # 200 resamples with seed 3, as asked: the documented default (1000, seed 0) or either alone differs.
    assert all(reference_interval(acc_diffs, n, s) != ci_acc for n, s in ((1000, 0), (1000, 3), (200, 0)))


def test_compare_pairs_with_an_unusable_samples_file_raises_or_collects_it(tmp_path):
    base = {"mmr3_rephrase": scores(50.0, 0.0, groups=1), "mmr3_restyle": scores(9.0, 8.0)}
    write_run(tmp_path, "pretrained=/m", base, samples={"mmr3_rephrase": payloads("rephrase", {"g1": ["cat", ""]})},
              stamp="s0")  # fmt: skip
    write_run(tmp_path, "pretrained=/m,adapter=/ad", {"mmr3_rephrase": scores(50.0, 4.0, groups=1)},
              samples={"mmr3_rephrase": payloads("rephrase", {"g1": ["cat", "cat"]})}, stamp="s1")  # fmt: skip
    bad = tmp_path / "s1_samples_mmr3_rephrase.jsonl"
    bad.write_text(bad.read_text()[:-20])
    pairs = report.find_pairs(report.load_runs([str(tmp_path)]))
    message = (
        f"{bad}:2: the last line is cut short (truncated file): lmms-eval was interrupted while writing it, or the "
        "copy is incomplete; rerun the evaluation or copy the file again"
    )
    with pytest.raises(report.ReportInputError) as err:
        report.compare_pairs(pairs)
    assert str(err.value) == message
    problems = []
    [c] = report.compare_pairs(pairs, problems=problems)
    assert [str(p) for p in problems] == [message]
    # No "no samples files" note: it has one, just not a usable one.
    qr_notes = [f"QR: {AD_RUN}'s samples file is unusable (named on stderr)"]
    ir_notes = [f"IR: {AD_RUN} has no IR results; no Δ"]
    qr_base, qr_other = scores(50.0, 0.0, groups=1), scores(50.0, 4.0, groups=1)
    assert c == approx_tree({
        "base": M_RUN, "other": AD_RUN, "how": "adapter",
        "tasks": {
            "rephrase": task_entry(  # compared from the results files, as without samples
                ["mmr3_rephrase"] * 2, "unpaired", ["build:aaaa"] * 2,
                [str(tmp_path / "s0_samples_mmr3_rephrase.jsonl"), str(bad)],
                {m: cell(qr_base[m], qr_other[m], qr_other[m] - qr_base[m], base_reported=qr_base[m],
                         other_reported=qr_other[m]) for m in HEADLINE},
                qr_notes,
            ),
            "restyle": task_entry(
                ["mmr3_restyle", None], "missing", ["build:aaaa", None], [None, None],
                {m: cell(scores(9.0, 8.0)[m], None, base_reported=scores(9.0, 8.0)[m]) for m in HEADLINE}, ir_notes,
            ),
        },
        "notes": qr_notes + ir_notes,
    })  # fmt: skip


def test_find_pairs_names_how_each_pair_was_made(tmp_path):
    write_run(tmp_path / "a", "pretrained=/m", {"mmr3_rephrase": scores(1.0, 1.0)})
    write_run(tmp_path / "b", "pretrained=/m,adapter=/ad,lora=/lo", {"mmr3_rephrase": scores(1.0, 1.0)})
    write_run(tmp_path / "c", "pretrained=/n", {"mmr3_rephrase": scores(1.0, 1.0)})
    runs = report.load_runs([str(tmp_path / n) for n in "abc"])
    assert [(p.base, p.other, p.how) for p in report.find_pairs(runs)] == [(runs[0], runs[1], "adapter+lora")]
    assert [(p.base, p.other, p.how) for p in report.find_pairs(runs, paired=True)] == [
        (runs[0], runs[1], "--paired"), (runs[0], runs[2], "--paired"),
    ]  # fmt: skip
    with pytest.raises(MMR3Error) as err:
        report.find_pairs(runs[2:], paired=True)
    assert str(err.value) == (
        "--paired compares the first run with every other, but found one run (mmr3_llava (n)); give two"
    )


def test_group_scores_of_a_samples_file_clean_context_answers_only(tmp_path):
    emb = get_embedder()
    texts = {"g1": ["The cat.", "cat"], "g2": ["The cat."]}  # "the cat." cleans to "cat" (Appendix A.3)
    files = {}
    for task in ("rephrase", "context"):
        files[task] = tmp_path / f"{task}.jsonl"
        rows = payloads(task, texts)
        files[task].write_text("".join(json.dumps({"doc_id": i, "acc": p}) + "\n" for i, p in enumerate(rows)))
    one = tmp_path / "one.jsonl"  # a file of one sample
    one.write_text(json.dumps({"doc_id": 0, "acc": payloads("context", {"g1": ["The cat."]})[0]}) + "\n")
    group = metrics.GroupScore

    context = paired.samples_group_scores(files["context"], emb, "mmr3_context")
    assert context == {
        "g1": group(acc=100.0, s_gt=pytest.approx(100.0, abs=1e-4), con=100.0, s_c=pytest.approx(100.0, abs=1e-4),
                    responses=2),
        "g2": group(acc=100.0, s_gt=pytest.approx(100.0, abs=1e-4), con=None, s_c=None, responses=1),
    }  # fmt: skip
    assert paired.samples_group_scores(one, emb) == {
        "g1": group(acc=100.0, s_gt=pytest.approx(100.0, abs=1e-4), con=None, s_c=None, responses=1)
    }
    # Rephrase answers are scored as given: "the cat." (lower-cased) against "cat" and against itself.
    va, vb = emb.encode(["the cat.", "cat"]).astype(np.float64)
    cos = float(va @ vb)
    assert cos < 0.99  # the cleanup matters here
    assert paired.samples_group_scores(files["rephrase"], emb, None) == {
        "g1": group(acc=100.0, s_gt=pytest.approx(50 * (cos + 1), abs=1e-4), con=100.0 if cos > 0.7 else 0.0,
                    s_c=pytest.approx(100 * cos, abs=1e-4), responses=2),
        "g2": group(acc=100.0, s_gt=pytest.approx(100 * cos, abs=1e-4), con=None, s_c=None, responses=1),
    }  # fmt: skip
    with pytest.raises(report.ReportInputError) as err:
        paired.samples_group_scores(files["context"], emb, "mmr3_rephrase")
    assert str(err.value) == (
        f"{files['context']}: holds samples of mmr3_context, but sits next to its results file as the samples of "
        "mmr3_rephrase; was it renamed or copied from another run? Put the run's own samples file back"
    )


def test_samples_payloads_takes_one_all_protocol_task(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = payloads("rephrase", {"g1": ["cat"]}) + payloads("restyle", {"g2": ["cat"]})
    path.write_text("".join(json.dumps({"doc_id": i, "acc": p}) + "\n" for i, p in enumerate(rows)))
    with pytest.raises(report.ReportInputError) as err:
        paired.samples_payloads(path, "mmr3_rephrase")
    assert str(err.value) == (
        f"{path}: holds samples of mmr3_rephrase, mmr3_restyle, but sits next to its results file as the samples "
        "of mmr3_rephrase; was it renamed or copied from another run? Put the run's own samples file back"
    )
    with pytest.raises(report.ReportInputError) as err:
        paired.samples_payloads(path)
    assert str(err.value) == f"{path}: samples of several tasks (mmr3_rephrase, mmr3_restyle); give one task's file"
    sampled = {k: v for k, v in rows[0].items() if k not in ("response", "variant", "group_size")}
    path.write_text(json.dumps({"doc_id": 0, "acc": sampled | {"responses": ["cat", "dog"]}}) + "\n")
    with pytest.raises(report.ReportInputError) as err:
        paired.samples_payloads(path)
    protocol = "the paired comparison reads All-protocol tasks"
    assert str(err.value) == f"{path}: samples of mmr3_rephrase_sampling; {protocol}"


def test_signed_never_prints_minus_zero():
    assert [report.signed(x, 2) for x in (2.5, -0.4, -1e-12, 0.0)] == ["+2.50", "-0.40", "+0.00", "+0.00"]


# --------------------------------------------------------------------------- end to end through lmms-eval

MINI = ("rephrase", "restyle", "context")
ADAPTED_LIMIT = 60  # the adapted run sees fewer rows: the base's extra groups must be left out, and counted


def demo_rows(task):
    ds = data.load_demo(task)
    return list(zip(ds["id"], ds["group_id"], ds["answers"], strict=True))


def scripted(task, rows, adapted: bool) -> dict[str, str]:
    """Row id -> response: the ground truth (cosine 1 with it and with each other) or nothing (cosine 0).

    Base: the first variant answers, the others only now and then, so variants disagree. Adapted:
    every variant answers except one in every fifth group, so they agree more but not uniformly.
    """
    out, position = {}, {}
    groups = sorted({g for _, g, _ in rows})
    for row_id, group, answers in rows:
        i, j = groups.index(group), position.setdefault(group, 0)
        position[group] += 1
        answer = answers[0]
        if task == "context":  # identical to the ground truth only once the cleanup has run (Appendix A.3)
            answer = f"The {answer}."
            clean = metrics.clean_context_answer
            assert clean(answer) == clean(answers[0]).strip() != "", f"{row_id}: pick another context answer"
        speaks = j != 1 or i % 5 != 0 if adapted else j == 0 or (i + j) % 3 == 0
        out[row_id] = answer if speaks else ""
    return out


def expected_groups(task, rows, responses, limit=None) -> dict[str, dict[str, float | None]]:
    """The per-group definition by hand: with k of n answering, Acc = S_GT = k/n, Con = S_C = C(k,2)/C(n,2)."""
    seen: dict[str, list[bool]] = {}
    for row_id, group, _ in rows[:limit]:
        seen.setdefault(group, []).append(bool(responses[row_id]))
    out = {}
    for group, said in seen.items():
        n, k = len(said), sum(said)
        pairs = 100 * math.comb(k, 2) / math.comb(n, 2) if n >= 2 else None
        out[group] = {"acc": 100 * k / n, "s_gt": 100 * k / n, "con": pairs, "s_c": pairs}
    return out


@pytest.mark.slow
def test_paired_report_of_two_lmms_eval_runs_matches_the_hand_computed_deltas(run_lmms_eval, tmp_path, capsys):
    files, expected = {}, {}
    for side in ("base", "adapted"):
        lines = []
        for task in MINI:
            rows = demo_rows(task)
            responses = scripted(task, rows, adapted=side == "adapted")
            lines += [json.dumps({"id": k, "response": v}) for k, v in responses.items()]
            expected.setdefault(task, {})[side] = expected_groups(
                task, rows, responses, ADAPTED_LIMIT if side == "adapted" else None
            )
        files[side] = tmp_path / f"{side}.jsonl"
        files[side].write_text("\n".join(lines) + "\n")
    base = run_lmms_eval("--model", "mmr3_replay", "--model_args", f"responses={files['base']}", "--tasks", "mmr3_mini")
    adapted = run_lmms_eval(
        "--model", "mmr3_replay", "--model_args", f"responses={files['adapted']}",
        "--tasks", "mmr3_mini", "--limit", str(ADAPTED_LIMIT),
    )  # fmt: skip
    assert set(base.results["results"]) >= {"mmr3_mini_rephrase", "mmr3_mini_restyle", "mmr3_mini_context"}
    assert set(adapted.results["results"]) >= {"mmr3_mini_rephrase", "mmr3_mini_restyle", "mmr3_mini_context"}

    names = ["--name", "base", "--name", "adapted"]
    assert cli.main(["report", str(base.out_dir), str(adapted.out_dir), "--paired", "--format", "json", *names]) == 0
    paired = json.loads(capsys.readouterr().out)["paired"]
    [pair] = paired["pairs"]
    assert (pair["base"], pair["other"], pair["how"]) == ("base", "adapted", "--paired")
    assert paired["paper"]["models"]["BLIP-2"]["delta"][:4] == [2.5, 11.8, 13.6, 9.8]  # Table 6, QR
    for task in MINI:
        a, b = expected[task]["base"], expected[task]["adapted"]
        entry = pair["tasks"][task]
        shared = sorted(a.keys() & b.keys())
        assert entry["status"] == "paired"
        assert (entry["groups_shared"], entry["groups_only_base"], entry["groups_only_other"]) == (
            len(shared), len(a) - len(shared), len(b) - len(shared),
        )  # fmt: skip
        assert len(a) > len(shared) > 0  # the limit really left base-only groups out
        for m in HEADLINE:
            used = [g for g in shared if a[g][m] is not None and b[g][m] is not None]
            diffs = [b[g][m] - a[g][m] for g in used]
            cell = entry["metrics"][m]
            tol = 1e-3 if m in ("s_gt", "s_c") else 1e-9  # float32 cosines of identical strings: 1 - 1e-7
            assert cell["groups"] == len(used)
            delta = np.mean([b[g][m] for g in used]) - np.mean([a[g][m] for g in used])
            assert cell["delta"] == pytest.approx(delta, abs=tol)
            assert cell["ci95"] == pytest.approx(reference_interval(diffs), abs=tol), (task, m)
            assert cell["delta"] > 0 and cell["ci95"][0] > 0  # the adapted run is more consistent, and surely so
            # The rows are over the shared groups too; the base's own results are over all its groups.
            assert cell["base"] == pytest.approx(np.mean([a[g][m] for g in used]), abs=tol)
            assert cell["other"] == pytest.approx(np.mean([b[g][m] for g in used]), abs=tol)
            every_group = np.mean([v[m] for v in a.values() if v[m] is not None])
            assert cell["base_reported"] == pytest.approx(every_group, abs=tol)
        note = f"{report.TASK_SHORT[task]}: rows and Δ over the {len(shared)} groups both runs scored"
        assert any(n.startswith(note) for n in pair["notes"])
