"""The scoring core against numbers computed by hand (docs/metrics.md has the same examples)."""

from __future__ import annotations

import random

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
