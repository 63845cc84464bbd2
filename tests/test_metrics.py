"""The scoring core against numbers computed by hand (docs/metrics.md has the same examples)."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from mmr3_tasks import metrics
from mmr3_tasks.embedding import get_embedder
from mmr3_tasks.metrics import ScoredResponse, clean_context_answer, is_correct, normalize_answer


class TableEmbedder:
    """Unit vectors chosen per string, so every cosine below is known exactly."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = {k: np.asarray(v, dtype=np.float64) / np.linalg.norm(v) for k, v in table.items()}
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return np.stack([self.table[t] for t in texts])


def angle(cos: float) -> list[float]:
    """A 2-d unit vector whose cosine with [1, 0] is `cos`."""
    return [cos, float(np.sqrt(1 - cos * cos))]


def resp(group, variant, response, answers=("cat",), size=3, kinds=()):
    return ScoredResponse(
        id=f"{group}/{variant}",
        group_id=group,
        variant=variant,
        answers=tuple(answers),
        response=response,
        group_size=size,
        kinds=tuple(kinds),
    )


@pytest.mark.parametrize(
    "response, answers, expected",
    [
        ("A Cat sits there", ["cat"], True),  # case-insensitive
        ("concatenate", ["cat"], True),  # substring, as the paper defines it
        ("a dog", ["cat", "dog"], True),  # any ground truth counts
        ("a dog", ["cat"], False),
        ("", ["cat"], False),
        ("anything", ["", "  "], False),  # an empty ground truth never matches everything
    ],
)
def test_is_correct(response, answers, expected):
    assert is_correct(response, answers) is expected


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("The cat.", "cat"),
        ("There is a dog in the masked region.", "a dog "),  # " a " needs a space on both sides
        ("It contains a bat, maybe.", "it bat maybe"),
        ("this is a cat", "tha cat"),  # the authors' chain removes "is " inside words too
        ("Image of the masked region", ""),
        ("</s>person", "person"),
    ],
)
def test_clean_context_answer_follows_the_authors_chain(raw, cleaned):
    assert clean_context_answer(raw) == cleaned


def test_normalize_answer():
    assert normalize_answer("The  Red, car!") == "red car"
    assert normalize_answer("an apple") == "apple"
    assert normalize_answer("...") == ""


def test_hand_computed_group_scores():
    # g1 all "cat"; g2 "dog", "", "dog"; g3 all empty; g4 "TWO"/"two"/"Two" (case only).
    rows = [
        resp("g1", "r1", "cat"),
        resp("g1", "r2", "cat"),
        resp("g1", "r3", "cat"),
        resp("g2", "r1", "dog", ["dog"]),
        resp("g2", "r2", "  ", ["dog"]),
        resp("g2", "r3", "dog", ["dog"]),
        resp("g3", "r1", "", ["red", "crimson"]),
        resp("g3", "r2", "", ["red", "crimson"]),
        resp("g3", "r3", "", ["red", "crimson"]),
        resp("g4", "r1", "TWO", ["two"]),
        resp("g4", "r2", "two", ["two"]),
        resp("g4", "r3", "Two", ["two"]),
    ]
    emb = TableEmbedder(
        {"cat": [1, 0, 0, 0], "dog": [0, 1, 0, 0], "red": [0, 0, 1, 0], "crimson": [0, 0, 1, 1], "two": [0, 0, 0, 1]}
    )
    random.Random(3).shuffle(rows)  # arrival order must not matter
    r = metrics.score(rows, emb, n_resamples=0)
    assert r.acc == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)
    assert r.s_gt == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)
    assert r.con == pytest.approx(100 * (1 + 1 / 3 + 0 + 1) / 4)
    assert r.s_c == pytest.approx(100 * (1 + 1 / 3 + 0 + 1) / 4)
    assert r.exact_agreement == pytest.approx(100 * (1 + 1 / 3 + 0 + 1) / 4)
    assert (r.consistent_correct, r.consistent_wrong, r.inconsistent) == (50.0, 0.0, 50.0)
    assert r.counts["empty_responses"] == 4
    assert r.counts["groups_complete"] == 4
    # Each distinct string embedded once, in one call; empty responses never reach the encoder.
    assert len(emb.calls) == 1 and sorted(emb.calls[0]) == ["cat", "crimson", "dog", "red", "two"]


def test_threshold_is_strict_and_similarities_are_not_floored():
    emb = TableEmbedder({"a": [1, 0], "b": angle(0.7), "c": angle(0.71), "x": [-1, 0]})
    rows = [resp("g", "r1", "a", ["x"], size=2), resp("g", "r2", "b", ["x"], size=2)]
    r = metrics.score(rows, emb, n_resamples=0)
    assert r.con == 0.0  # cosine exactly 0.7 is not "above 0.7"
    assert r.s_c == pytest.approx(70.0)
    assert r.s_gt == pytest.approx(100 * (-1 + -0.7) / 2)  # negative cosines are kept, not floored at 0
    rows[1] = resp("g", "r2", "c", ["x"], size=2)
    assert metrics.score(rows, emb, n_resamples=0).con == 100.0


def test_consistent_wrong_needs_all_wrong_and_all_pairs_consistent():
    emb = TableEmbedder({"dog": [1, 0], "puppy": angle(0.9), "cat": [0, 1]})
    wrong_but_stable = [resp("g", v, t) for v, t in [("r1", "dog"), ("r2", "puppy"), ("r3", "dog")]]
    r = metrics.score(wrong_but_stable, emb, n_resamples=0)
    assert (r.consistent_correct, r.consistent_wrong, r.inconsistent) == (0.0, 100.0, 0.0)
    assert r.acc == 0.0 and r.con == 100.0


def test_incomplete_and_single_variant_groups():
    # Under --limit a group may arrive with 1 of its 3 variants: it counts for acc and s_gt only.
    emb = TableEmbedder({"cat": [1, 0], "dog": [0, 1]})
    rows = [resp("g1", "r1", "cat"), resp("g1", "r2", "cat"), resp("g1", "r3", "cat"), resp("g2", "r1", "dog")]
    r = metrics.score(rows, emb, n_resamples=0)
    assert r.acc == pytest.approx(50.0)  # (1 + 0) / 2 groups
    assert r.s_gt == pytest.approx(50.0)
    assert r.con == 100.0 and r.s_c == pytest.approx(100.0)  # only g1 has pairs
    assert r.counts == {
        "responses": 4,
        "groups": 2,
        "groups_complete": 1,
        "groups_incomplete": 1,
        "groups_with_pairs": 1,
        "pairs": 3,
        "empty_responses": 0,
        "duplicate_responses": 0,
    }


def test_no_pairs_at_all_gives_none_not_zero():
    r = metrics.score([resp("g1", "r1", "cat")], TableEmbedder({"cat": [1, 0]}))
    assert r.acc == 100.0 and r.con is None and r.s_c is None and r.ci["con"] is None


def test_duplicate_ids_keep_one_whatever_the_order():
    emb = TableEmbedder({"cat": [1, 0], "dog": [0, 1]})
    rows = [resp("g", "r1", "dog"), resp("g", "r1", "cat"), resp("g", "r2", "cat")]
    a = metrics.score(rows, emb, n_resamples=0)
    b = metrics.score(rows[::-1], emb, n_resamples=0)
    assert a.as_dict() == b.as_dict()
    assert a.counts["duplicate_responses"] == 1 and a.counts["responses"] == 2
    assert a.acc == 100.0  # kept "g/r1" = "cat", the first by (id, response)


def test_breakdown_by_kind_matches_hand_count():
    emb = TableEmbedder({"cat": [1, 0], "dog": [0, 1]})
    k = lambda lines: (("mask_lines", str(lines)),)  # noqa: E731
    rows = [
        resp("g5", "m1", "cat", kinds=k(1)),
        resp("g5", "m2", "cat", kinds=k(3)),
        resp("g5", "m3", "cat", kinds=k(1)),
        resp("g6", "m1", "dog", ["dog"], kinds=k(1)),
        resp("g6", "m2", "", ["dog"], kinds=k(3)),
        resp("g6", "m3", "", ["dog"], kinds=k(5)),
    ]
    b = metrics.score(rows, emb, n_resamples=0).breakdown["mask_lines"]
    assert list(b) == ["1", "3", "5"]
    assert b["1"]["acc"] == 100.0 and b["3"]["acc"] == 50.0 and b["5"]["acc"] == 0.0
    # pairs with a lines-1 member: all 3 of g5 (cos 1) and g6 (m1,m2), (m1,m3) (empty: 0)
    assert b["1"]["pairs"] == 5 and b["1"]["con"] == pytest.approx(60.0)
    assert b["5"]["pairs"] == 2 and b["5"]["con"] == 0.0


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    emb = TableEmbedder({"cat": [1, 0], "dog": [0, 1]})
    rng = random.Random(0)
    rows = [resp(f"g{i}", f"r{j}", rng.choice(["cat", "dog"])) for i in range(60) for j in range(1, 4)]
    a, b = metrics.score(rows, emb), metrics.score(rows, emb)
    assert a.ci == b.ci
    for name in metrics.HEADLINE:
        lo, hi = a.ci[name]
        assert lo <= getattr(a, name) <= hi and hi - lo > 1.0
    assert metrics.score(rows, emb, seed=1).ci != a.ci


def test_real_minilm_orders_paraphrases_above_unrelated_answers():
    emb = get_embedder()
    same = [
        resp("g", "r1", "A red double-decker bus on a street."),
        resp("g", "r2", "A red bus driving down the road."),
    ]
    other = [
        resp("h", "r1", "A red double-decker bus on a street."),
        resp("h", "r2", "Two kittens sleeping on a sofa."),
    ]
    s_same = metrics.score(same, emb, n_resamples=0).s_c
    s_other = metrics.score(other, emb, n_resamples=0).s_c
    assert s_same > 70 > 20 > s_other


def test_worked_examples_in_docs_metrics_md():
    emb = get_embedder()
    texts = ["The person is holding a red umbrella.", "An umbrella", "It is a kite."]
    rows = [resp("g", f"r{i}", t, ["umbrella"]) for i, t in enumerate(texts, 1)]
    r = metrics.score(rows, emb, n_resamples=0)
    assert (r.acc, r.con, r.exact_agreement, r.inconsistent) == pytest.approx((200 / 3, 100 / 3, 0.0, 100.0))
    assert (r.s_gt, r.s_c) == pytest.approx((65.50, 48.06), abs=0.01)
    texts = ["There is a cat in the masked region.", "The cat.", "a dog"]
    rows = [resp("c", f"m{i}", t, ["cat"]) for i, t in enumerate(texts, 1)]
    r = metrics.score(rows, emb, clean_context=True, n_resamples=0)
    assert (r.acc, r.con, r.exact_agreement) == pytest.approx((200 / 3, 100 / 3, 100 / 3))
    assert (r.s_gt, r.s_c) == pytest.approx((79.50, 63.46), abs=0.01)


def test_very_long_response_is_scored_on_its_whole_text_and_embedded_capped():
    long = "word " * 200_000 + "cat"  # 1 MB; the ground truth sits at the very end
    emb = TableEmbedder({"cat": [1, 0], ("word " * 2_000)[: metrics.MAX_EMBED_CHARS]: [0, 1]})
    r = metrics.score([resp("g", "r1", long), resp("g", "r2", "cat")], emb, n_resamples=0)
    assert r.acc == 100.0  # the substring test reads all of it
    assert len(emb.calls[0][0]) <= metrics.MAX_EMBED_CHARS  # the encoder never sees more than the cap
    assert r.s_c == pytest.approx(0.0, abs=1e-9)


_COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie "
    "suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear hair_drier toothbrush"
)
COCO_CATEGORIES = _COCO_NAMES.replace("_", "\0").split()


def test_every_coco_category_can_be_answered_correctly_after_the_cleanup():
    rows = []
    for category in (c.replace("\0", " ") for c in COCO_CATEGORIES):
        for j, answer in enumerate((category, f"a {category}", f"The {category}.", f"It is a {category}")):
            rows.append(resp(f"{category}/{j}", "m1", answer, [category], size=1))
    r = metrics.score(rows, get_embedder(), clean_context=True, n_resamples=0)
    assert len(COCO_CATEGORIES) == 80 and r.counts["groups"] == 320
    assert r.acc == 100.0  # "tennis racket" too: answers and ground truths are cleaned alike


def test_the_cleanup_chain_still_breaks_two_categories_followed_by_a_space():
    # Documented artefact of the authors' chain: "in " inside "train ", "is " inside "skis ".
    for category in ("train", "skis"):
        answer = f"There is a {category} in the masked region."
        assert not metrics.is_correct(metrics.clean_context_answer(answer), [category])


def test_the_embedding_model_can_be_overridden_by_path_and_fails_clearly(monkeypatch, tmp_path):
    from mmr3_tasks import embedding, hooks

    local = embedding.resolve_embedding_model(embedding.DEFAULT_EMBEDDING_MODEL)
    monkeypatch.setenv(embedding.EMBEDDING_MODEL_ENV, local)  # a local sentence-transformers folder
    payloads = [
        {"id": f"g/r{i}", "group_id": "g", "task": "rephrase", "variant": f"r{i}", "group_size": 2,
         "answers": ["cat"], "kinds": {}, "data": "", "response": "cat"}
        for i in (1, 2)
    ]  # fmt: skip
    report = hooks.score_payloads(payloads, n_resamples=0)
    assert report["embedding_model"] == local and report["s_gt"] == pytest.approx(100.0)
    monkeypatch.setenv(embedding.EMBEDDING_MODEL_ENV, str(tmp_path / "no-such-model"))
    with pytest.raises(OSError, match="Could not load the embedding model .*no-such-model.*MMR3_EMBEDDING_MODEL"):
        hooks.score_payloads(payloads, n_resamples=0)


# --------------------------------------------------------------------------- values pinned exactly


class VectorEmbedder:
    """Maps each text to the float32 vector given for it, unchanged: the cosines the scorer computes
    (float32 rows, normalised in float32, float32 dot products) are then known to the last bit."""

    def __init__(self, table: dict[str, np.ndarray | list[float]]):
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}

    def encode(self, texts):
        return np.stack([self.table[t] for t in texts])


def unit_with_cosine(c: np.float32) -> np.ndarray:
    """A float32 vector [c, s] whose float32 norm is exactly 1, so the scorer's normalisation leaves
    it unchanged and its float32 dot product with [1, 0] is exactly `c`."""
    s = np.float32(np.sqrt(1.0 - float(c) ** 2))
    for _ in range(16):
        v = np.array([c, s], dtype=np.float32)
        norm = np.linalg.norm(v[None, :], axis=1)[0]
        if norm == np.float32(1.0):
            return v
        s = np.nextafter(s, np.float32(0.0) if norm > 1 else np.float32(2.0))
    raise AssertionError(f"no float32 unit vector with cosine {c!r} found")


F32_THRESHOLD = np.float32(metrics.CONSISTENCY_THRESHOLD)  # 0.699999988..., just below 0.7
F32_ABOVE = np.nextafter(F32_THRESHOLD, np.float32(1.0))  # 0.70000005: the smallest float32 above 0.7
F32_BELOW = np.nextafter(F32_THRESHOLD, np.float32(0.0))  # 0.69999993


def test_consistency_threshold_is_0_7_to_the_last_float32_bit():
    # Three groups of two responses, one pair each, with float32 cosines a hair above 0.7, exactly
    # float32(0.7), and a hair below. No float32 value equals the float64 0.7: float32(0.7) lies
    # below it and the next float32 above it. So at the default threshold only "above" is consistent,
    # whether the comparison is `>` in float64 or `>` in float32 (the authors' torch cosines); `>=` in
    # float32 would count "exact" too. The `>` vs `>=` choice itself is pinned with thresholds that
    # float32 represents exactly (next test).
    assert float(F32_ABOVE) > 0.7 and F32_ABOVE > F32_THRESHOLD
    assert float(F32_THRESHOLD) < 0.7 and F32_THRESHOLD == np.float32(0.7)
    assert F32_BELOW < F32_THRESHOLD
    cosines = {"above": F32_ABOVE, "exact": F32_THRESHOLD, "below": F32_BELOW}
    emb = VectorEmbedder({"x": [1.0, 0.0], "ref": [0.0, 1.0], **{k: unit_with_cosine(c) for k, c in cosines.items()}})
    rows = [r for k in cosines for r in (resp(k, "r1", "x", ["ref"], size=2), resp(k, "r2", k, ["ref"], size=2))]
    groups = metrics.group_scores(rows, emb)
    for k, c in cosines.items():
        assert groups[k].s_c == 100.0 * float(c)  # the scorer's cosine is exactly the float32 value built
    assert {k: g.con for k, g in groups.items()} == {"above": 100.0, "exact": 0.0, "below": 0.0}
    r = metrics.score(rows, emb, n_resamples=0)
    assert metrics.CONSISTENCY_THRESHOLD == 0.7 and r.threshold == 0.7
    assert r.counts["pairs"] == 3
    consistent_pairs = sum(g.con / 100 for g in groups.values())  # one pair per group
    assert consistent_pairs == 1
    assert r.con == pytest.approx(100 / 3, abs=1e-12)
    # Every response is wrong ("ref" appears in none): only "above" is consistently wrong.
    assert r.consistent_correct == 0.0
    assert (r.consistent_wrong, r.inconsistent) == pytest.approx((100 / 3, 200 / 3))


@pytest.mark.parametrize("threshold", [0.5, 0.75, 0.25])
def test_threshold_is_strict_at_a_cosine_exactly_equal_to_it(threshold):
    # Thresholds float32 represents exactly, so a float32 cosine can equal one: `>` leaves it out.
    t = np.float32(threshold)
    assert float(t) == threshold
    cosines = {"equal": t, "above": np.nextafter(t, np.float32(1.0))}
    emb = VectorEmbedder({"x": [1.0, 0.0], "ref": [0.0, 1.0], **{k: unit_with_cosine(c) for k, c in cosines.items()}})
    rows = [r for k in cosines for r in (resp(k, "r1", "x", ["ref"], size=2), resp(k, "r2", k, ["ref"], size=2))]
    groups = metrics.group_scores(rows, emb, threshold=threshold)
    assert groups["equal"].s_c == 100.0 * threshold  # the cosine is the threshold, exactly
    assert {k: g.con for k, g in groups.items()} == {"equal": 0.0, "above": 100.0}
    r = metrics.score(rows, emb, threshold=threshold, n_resamples=0)
    assert r.con == 50.0 and r.threshold == threshold


def test_s_gt_is_the_max_over_every_ground_truth():
    # One group, four responses: each closest to a different ground truth (first, middle, last) and
    # one equally far from all. A kind per response exposes each response's own S_GT.
    gts = ["notre dame", "paris cathedral", "cathedral of paris"]
    vectors = {
        "notre dame": [1.0, 0.0, 0.0],
        "paris cathedral": [0.0, 1.0, 0.0],
        "cathedral of paris": [0.0, 0.0, 1.0],
        "notre dame!": [0.9, 0.3, 0.2],  # closest to the first
        "the paris cathedral": [0.2, 0.9, 0.3],  # closest to the middle one
        "the cathedral of paris": [0.1, 0.3, 0.9],  # closest to the last
        "a castle": [0.5, 0.5, 0.5],
    }
    texts = ["Notre Dame!", "The Paris cathedral", "The cathedral of Paris", "A castle"]
    rows = [resp("g", f"v{i}", t, gts, size=4, kinds=(("style", f"v{i}"),)) for i, t in enumerate(texts)]
    r = metrics.score(rows, VectorEmbedder(vectors), n_resamples=0)
    unit = {k: np.asarray(v) / np.linalg.norm(v) for k, v in vectors.items()}
    by_hand = {f"v{i}": max(float(unit[t.lower()] @ unit[g]) for g in gts) for i, t in enumerate(texts)}
    assert by_hand["v1"] == pytest.approx(0.9 / np.linalg.norm([0.2, 0.9, 0.3]))  # the middle one is the max
    for v, expected in by_hand.items():
        assert r.breakdown["style"][v]["s_gt"] == pytest.approx(100 * expected, abs=1e-5), v
    assert r.s_gt == pytest.approx(100 * np.mean(list(by_hand.values())), abs=1e-5)
    # Acc: each of the first three matches one ground truth only, and not the same one.
    assert [r.breakdown["style"][f"v{i}"]["acc"] for i in range(4)] == [100.0, 100.0, 100.0, 0.0]
    assert r.acc == 75.0


def test_ground_truths_are_stripped_and_blank_ones_ignored():
    emb = VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    rows = [resp("g", "r1", "cat", [" Cat ", "", "   "], size=2), resp("g", "r2", "dog", [" Cat ", ""], size=2)]
    r = metrics.score(rows, emb, n_resamples=0)
    assert (r.acc, r.s_gt) == (50.0, 50.0)  # only "Cat" is a ground truth: cosines 1 and 0


def test_end_of_sequence_tokens_and_case_are_not_embedded():
    # "</s>" is dropped and the text lower-cased before embedding; a bare "</s>" is an empty answer.
    emb = VectorEmbedder({"cat": [1.0, 0.0]})
    rows = [resp("g", "r1", "Cat</s>", size=3), resp("g", "r2", "cat", size=3), resp("g", "r3", "</s>", size=3)]
    r = metrics.score(rows, emb, n_resamples=0)
    assert r.counts["empty_responses"] == 1
    assert r.s_c == pytest.approx(100 / 3) and r.con == pytest.approx(100 / 3)  # 1, 0, 0
    assert r.s_gt == pytest.approx(200 / 3)


def test_cosines_are_clipped_to_one():
    # This vector's float32 dot product with itself, after float32 normalisation, is 1.0000001.
    v = np.array([[0.1, 0.2, 0.7]], dtype=np.float32)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", unit, unit)[0] > 1
    emb = VectorEmbedder({"x": v[0]})
    r = metrics.score([resp("g", "r1", "x", ["x"], size=2), resp("g", "r2", "x", ["x"], size=2)], emb, n_resamples=0)
    assert r.s_c == 100.0  # pair cosine
    assert r.s_gt == 100.0  # cosine with the ground truth


def test_the_outcome_split_counts_only_groups_with_pairs():
    # g2 has one (wrong) response: no pairs, so it is neither consistent-wrong nor inconsistent.
    emb = VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    rows = [resp("g1", v, "cat") for v in ("r1", "r2", "r3")] + [resp("g2", "r1", "dog")]
    r = metrics.score(rows, emb, n_resamples=0)
    assert (r.consistent_correct, r.consistent_wrong, r.inconsistent) == (100.0, 0.0, 0.0)
    assert r.acc == 50.0 and r.con == 100.0


def test_a_group_of_unknown_size_is_never_complete():
    emb = VectorEmbedder({"cat": [1.0, 0.0]})
    rows = [resp("g1", "r1", "cat", size=0), resp("g1", "r2", "cat", size=0), resp("g2", "r1", "cat", size=1)]
    counts = metrics.score(rows, emb, n_resamples=0).counts
    assert (counts["groups_complete"], counts["groups_incomplete"]) == (1, 1)


@pytest.mark.parametrize(
    "raw, normalised",
    [
        ("The  Red\tcar!\n", "red car"),  # any whitespace collapses
        ("another answer", "another answer"),  # articles only as whole words
        ("the pizza", "pizza"),  # ... so a word ending in "a" keeps it
        ("A cat, an owl and THE dog", "cat owl and dog"),
        ("x-ray", "x ray"),  # punctuation becomes a space, not nothing
        ("don't", "don t"),
        ("¿Qué?", "qué"),  # Unicode punctuation too
        ("«un chat»", "un chat"),
        ("$5 + 3", "$5 + 3"),  # symbols are not punctuation
        ("...", ""),
    ],
)
def test_normalize_answer_table(raw, normalised):
    assert normalize_answer(raw) == normalised


def test_exact_agreement_compares_normalised_answers_and_never_agrees_on_nothing():
    emb = VectorEmbedder({"the red car!": [1.0, 0.0], "red car": [1.0, 0.0], "...": [0.0, 1.0], "cat": [0.0, 1.0]})
    rows = [resp("g", "r1", "The red car!", size=2), resp("g", "r2", "red car", size=2)]
    rows += [resp("h", "r1", "...", size=2), resp("h", "r2", "...", size=2)]  # normalised to ""
    r = metrics.score(rows, emb, n_resamples=0)
    assert r.exact_agreement == 50.0 and r.s_c == 100.0


def test_breakdown_s_gt_and_s_c_by_hand():
    # Restyle-like: one group, one response per style; cosines 1, 0.6, 0 with the ground truth "cat".
    emb = VectorEmbedder({"cat": [1.0, 0.0], "kitten": unit_with_cosine(np.float32(0.6)), "dog": [0.0, 1.0]})
    texts = {"candy": "cat", "mosaic": "kitten", "udnie": "dog"}
    rows = [resp("g", s, t, size=3, kinds=(("style", s),)) for s, t in texts.items()]
    b = metrics.score(rows, emb, n_resamples=0).breakdown["style"]
    c = float(np.float32(0.6))
    s_kitten_dog = float(unit_with_cosine(np.float32(0.6))[1])  # cos(kitten, dog)
    assert {s: v["s_gt"] for s, v in b.items()} == pytest.approx({"candy": 100.0, "mosaic": 100 * c, "udnie": 0.0})
    # Each style is in two of the three pairs: candy (cat-kitten c, cat-dog 0) ...
    assert {s: v["s_c"] for s, v in b.items()} == pytest.approx(
        {"candy": 50 * c, "mosaic": 50 * (c + s_kitten_dog), "udnie": 50 * s_kitten_dog}
    )
    assert {s: v["con"] for s, v in b.items()} == {"candy": 0.0, "mosaic": 50.0, "udnie": 50.0}  # 0.8 > 0.7
    assert {s: v["pairs"] for s, v in b.items()} == {"candy": 2, "mosaic": 2, "udnie": 2}


# --------------------------------------------------------------------------- confidence intervals


def two_response_groups(n: int, seed: int) -> tuple[list[ScoredResponse], dict[str, np.ndarray]]:
    """n groups of two responses, each "cat" (right, cosine 1 with the ground truth) or "dog" (wrong,
    cosine 0), and each group's Acc, S_GT, Con and S_C worked out by hand, in group-id order."""
    rng = np.random.default_rng(seed)
    rows, values = [], {m: [] for m in metrics.HEADLINE}
    for i in range(n):
        a, b = rng.choice(["cat", "dog"], size=2)
        rows += [resp(f"g{i:03d}", "r1", str(a), size=2), resp(f"g{i:03d}", "r2", str(b), size=2)]
        right = ((a == "cat") + (b == "cat")) / 2
        same = float(a == b)
        for m, v in zip(metrics.HEADLINE, (right, right, same, same), strict=True):
            values[m].append(v)
    return rows, {m: np.array(v) for m, v in values.items()}


def test_bootstrap_intervals_are_the_95_percent_percentiles_of_the_resampled_group_means():
    rows, per_group = two_response_groups(30, seed=5)
    r = metrics.score(rows, VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0]}))
    n = len(per_group["acc"])
    rng = np.random.default_rng(0)  # the documented seed; Acc and S_GT share one draw, Con and S_C the next
    expected = {}
    for pair in (("acc", "s_gt"), ("con", "s_c")):
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=1000) / n
        for m in pair:
            expected[m] = list(np.percentile(100 * weights @ per_group[m], [2.5, 97.5]))
    for m in metrics.HEADLINE:
        assert getattr(r, m) == pytest.approx(100 * per_group[m].mean())
        assert r.ci[m] == pytest.approx(expected[m], abs=1e-9), m
        assert r.ci[m][1] - r.ci[m][0] > 10  # not a degenerate interval that any level would give


def binomial_quantile(n: int, q: float) -> int:
    """Smallest k with P(Binomial(n, 1/2) <= k) >= q."""
    total = 0
    for k in range(n + 1):
        total += math.comb(n, k)
        if total / 2**n >= q:
            return k
    return n


def test_bootstrap_interval_level_is_95_percent_analytically():
    # 400 single-response groups, half right: a resample's Acc is Binomial(400, 1/2) / 400, whose
    # 2.5% and 97.5% quantiles are 45 and 55. With 1,000 resamples the percentiles sit within a few
    # tenths of a point of those; a 90% interval would be [45.9, 54.1], a 50% one [48.4, 51.6].
    rows = [resp(f"g{i:03d}", "r1", "cat" if i % 2 else "dog", size=1) for i in range(400)]
    r = metrics.score(rows, VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0]}))
    lo, hi = (100 * binomial_quantile(400, q) / 400 for q in (0.025, 0.975))
    assert (lo, hi) == (45.0, 55.0)
    assert r.acc == 50.0
    assert r.ci["acc"] == pytest.approx([lo, hi], abs=0.5)


def test_paired_bootstrap_interval_level_is_95_percent_analytically():
    # Differences of 0 or 10 points on 400 shared groups, half each: a resample's mean difference is
    # 10 * Binomial(400, 1/2) / 400, so the 95% interval is about [4.5, 5.5] (a 50% one: [4.84, 5.16]).
    a = {f"g{i:03d}": 50.0 for i in range(400)}
    b = {g: 50.0 + (10.0 if i % 2 else 0.0) for i, g in enumerate(a)}
    d = metrics.paired_bootstrap(a, b)
    lo, hi = (10 * binomial_quantile(400, q) / 400 for q in (0.025, 0.975))
    assert d.delta == 5.0 and (lo, hi) == (4.5, 5.5)
    assert d.ci == pytest.approx([lo, hi], abs=0.05)


# ------------------------------------------------------------------ survivors of the mutation run


def test_breakdown_orders_kinds_numbers_first_by_value_then_names_and_counts_responses():
    emb = TableEmbedder({"cat": [1, 0], "dog": [0, 1]})
    kinds = ["10", "2", "b", "a", "2"]  # as strings, "10" < "2" and "a" < "b" < digits would be wrong
    rows = [resp("g1", f"v{i}", "cat", kinds=(("mask_kind", k),), size=5) for i, k in enumerate(kinds)]
    b = metrics.score(rows, emb, n_resamples=0).breakdown["mask_kind"]
    assert list(b) == ["2", "10", "a", "b"]
    assert {k: v["responses"] for k, v in b.items()} == {"2": 2, "10": 1, "a": 1, "b": 1}
    # pairs of 5 responses: 10; each pair with a "2" member: 4 + 4 - 1 = 7
    assert {k: v["pairs"] for k, v in b.items()} == {"2": 7, "10": 4, "a": 4, "b": 4}


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("it is an apple", "it apple"),  # " an " goes, as " a " does
        ("  owl", " owl"),  # one leading space is removed, no more
        ("AN OWL AND AN EMU", "an owl and emu"),  # lower-cased before the removals
    ],
)
def test_clean_context_answer_removes_an_and_one_leading_space(raw, cleaned):
    assert clean_context_answer(raw) == cleaned


def test_one_resample_still_gives_intervals_and_zero_gives_none_per_metric():
    emb = TableEmbedder({"cat": [1, 0], "dog": [0, 1]})
    rows = [resp(f"g{i}", f"r{j}", "cat" if (i + j) % 2 else "dog") for i in range(4) for j in range(1, 4)]
    one = metrics.score(rows, emb, n_resamples=1)
    assert set(one.ci) == set(metrics.HEADLINE) and all(len(one.ci[m]) == 2 for m in metrics.HEADLINE)
    none = metrics.score(rows, emb, n_resamples=0)
    assert none.ci == {m: None for m in metrics.HEADLINE}
    assert none.as_dict()["threshold"] == metrics.CONSISTENCY_THRESHOLD
    assert none.as_dict()["ci95"] == {m: None for m in metrics.HEADLINE}


def test_paired_bootstrap_gives_both_means_and_an_interval_from_one_resample():
    a = {"g1": 10.0, "g2": 20.0, "g3": None}
    b = {"g1": 40.0, "g2": 50.0, "g4": 1.0}
    d = metrics.paired_bootstrap(a, b, n_resamples=1)
    assert (d.mean_a, d.mean_b, d.delta) == (15.0, 45.0, 30.0)
    assert d.ci == [30.0, 30.0]  # every group's difference is 30: any draw gives 30
    assert (d.shared, d.only_a, d.only_b) == (2, 0, 1)
    assert metrics.paired_bootstrap(a, b, n_resamples=0).ci is None


# --------------------------------------------------------------------------- edges of the arithmetic


def test_cosines_are_clipped_to_minus_one():
    # [0.1, 0.2, 0.7] normalised in float32 has a dot product 1.0000001 with itself, so with its
    # negation -1.0000001: clipped, both S_C and S_GT are exactly -100.
    v = np.array([0.1, 0.2, 0.7], dtype=np.float32)
    unit = v / np.linalg.norm(v)
    assert np.float32(unit @ -unit) < -1
    emb = VectorEmbedder({"x": v, "y": -v})
    rows = [resp("g", "r1", "x", ["y"], size=2), resp("g", "r2", "y", ["x"], size=2)]
    r = metrics.score(rows, emb, n_resamples=0)
    assert (r.s_c, r.s_gt, r.con) == (-100.0, -100.0, 0.0)


def test_a_zero_vector_has_cosine_zero_with_everything_and_warns_nothing():
    emb = VectorEmbedder({"void": [0.0, 0.0], "cat": [1.0, 0.0]})
    rows = [resp("g", "r1", "void", ["cat"], size=2), resp("g", "r2", "cat", ["cat"], size=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in divide"
        r = metrics.score(rows, emb, n_resamples=0)
    assert (r.s_c, r.s_gt, r.con, r.acc) == (0.0, 50.0, 0.0, 50.0)


def test_groups_without_pairs_warn_nothing():
    # The pair metrics' per-group means divide by a group's pair count, which is 0 here.
    emb = VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    rows = [resp("g", "r1", "cat", size=1), resp("h", "r1", "dog", size=1), resp("k", "r1", "cat", size=2)]
    rows.append(resp("k", "r2", "dog", size=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = metrics.score(rows, emb, n_resamples=10)
        groups = metrics.group_scores(rows, emb)
    assert (r.con, r.s_c, r.acc) == (0.0, 0.0, 50.0)
    assert [(g.con, g.s_c) for g in groups.values()] == [(None, None), (None, None), (0.0, 0.0)]


def test_an_embedder_that_returns_too_few_vectors_is_named():
    class Short:
        def encode(self, texts):
            return np.ones((len(texts) - 1, 3), dtype=np.float32)

    rows = [resp("g", "r1", "cat", ["dog"], size=2), resp("g", "r2", "cat", ["dog"], size=2)]
    with pytest.raises(ValueError, match=r"^embedder returned 1 vectors for 2 texts$"):
        metrics.score(rows, Short(), n_resamples=0)


def test_no_responses_score_none_and_zero_counts():
    r = metrics.score([], VectorEmbedder({}), n_resamples=100)
    assert r.as_dict()["acc"] is None and r.con is None and r.ci == {m: None for m in metrics.HEADLINE}
    assert set(r.counts.values()) == {0}
    assert metrics.group_details([], VectorEmbedder({})) == {}


def test_none_among_the_ground_truths_is_ignored():
    emb = VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    rows = [resp("g", "r1", "cat", [None, "cat"], size=2), resp("g", "r2", "dog", [None, "cat"], size=2)]
    r = metrics.score(rows, emb, n_resamples=0)
    assert (r.acc, r.s_gt) == (50.0, 50.0)


def test_group_details_give_each_groups_ids_correctness_and_cosine_matrix():
    # Not cleaned by default: "there is a cat" is embedded as it is (the table has no "a cat").
    f32 = np.float32
    emb = VectorEmbedder({"cat": [1.0, 0.0], "dog": [0.0, 1.0], "there is a cat": unit_with_cosine(f32(0.6))})
    rows = [resp("g", "r1", "cat"), resp("g", "r2", "dog"), resp("g", "r3", "there is a cat")]
    rows += [resp("h", "r1", "dog", size=2), resp("h", "r2", "", size=2)]
    details = metrics.group_details(reversed(rows), emb)
    assert list(details) == ["g", "h"]
    g, h = details["g"], details["h"]
    assert (g.ids, g.correct) == (("g/r1", "g/r2", "g/r3"), (True, False, True))
    assert (h.ids, h.correct) == (("h/r1", "h/r2"), (False, False))
    c6, c8 = float(f32(0.6)), float(unit_with_cosine(f32(0.6))[1])
    expected = np.array([[np.nan, 0.0, c6], [0.0, np.nan, c8], [c6, c8, np.nan]])
    assert g.cosines.dtype == np.float64
    np.testing.assert_array_equal(g.cosines, expected)  # NaN where expected has NaN, equal elsewhere
    np.testing.assert_array_equal(h.cosines, [[np.nan, 0.0], [0.0, np.nan]])  # an empty response: 0
    assert g.scores.acc == pytest.approx(200 / 3) and g.scores.con == pytest.approx(100 / 3)
    assert g.scores.s_c == pytest.approx(100 * (c6 + c8) / 3) and g.scores.responses == 3
    assert (h.scores.con, h.scores.s_c, h.scores.responses) == (0.0, 0.0, 2)
