"""MM-R³ scoring: the paper's Acc, S_GT, Con and S_C, and what a leaderboard needs beyond them.

Pure functions over scored responses; no lmms-eval, no I/O. Every distinct string is embedded
once for the whole call, and all per-group arithmetic is vectorised (see benchmarks/scoring.py).
`score` and `group_scores` share one implementation (`_score_groups`); `paired_bootstrap`
compares two runs group by group. Definitions, edge cases and worked examples: docs/metrics.md;
the paired comparison: docs/compare.md.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

CONSISTENCY_THRESHOLD = 0.7  # paper §3.3: a pair is consistent if its cosine is above this (strict >)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
# Embedding input cap, far beyond what any sentence encoder reads (MiniLM: 256 tokens): keeps a
# runaway response from costing seconds in the tokenizer. The substring test sees the whole text.
MAX_EMBED_CHARS = 10_000

HEADLINE = ("acc", "s_gt", "con", "s_c")


class Embedder(Protocol):
    """Maps texts to L2-normalised vectors, one row per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class ScoredResponse:
    """One model response to one variant of one item."""

    id: str
    group_id: str
    variant: str
    answers: tuple[str, ...]
    response: str
    group_size: int = 0  # variants the group was built with; 0 = unknown
    kinds: tuple[tuple[str, str], ...] = ()  # e.g. (("style", "candy"),)


@dataclass
class Report:
    """All numbers of one task, ×100 where they are rates or similarities."""

    acc: float | None
    s_gt: float | None
    con: float | None
    s_c: float | None
    exact_agreement: float | None
    consistent_correct: float | None
    consistent_wrong: float | None
    inconsistent: float | None
    ci: dict[str, list[float] | None]
    breakdown: dict[str, dict[str, dict[str, float | None]]]
    counts: dict[str, int]
    threshold: float = CONSISTENCY_THRESHOLD

    def as_dict(self) -> dict:
        return {
            **{name: getattr(self, name) for name in HEADLINE},
            "exact_agreement": self.exact_agreement,
            "consistent_correct": self.consistent_correct,
            "consistent_wrong": self.consistent_wrong,
            "inconsistent": self.inconsistent,
            "ci95": self.ci,
            "breakdown": self.breakdown,
            "counts": self.counts,
            "threshold": self.threshold,
        }


# --------------------------------------------------------------------------- text handling

# Appendix A.3 as the authors' follow-up code applies it, in this order (docs/metrics.md).
_CONTEXT_REMOVALS_1 = (",", ".")
_CONTEXT_REMOVALS_2 = ("in the masked region", "the masked region")
_CONTEXT_REMOVALS_3 = ("there is ", "is ", "contains ", "</s>", "the ", "in ", "of ", "image")


def clean_context_answer(text: str) -> str:
    """Strips the words a context answer repeats from its question (paper Appendix A.3).

    Faithful to the authors' replacement chain, quirks included: "is " is removed inside words too,
    so "this is a cat" becomes "tha cat" (the category still matches as a substring).
    """
    text = text.lower()
    for chunk in _CONTEXT_REMOVALS_1 + _CONTEXT_REMOVALS_2 + _CONTEXT_REMOVALS_3:
        text = text.replace(chunk, "")
    text = text.replace(" a ", " ").replace(" an ", " ")
    if text.startswith(" "):
        text = text[1:]
    return text


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces: the key for exact agreement."""
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def is_correct(response: str, answers: Iterable[str]) -> bool:
    """Paper §3.3: correct when any ground truth is a case-insensitive substring of the response."""
    lowered = response.lower()
    return any(gt and gt.lower() in lowered for gt in answers)


def _ground_truths(answers: Iterable[str], clean_context: bool) -> tuple[str, ...]:
    cleaned = (clean_context_answer(a) if clean_context else a for a in answers if a and a.strip())
    return tuple(dict.fromkeys(a.strip() for a in cleaned if a.strip()))


def _embedding_text(text: str) -> str:
    return text.replace("</s>", "").strip().lower()[:MAX_EMBED_CHARS]


# --------------------------------------------------------------------------- scoring


def deduplicate(responses: Iterable[ScoredResponse]) -> tuple[list[ScoredResponse], int]:
    """Keeps one response per id whatever the arrival order: the first by (id, response)."""
    ordered = sorted(responses, key=lambda r: (r.id, r.response))
    kept: list[ScoredResponse] = []
    for r in ordered:
        if kept and kept[-1].id == r.id:
            continue
        kept.append(r)
    return kept, len(ordered) - len(kept)


def score(
    responses: Iterable[ScoredResponse],
    embedder: Embedder,
    *,
    clean_context: bool = False,
    threshold: float = CONSISTENCY_THRESHOLD,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Report:
    """Scores one task's responses, grouped by `group_id` (never by position).

    Args:
        responses: every response of the task, in any order, from any number of ranks.
        embedder: the sentence encoder for S_GT, Con and S_C.
        clean_context: apply the context-answer cleanup (paper Appendix A.3) before every metric.
        threshold: cosine above which a pair of responses counts as consistent.
        n_resamples: group-bootstrap resamples for the confidence intervals (0 = none).
        seed: bootstrap seed; the intervals are reproducible.
    """
    g = _score_groups(responses, embedder, clean_context=clean_context, threshold=threshold)
    n_groups, multi = len(g.group_ids), g.multi

    # Means over groups: Acc and S_GT over all groups, the pair metrics over groups with pairs.
    con_g, sc_g, agree_g = g.con_g[multi], g.sc_g[multi], g.agree_g[multi]

    # Consistent-correct / consistent-wrong / inconsistent, over groups with at least 2 variants.
    all_correct = _group_all(g.correct, g.vgroup, n_groups)
    all_wrong = _group_all(~g.correct, g.vgroup, n_groups)
    all_consistent = _group_all(g.consistent, g.pgroup, n_groups)
    cc = all_correct[multi]
    cw = (all_wrong & all_consistent)[multi]

    ci = {}
    if n_resamples > 0:
        rng = np.random.default_rng(seed)
        ci["acc"], ci["s_gt"] = _bootstrap([g.acc_g, g.sgt_g], rng, n_resamples)
        ci["con"], ci["s_c"] = _bootstrap([con_g, sc_g], rng, n_resamples)
    else:
        ci = {name: None for name in HEADLINE}

    sizes = np.array([r.group_size for r in g.rows], dtype=np.int64)
    expected = np.zeros(n_groups, dtype=np.int64)
    np.maximum.at(expected, g.vgroup, sizes)
    complete = (expected > 0) & (g.group_n >= expected)
    counts = {
        "responses": len(g.rows),
        "groups": n_groups,
        "groups_complete": int(complete.sum()),
        "groups_incomplete": int(n_groups - complete.sum()),
        "groups_with_pairs": int(multi.sum()),
        "pairs": len(g.pa),
        "empty_responses": int(g.empty.sum()),
        "duplicate_responses": g.n_duplicates,
    }
    return Report(
        acc=_pct(g.acc_g),
        s_gt=_pct(g.sgt_g),
        con=_pct(con_g),
        s_c=_pct(sc_g),
        exact_agreement=_pct(agree_g),
        consistent_correct=_pct(cc.astype(np.float64)),
        consistent_wrong=_pct(cw.astype(np.float64)),
        inconsistent=_pct((~cc & ~cw).astype(np.float64)),
        ci=ci,
        breakdown=_breakdown(g.rows, g.correct, g.s_gt_v, g.pa, g.pb, g.cos, g.consistent),
        counts=counts,
        threshold=threshold,
    )


@dataclass(frozen=True)
class GroupScore:
    """One group's Acc, S_GT, Con and S_C, ×100: the values `score` averages over groups."""

    acc: float
    s_gt: float
    con: float | None  # None for a group with fewer than 2 responses: it has no pairs
    s_c: float | None
    responses: int


def group_scores(
    responses: Iterable[ScoredResponse],
    embedder: Embedder,
    *,
    clean_context: bool = False,
    threshold: float = CONSISTENCY_THRESHOLD,
) -> dict[str, GroupScore]:
    """Per `group_id`, the four headline values of that group, computed exactly as `score` does.

    The mean of `acc` (`s_gt`) over the groups is `score(...).acc` (`.s_gt`); the mean of `con`
    (`s_c`) over the groups where it is not None is `score(...).con` (`.s_c`).
    """
    details = group_details(responses, embedder, clean_context=clean_context, threshold=threshold)
    return {group_id: detail.scores for group_id, detail in details.items()}


def _group_score(g: _GroupArrays, i: int) -> GroupScore:
    return GroupScore(
        acc=float(100.0 * g.acc_g[i]),
        s_gt=float(100.0 * g.sgt_g[i]),
        con=float(100.0 * g.con_g[i]) if g.multi[i] else None,
        s_c=float(100.0 * g.sc_g[i]) if g.multi[i] else None,
        responses=int(g.group_n[i]),
    )


@dataclass(frozen=True)
class GroupDetail:
    """One group as `score` scores it: its responses, each one's correctness, every pair's cosine."""

    ids: tuple[str, ...]  # the group's response ids, in scoring order (by variant, then id)
    correct: tuple[bool, ...]  # per response, as Acc counts it
    cosines: np.ndarray  # (n, n) symmetric: the cosines Con and S_C average; NaN on the diagonal
    scores: GroupScore


def group_details(
    responses: Iterable[ScoredResponse],
    embedder: Embedder,
    *,
    clean_context: bool = False,
    threshold: float = CONSISTENCY_THRESHOLD,
) -> dict[str, GroupDetail]:
    """Per `group_id`, what `group_scores` gives and the numbers behind it: the pairwise cosines
    (the same embeddings, text normalisation and clipping as Con and S_C) and each response's
    correctness. For showing a group's variants side by side (the report's inconsistency browser)."""
    g = _score_groups(responses, embedder, clean_context=clean_context, threshold=threshold)
    starts = np.searchsorted(g.vgroup, np.arange(len(g.group_ids)))
    out = {}
    for i, group_id in enumerate(g.group_ids):
        start, n = int(starts[i]), int(g.group_n[i])
        cosines = np.full((n, n), np.nan)
        in_group = g.pgroup == i
        a, b = g.pa[in_group] - start, g.pb[in_group] - start
        cosines[a, b] = cosines[b, a] = g.cos[in_group]
        out[group_id] = GroupDetail(
            ids=tuple(r.id for r in g.rows[start : start + n]),
            correct=tuple(bool(c) for c in g.correct[start : start + n]),
            cosines=cosines,
            scores=_group_score(g, i),
        )
    return out


@dataclass(frozen=True)
class PairedDelta:
    """One metric of run b against run a, over the groups both scored (×100 points)."""

    delta: float | None  # mean_b - mean_a; None when no group is shared
    ci: list[float] | None  # percentile interval of the delta (CI_LEVEL); None without resamples
    shared: int  # groups with a value in both runs: the only ones used
    only_a: int  # groups with a value in run a only: counted, never used
    only_b: int
    mean_a: float | None = None  # run a's mean over the shared groups
    mean_b: float | None = None


def paired_bootstrap(
    a: Mapping[str, float | None],
    b: Mapping[str, float | None],
    *,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedDelta:
    """Delta of one metric between two runs, with a paired group-bootstrap interval.

    Args:
        a: group_id -> the metric's value in the first run (the base); None = not scored there,
            e.g. Con of a group with one response.
        b: the same for the second run.
        n_resamples: resamples of the shared groups, with replacement (0 = no interval).
        seed: bootstrap seed; the interval is reproducible.

    Each resample draws the shared groups with replacement and takes mean(b) - mean(a) over the
    same draw, so the interval reflects only how the two runs differ on the same items.
    """
    in_a = {k for k, v in a.items() if v is not None}
    in_b = {k for k, v in b.items() if v is not None}
    shared = sorted(in_a & in_b)  # sorted: the draw does not depend on mapping order
    counts = {"shared": len(shared), "only_a": len(in_a - in_b), "only_b": len(in_b - in_a)}
    if not shared:
        return PairedDelta(delta=None, ci=None, **counts)
    va = np.array([a[k] for k in shared], dtype=np.float64)
    vb = np.array([b[k] for k in shared], dtype=np.float64)
    ci = None
    if n_resamples > 0:
        [ci] = _bootstrap([vb - va], np.random.default_rng(seed), n_resamples, scale=1.0)
    mean_a, mean_b = float(va.mean()), float(vb.mean())
    return PairedDelta(delta=mean_b - mean_a, ci=ci, mean_a=mean_a, mean_b=mean_b, **counts)


@dataclass
class _GroupArrays:
    """Everything `score` and `group_scores` share: per response, per pair, per group.

    Rows are sorted by group; per-group arrays are fractions (not ×100), indexed like group_ids.
    """

    rows: list[ScoredResponse]
    n_duplicates: int
    group_ids: list[str]
    vgroup: np.ndarray  # (responses,) group index of each row
    group_n: np.ndarray  # (groups,) responses per group
    empty: np.ndarray  # (responses,)
    correct: np.ndarray  # (responses,)
    s_gt_v: np.ndarray  # (responses,)
    pa: np.ndarray  # (pairs,) row index of each pair's first response
    pb: np.ndarray  # (pairs,)
    pgroup: np.ndarray  # (pairs,) group index of each pair
    cos: np.ndarray  # (pairs,)
    consistent: np.ndarray  # (pairs,)
    multi: np.ndarray  # (groups,) the group has at least 2 responses, hence pairs
    acc_g: np.ndarray  # (groups,)
    sgt_g: np.ndarray  # (groups,)
    con_g: np.ndarray  # (groups,) 0 where not multi: read only under `multi`
    sc_g: np.ndarray  # (groups,)
    agree_g: np.ndarray  # (groups,)


def _score_groups(
    responses: Iterable[ScoredResponse], embedder: Embedder, *, clean_context: bool, threshold: float
) -> _GroupArrays:
    rows, n_duplicates = deduplicate(responses)
    rows.sort(key=lambda r: (r.group_id, r.variant, r.id))
    texts = [clean_context_answer(r.response) if clean_context else r.response for r in rows]
    texts = [t.strip() for t in texts]
    empty = np.array([not _embedding_text(t) for t in texts], dtype=bool)  # "" and "</s>" alike

    # Variant -> group index; groups keep first-seen order of the sorted rows.
    group_ids = sorted({r.group_id for r in rows})
    group_of = {g: i for i, g in enumerate(group_ids)}
    vgroup = np.array([group_of[r.group_id] for r in rows], dtype=np.int64)
    n_groups = len(group_ids)
    group_n = np.bincount(vgroup, minlength=n_groups)

    # Ground truths go through the same cleanup as the answers they are compared with: else the
    # chain's in-word removals would make e.g. "tennis racket" unmatchable ("tennracket").
    answers = [_ground_truths(r.answers, clean_context) for r in rows]

    # Embed every distinct non-empty response and ground truth once.
    strings: dict[str, int] = {}
    for text, is_empty in zip(texts, empty, strict=True):
        if not is_empty:
            strings.setdefault(_embedding_text(text), len(strings))
    for gts in answers:
        for gt in gts:
            strings.setdefault(_embedding_text(gt), len(strings))
    emb = _encode(embedder, list(strings))
    resp_idx = np.array(
        [-1 if e else strings[_embedding_text(t)] for t, e in zip(texts, empty, strict=True)], dtype=np.int64
    )

    # Per variant: Acc and S_GT (max cosine over the ground truths; 0 for an empty response).
    correct = np.array(
        [(not e) and is_correct(t, gts) for t, e, gts in zip(texts, empty, answers, strict=True)], dtype=bool
    )
    s_gt_v = _max_gt_similarity(emb, resp_idx, answers, strings)

    # Per pair of variants of one group: cosine (0 when either response is empty).
    pa, pb = _pairs(vgroup, n_groups)
    cos = np.zeros(len(pa), dtype=np.float64)
    both = (~empty[pa]) & (~empty[pb])
    if both.any():
        cos[both] = np.einsum("ij,ij->i", emb[resp_idx[pa[both]]], emb[resp_idx[pb[both]]])
    cos = np.clip(cos, -1.0, 1.0)
    consistent = cos > threshold
    norm = [normalize_answer(t) for t in texts]
    agree = np.array([bool(norm[a]) and norm[a] == norm[b] for a, b in zip(pa, pb, strict=True)], dtype=bool)
    pgroup = vgroup[pa]

    return _GroupArrays(
        rows=rows,
        n_duplicates=n_duplicates,
        group_ids=group_ids,
        vgroup=vgroup,
        group_n=group_n,
        empty=empty,
        correct=correct,
        s_gt_v=s_gt_v,
        pa=pa,
        pb=pb,
        pgroup=pgroup,
        cos=cos,
        consistent=consistent,
        multi=group_n >= 2,
        acc_g=_group_mean(correct.astype(np.float64), vgroup, n_groups),
        sgt_g=_group_mean(s_gt_v, vgroup, n_groups),
        con_g=_group_mean(consistent.astype(np.float64), pgroup, n_groups),
        sc_g=_group_mean(cos, pgroup, n_groups),
        agree_g=_group_mean(agree.astype(np.float64), pgroup, n_groups),
    )


def _encode(embedder: Embedder, strings: list[str]) -> np.ndarray:
    if not strings:
        return np.zeros((0, 1), dtype=np.float32)
    emb = np.asarray(embedder.encode(strings), dtype=np.float32)
    if emb.shape[0] != len(strings):
        raise ValueError(f"embedder returned {emb.shape[0]} vectors for {len(strings)} texts")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms == 0, 1.0, norms)


def _max_gt_similarity(emb, resp_idx, answers, strings) -> np.ndarray:
    """Max cosine of each response to its ground truths; 0 for empty responses or no ground truth."""
    owner, gt_idx = [], []
    for v, gts in enumerate(answers):
        if resp_idx[v] < 0:
            continue
        for gt in gts:
            owner.append(v)
            gt_idx.append(strings[_embedding_text(gt)])
    out = np.zeros(len(answers), dtype=np.float64)
    if not owner:
        return out
    owner_a = np.array(owner, dtype=np.int64)
    sims = np.einsum("ij,ij->i", emb[resp_idx[owner_a]], emb[np.array(gt_idx, dtype=np.int64)])
    best = np.full(len(answers), -np.inf)
    np.maximum.at(best, owner_a, np.clip(sims, -1.0, 1.0))
    has = np.isfinite(best)
    out[has] = best[has]
    return out


def _pairs(vgroup: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b), a < b, of rows in the same group. Rows are sorted by group."""
    starts = np.searchsorted(vgroup, np.arange(n_groups))
    ends = np.searchsorted(vgroup, np.arange(n_groups), side="right")
    pa, pb = [], []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e - s >= 2:
            a, b = np.triu_indices(e - s, k=1)
            pa.append(a + s)
            pb.append(b + s)
    if not pa:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(pa).astype(np.int64), np.concatenate(pb).astype(np.int64)


def _group_mean(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    total = np.bincount(groups, weights=values, minlength=n_groups)
    n = np.bincount(groups, minlength=n_groups)
    return np.divide(total, n, out=np.zeros(n_groups), where=n > 0)


def _group_all(flags: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    bad = np.bincount(groups, weights=(~flags).astype(np.float64), minlength=n_groups)
    return bad == 0


def _pct(values: np.ndarray) -> float | None:
    return None if len(values) == 0 else float(100.0 * values.mean())


def _bootstrap(per_group: list[np.ndarray], rng: np.random.Generator, n_resamples: int, scale: float = 100.0) -> list:
    """Percentile interval of the mean over groups (× scale), resampling groups with replacement."""
    n = len(per_group[0])
    if n == 0:
        return [None for _ in per_group]
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float64) / n
    alpha = (1.0 - CI_LEVEL) / 2.0
    out = []
    for values in per_group:
        means = scale * (weights @ values)
        lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
        out.append([float(lo), float(hi)])
    return out


def _breakdown(rows, correct, s_gt_v, pa, pb, cos, consistent) -> dict:
    """Scores per variant kind (paper Tables 10-13).

    Acc and S_GT average the responses of that kind; Con and S_C average the pairs that include a
    response of that kind.
    """
    kinds: dict[str, dict[str, list[int]]] = {}
    for v, r in enumerate(rows):
        for name, value in r.kinds:
            kinds.setdefault(name, {}).setdefault(str(value), []).append(v)
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, values in sorted(kinds.items()):
        out[name] = {}
        for value, members in sorted(values.items(), key=lambda kv: _natural_key(kv[0])):
            member = np.zeros(len(rows), dtype=bool)
            member[members] = True
            in_pair = member[pa] | member[pb] if len(pa) else np.zeros(0, dtype=bool)
            out[name][value] = {
                "acc": _pct(correct[member].astype(np.float64)),
                "s_gt": _pct(s_gt_v[member]),
                "con": _pct(consistent[in_pair].astype(np.float64)),
                "s_c": _pct(cos[in_pair]),
                "responses": int(member.sum()),
                "pairs": int(in_pair.sum()),
            }
    return out


def _natural_key(value: str):
    return (0, int(value), "") if value.isdigit() else (1, math.inf, value)
