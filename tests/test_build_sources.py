"""Source readers over synthetic copies in each official format, and over local hub-layout folders;
and the selection from their pools: shares, seeded order, split of split-less sources, skipped
images, shortfalls handed on, rephrasings counted, and the messages when a split comes up short."""

from __future__ import annotations

import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_fixtures as fx  # noqa: E402

from mmr3_tasks.builder import labels, sources  # noqa: E402
from mmr3_tasks.builder.build_report import SplitReport  # noqa: E402
from mmr3_tasks.builder.config import BuildConfig  # noqa: E402
from mmr3_tasks.builder.images import BadImageError  # noqa: E402
from mmr3_tasks.builder.render import ContextItem, ImageRef, RephraseItem, RestyleItem  # noqa: E402
from mmr3_tasks.builder.rephrase import GeneratorConfig, ReplyCache  # noqa: E402
from mmr3_tasks.builder.selection import allocate, order_by_image, select, split_candidates  # noqa: E402


def test_okvqa_official_format(tmp_path):
    counts = fx.make_okvqa(tmp_path)
    pool = sources.okvqa(str(tmp_path))
    assert {s: len(v) for s, v in pool.splits.items()} == counts
    assert pool.filtered["question of 10 words or fewer"] == 8
    item = pool.splits["test"][0]
    assert sources.word_count(item.question) > 10
    # Raw answers first, most frequent first, then the processed spellings; no duplicates.
    assert item.answers == ["dogs", "cat", "dog"]
    assert item.prompt_answer == "dogs"
    assert item.image.path.endswith("val2014/COCO_val2014_000000000010.jpg")
    assert set(pool.fingerprint["files"]) == {
        "OpenEnded_mscoco_val2014_questions.json",
        "mscoco_val2014_annotations.json",
        "OpenEnded_mscoco_train2014_questions.json",
        "mscoco_train2014_annotations.json",
    }


def test_infovqa_official_format(tmp_path):
    counts = fx.make_infovqa(tmp_path)
    pool = sources.infovqa(str(tmp_path))
    assert {s: len(v) for s, v in pool.splits.items()} == counts
    assert pool.splits["test"][0].answers == ["42", "forty-two"]  # "42 " de-duplicated
    assert pool.splits["test"][0].source == "infographicvqa"


def test_gldv2_names_are_decoded_and_one_image_per_landmark(tmp_path):
    fx.make_gldv2(tmp_path, n_landmarks=6)
    pool = sources.gldv2(str(tmp_path), seed=0)
    items = pool.splits["any"]
    assert len(items) == 6 and len({i.answers[0] for i in items}) == 6
    names = {i.answers[0] for i in items}
    assert {"Tabán", "Tsim Sha Tsui", "Hammershus", "St. Mary's Church (Gdańsk)"} <= names
    assert pool.skipped["landmark without a category name"] == 1
    church = next(i for i in items if i.answers[0].startswith("St. Mary"))
    assert church.answers == ["St. Mary's Church (Gdańsk)", "St. Mary's Church"]
    assert Path(church.image.path).is_file()
    # The chosen image of a landmark is seeded.
    assert [i.source_id for i in items] == [i.source_id for i in sources.gldv2(str(tmp_path), seed=0).splits["any"]]


@pytest.mark.parametrize(
    "category,expected",
    [
        ("http://commons.wikimedia.org/wiki/Category:Tab%C3%A1n", ["Tabán"]),
        ("https://commons.wikimedia.org/wiki/Category:Tsim_Sha_Tsui", ["Tsim Sha Tsui"]),
        ("Category:Caf%25C3%25A9_de_Flore", ["Café de Flore"]),  # double-encoded
        ("http://commons.wikimedia.org/wiki/Category:Ponte_(Lisboa)", ["Ponte (Lisboa)", "Ponte"]),
        ("http://commons.wikimedia.org/wiki/Category:", []),
    ],
)
def test_landmark_answers(category, expected):
    assert labels.landmark_answers(category) == expected


@pytest.mark.parametrize(
    "label,first",
    [
        ("fastfood_restaurant", "fastfood restaurant"),
        ("kindergarden", "kindergarten"),
        ("stairscase", "staircase"),
        ("some_new_class", "some new class"),
    ],
)
def test_scene_labels_are_readable(label, first):
    answers = labels.scene_answers(label)
    assert answers[0] == first and all(a and "_" not in a for a in answers)


def test_mit_indoor_official_format(tmp_path):
    counts = fx.make_mit_indoor(tmp_path)
    pool = sources.mit_indoor(str(tmp_path))
    assert {s: len(v) for s, v in pool.splits.items()} == counts
    item = pool.splits["test"][0]
    assert item.answers[:2] == ["fastfood restaurant", "fast food restaurant"]
    assert "/" not in item.group_id


def test_coco_one_object_per_image_in_area_range(tmp_path):
    fx.make_coco(tmp_path, n_val=3, n_train=2)
    pool = sources.coco(str(tmp_path), seed=0)
    # good + missing + corrupt images have an eligible object; the image files are checked later.
    assert {s: len(v) for s, v in pool.splits.items()} == {"test": 5, "train": 4}
    assert pool.skipped["annotation without a box inside its image"] == 2
    assert pool.filtered["image without an object of area ratio 0.10-0.25"] == 6  # small, crowd, outside x 2
    item = pool.splits["test"][0]
    assert item.box == (10.0, 8.0, 50.0, 38.0) and item.answers == ["person"]


def test_missing_source_files_are_named(tmp_path):
    with pytest.raises(sources.SourceError, match="OpenEnded_mscoco"):
        sources.okvqa(str(tmp_path))
    with pytest.raises(sources.SourceError, match="train_label_to_category.csv|train.csv"):
        sources.gldv2(str(tmp_path))
    with pytest.raises(sources.SourceError, match="Images"):
        sources.mit_indoor(str(tmp_path))
    with pytest.raises(sources.SourceError, match="instances_"):
        sources.coco(str(tmp_path))


@pytest.mark.parametrize("lenient_pil", [False, True])
def test_validate_image_reasons(tmp_path, monkeypatch, lenient_pil):
    from PIL import ImageFile

    from mmr3_tasks.builder.render import ImageRef

    # lmms-eval turns LOAD_TRUNCATED_IMAGES on process-wide when imported; a cut file must still fail.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient_pil)

    fx.save_jpeg(tmp_path / "ok.jpg", fx.synthetic_image(0))
    fx.write_corrupt(tmp_path / "bad.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    whole = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # passes PIL's verify(), not a decode
    assert sources.validate_image(ImageRef("a", path=str(tmp_path / "ok.jpg"))) is None
    assert sources.validate_image(ImageRef("b", path=str(tmp_path / "bad.jpg"))) == "corrupt image file"
    assert sources.validate_image(ImageRef("t", path=str(tmp_path / "cut.jpg"))) == "corrupt image file"
    assert sources.validate_image(ImageRef("c", path=str(tmp_path / "empty.jpg"))) == "empty image file"
    assert sources.validate_image(ImageRef("d", path=str(tmp_path / "none.jpg"))) == "missing image file"


# --------------------------------------------------------------------------- hub datasets (local folders)


def test_okvqa_hub_layout(tmp_path):
    fx.make_okvqa_hub(tmp_path)
    pool = sources.okvqa(f"hub:{tmp_path}")
    items = pool.splits["test"]
    assert len(items) == 3 and pool.filtered["question of 10 words or fewer"] == 1
    assert items[0].answers == ["tree", "trees"] and items[0].image.key == "coco2014:7"
    assert sources.validate_image(items[0].image) is None and items[0].image.raw()[:3] == b"\xff\xd8\xff"
    assert pool.fingerprint["hub"] == str(tmp_path)


def test_infovqa_hub_layout_ignores_the_unanswered_test_split(tmp_path):
    fx.make_infovqa_hub(tmp_path)
    pool = sources.infovqa(f"hub:{tmp_path}")
    assert list(pool.splits) == ["test"] and len(pool.splits["test"]) == 3
    assert pool.filtered["hub split 'test' (neither train nor validation)"] == 3
    assert pool.splits["test"][0].image.load().size == (64, 128)


def test_coco_hub_layout(tmp_path):
    fx.make_coco_hub(tmp_path)
    pool = sources.coco(f"hub:{tmp_path}", seed=0)
    assert {s: len(v) for s, v in pool.splits.items()} == {"train": 3, "test": 3}
    item = pool.splits["test"][1]
    assert item.answers == ["bicycle"] and item.box == (8.0, 6.0, 60.0, 50.0)


def test_hub_defaults_are_lmms_evals_own_datasets():
    import yaml  # noqa: F401  (lmms-eval's task files are YAML)

    tasks = Path(__import__("lmms_eval").__file__).parent / "tasks"
    okvqa_yaml = (tasks / "ok_vqa" / "_default_template_vqa_yaml").read_text()
    infovqa_yaml = (tasks / "infovqa" / "_default_template_infovqa_yaml").read_text()
    assert f"dataset_path: {sources.OKVQA_HUB}" in okvqa_yaml
    assert f"dataset_path: {sources.INFOVQA_HUB}" in infovqa_yaml
    assert f"dataset_name: {sources.INFOVQA_HUB_CONFIG}" in infovqa_yaml


# --------------------------------------------------------------------------- splitting and sharing


@contextmanager
def _ends_within(seconds: float):
    """Fails the block when it has not returned after `seconds`: a loop that never ends is a bug
    here (these calls take milliseconds), and failing beats hanging the suite."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a loop that does not end")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "target,available,shares,expected",
    [
        (
            1332,
            {"gldv2": 10_000, "mit_indoor": 5_000},
            {"gldv2": 600, "mit_indoor": 732},
            {"gldv2": 600, "mit_indoor": 732},
        ),
        (10, {"a": 30, "b": 10}, None, {"a": 8, "b": 2}),  # by pool size
        (10, {"a": 3, "b": 100}, {"a": 1, "b": 1}, {"a": 3, "b": 7}),  # a runs short: b takes the rest
        (10, {"a": 3, "b": 4}, None, {"a": 3, "b": 4}),  # not enough at all
        (5, {"a": 0, "b": 9}, None, {"a": 0, "b": 5}),
        (3, {"a": 5, "b": 5, "c": 5}, None, {"a": 1, "b": 1, "c": 1}),
        (1, {"a": 1, "b": 2}, None, {"a": 0, "b": 1}),  # the largest remainder wins, not the first name
        (3, {"a": 7, "b": 2}, None, {"a": 2, "b": 1}),  # remainders 1/3 and 2/3: b's, though a is bigger
        (10, {"a": 30, "b": 10}, {"a": 1, "b": 1}, {"a": 5, "b": 5}),  # shares, not sizes
        (5, {"a": 2, "b": 4, "c": 4}, {"b": 1, "c": 3}, {"a": 1, "b": 2, "c": 2}),  # a has no share: by size
        (4, {"a": 0, "b": 5, "c": 5}, {"b": 1, "c": 3}, {"a": 0, "b": 1, "c": 3}),  # an empty source needs none
        # b fills up in the second round (7 + 1 of 8) and c takes what b could not: 6 + 2 + 2.
        (20, {"a": 2, "b": 8, "c": 100}, {"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 8, "c": 10}),
        (2, {"a": 1, "b": 1}, None, {"a": 1, "b": 1}),
        (1, {"a": 3}, None, {"a": 1}),
        (3, {"a": 0}, None, {"a": 0}),  # nothing to share from
        (0, {"a": 5}, None, {"a": 0}),
        (-2, {"a": 5}, None, {"a": 0}),
        (4, {}, None, {}),
    ],
)
def test_allocate(target, available, shares, expected):
    with _ends_within(10):  # a loop that never ends would otherwise hang the suite
        assert allocate(target, available, shares) == expected


def test_split_less_sources_split_by_image_and_disjointly(tmp_path):
    fx.make_gldv2(tmp_path, n_landmarks=60)
    pool = sources.gldv2(str(tmp_path))
    test = split_candidates(pool, "test", 0, 0.25)
    train = split_candidates(pool, "train", 0, 0.25)
    assert len(test) + len(train) == 60 and 5 < len(test) < 30
    assert not {i.image.key for i in test} & {i.image.key for i in train}
    assert split_candidates(pool, "test", 0, 0.25) == test  # stable


def test_order_by_image_keeps_an_images_questions_together(tmp_path):
    fx.make_okvqa(tmp_path, n_val_images=5, per_image=3)
    items = sources.okvqa(str(tmp_path)).splits["test"]
    ordered = order_by_image(items, 0, "t")
    keys = [i.image.key for i in ordered]
    assert sorted(keys) == sorted(i.image.key for i in items)
    assert all(len({*keys[j : j + 3]}) == 1 for j in range(0, len(keys), 3))
    assert ordered == order_by_image(items, 0, "t") and ordered != order_by_image(items, 1, "t")


def _image_order(items: list, seed: int, tag: str) -> list[str]:
    return list(dict.fromkeys(i.image.key for i in order_by_image(items, seed, tag)))


def test_order_by_image_is_the_documented_seeded_shuffle_of_the_images():
    # Images sorted by key, then random.Random("mmr3-order:<seed>:<tag>").shuffle; an image's items
    # keep their input order. Pinned: a change of order changes every build made with the seed.
    items = [
        ContextItem(f"{key}#{q}", "s", key, ImageRef(key), (0.0, 0.0, 1.0, 1.0), ["x"], "", "")
        for key, q in [("img-c", 0), ("img-a", 0), ("img-e", 0), ("img-a", 1), ("img-b", 0), ("img-d", 0)]
    ]
    order = [i.group_id for i in order_by_image(items, 0, "t")]
    assert order == ["img-d#0", "img-b#0", "img-a#0", "img-a#1", "img-e#0", "img-c#0"]
    assert _image_order(items, 1, "t") == ["img-b", "img-a", "img-c", "img-e", "img-d"]
    assert _image_order(items, 0, "u") == ["img-d", "img-b", "img-c", "img-e", "img-a"]
    assert order_by_image([], 0, "t") == []


def test_split_candidates_official_splits_and_the_fraction_boundary(tmp_path):
    items = _items(tmp_path, "x", 6)
    official = sources.SourcePool("x", "context", splits={"test": items[:2], "train": items[2:]})
    assert split_candidates(official, "test", 0, 0.0) is official.splits["test"]  # the fraction plays no part
    assert split_candidates(official, "train", 0, 1.0) is official.splits["train"]
    assert split_candidates(sources.SourcePool("x", "context", splits={"test": items}), "train", 0, 0.5) == []

    pool = sources.SourcePool("x", "context", splits={"any": items})
    fractions = {i.image.key: sources.stable_fraction(3, i.image.key) for i in items}
    edge = sorted(fractions.values())[2]
    # An image at exactly the share goes to train: test takes the images strictly below it.
    assert [i.image.key for i in split_candidates(pool, "test", 3, edge)] == [
        k for k, f in fractions.items() if f < edge
    ]
    assert len(split_candidates(pool, "test", 3, edge)) == 2
    assert [i.image.key for i in split_candidates(pool, "train", 3, edge)] == [
        k for k, f in fractions.items() if f >= edge
    ]
    assert (
        [i.image.key for i in split_candidates(pool, "test", 4, edge)]
        == [i.image.key for i in items if sources.stable_fraction(4, i.image.key) < edge]
        != [i.image.key for i in split_candidates(pool, "test", 3, edge)]
    )  # the seed moves images


# --------------------------------------------------------------------------- select: which groups a split gets


class _FailingFetch:
    """A hub row's image bytes: gone ("lost", BadImageError) or unreadable (OSError)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self) -> bytes:
        if self.kind == "lost":
            raise BadImageError("no bytes in this row")
        raise OSError("I/O error reading the row")


def _items(root: Path, source: str, n: int, bad: dict[int, str] | None = None, task: str = "context") -> list:
    """`n` items of `source`, one image each (key `<source>/<k>.jpg`, group `<source>-<k>`); `bad`
    makes image k "missing", "empty" or "corrupt", or a hub row whose bytes are "lost" or "unreadable"."""
    out = []
    for k in range(n):
        key = f"{source}/{k:02d}.jpg"
        path = root / key
        ref = ImageRef(key, path=str(path))
        kind = (bad or {}).get(k)
        if kind is None:
            fx.save_jpeg(path, fx.synthetic_image(k, 16, 16))
        elif kind == "corrupt":
            fx.write_corrupt(path)
        elif kind == "empty":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        elif kind in ("lost", "unreadable"):
            ref = ImageRef(key, fetch=_FailingFetch(kind))
        group = f"{source}-{k:02d}"
        if task == "restyle":
            out.append(RestyleItem(group, source, key, ref, ["x"], "", ""))
        else:
            out.append(ContextItem(group, source, key, ref, (1.0, 1.0, 8.0, 8.0), ["dog"], "", ""))
    return out


def _pools(task: str = "context", split: str = "test", **items: list) -> dict:
    return {name: sources.SourcePool(name, task, splits={split: its}) for name, its in items.items()}


def _select_config(tmp_path: Path, task: str, test: int, train: int, **kw) -> BuildConfig:
    kw.setdefault("progress", False)
    return BuildConfig(out=str(tmp_path / "out"), tasks=[task], sizes={task: {"test": test, "train": train}}, **kw)


def _select(task: str, split: str, pools: dict, config: BuildConfig, cache=None) -> tuple[list, SplitReport]:
    report = SplitReport()
    with _ends_within(30):
        chosen = select(task, split, pools, config, report, cache)
    return chosen, report


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmr3_tasks.builder.selection"]


def test_a_dry_source_hands_its_shortfall_to_the_source_with_most_left(tmp_path, caplog):
    pools = _pools(
        a=_items(tmp_path, "a", 1, {0: "missing"}),
        b=_items(tmp_path, "b", 6, {1: "corrupt", 2: "corrupt"}),
        c=_items(tmp_path, "c", 4),
    )
    # The seeded orders (tag task:split:source): b 01 05 02 03 04 00, c 03 01 00 02.
    assert [i.image.key for i in order_by_image(pools["b"].splits["test"], 0, "context:test:b")] == [
        f"b/{k}.jpg" for k in ("01", "05", "02", "03", "04", "00")
    ]
    assert [i.image.key for i in order_by_image(pools["c"].splits["test"], 0, "context:test:c")] == [
        f"c/{k}.jpg" for k in ("03", "01", "00", "02")
    ]
    chosen, report = _select("context", "test", pools, _select_config(tmp_path, "context", 6, 0))
    # allocate(6, {a: 1, b: 6, c: 4}) = {a: 1, b: 3, c: 2}. a's only image is missing: a is dry, 1
    # short. b found its 3 in 5 candidates (1 left), c its 2 in 2 (2 left): c, with more left, gets
    # the 1 and takes its next candidate.
    assert [i.group_id for i in chosen] == ["b-05", "b-03", "b-04", "c-03", "c-01", "c-00"]
    assert report.target == 6
    assert report.skipped == {"a": {"missing image file": 1}, "b": {"corrupt image file": 2}}
    assert report.rephrase == {} and _warnings(caplog) == []  # the split is full: no warning


def test_a_source_dry_part_way_hands_on_only_what_it_still_lacks(tmp_path):
    pools = _pools(a=_items(tmp_path, "a", 2, {1: "corrupt"}), b=_items(tmp_path, "b", 10))
    chosen, report = _select("context", "test", pools, _select_config(tmp_path, "context", 9, 0))
    # allocate(9, {a: 2, b: 10}) = {a: 2, b: 7}: a finds 1 of its 2 and lacks 1, which b makes up.
    assert [i.source for i in chosen] == ["a"] + ["b"] * 8
    assert report.skipped == {"a": {"corrupt image file": 1}}


def test_when_every_source_runs_dry_the_split_is_short_and_says_so(tmp_path, caplog):
    pools = _pools(a=_items(tmp_path, "a", 2, {1: "corrupt"}), b=_items(tmp_path, "b", 2))
    chosen, report = _select("context", "test", pools, _select_config(tmp_path, "context", 6, 9))
    assert [i.group_id for i in chosen] == ["a-00", "b-01", "b-00"]
    assert (report.target, report.skipped) == (6, {"a": {"corrupt image file": 1}})
    assert _warnings(caplog) == ["context test: only 3 of 6 groups available"]


def test_the_select_bar_counts_groups_out_of_the_target(tmp_path, capsys):
    pools = _pools(a=_items(tmp_path, "a", 2, {1: "corrupt"}), b=_items(tmp_path, "b", 2))
    _select("context", "test", pools, _select_config(tmp_path, "context", 6, 0, progress=True))
    bar = capsys.readouterr().err.split("\r")[-1]  # the last frame, drawn when the bar closes
    assert re.fullmatch(r"context test: select:  50%\|[^|]*\| 3/6 \[[^\]]*(group/s|s/group)\]\n", bar), bar


def test_restyle_sources_share_the_target_as_in_the_paper(tmp_path):
    pools = _pools(
        "restyle",
        gldv2=_items(tmp_path, "gldv2", 8, task="restyle"),
        mit_indoor=_items(tmp_path, "mit_indoor", 8, task="restyle"),
    )
    chosen, _ = _select("restyle", "test", pools, _select_config(tmp_path, "restyle", 11, 0))
    # 600 : 732 of 11 is 4.95 : 6.05 -> 5 and 6 (by pool size, 8 : 8, it would be 6 and 5).
    assert [i.source for i in chosen] == ["gldv2"] * 5 + ["mit_indoor"] * 6


def test_a_split_less_source_gives_test_the_images_below_the_test_share(tmp_path, caplog):
    items = _items(tmp_path, "x", 16)
    pools = {"x": sources.SourcePool("x", "context", splits={"any": items})}
    config = _select_config(tmp_path, "context", 10, 30, seed=7)  # test share 10 / (10 + 30)
    test, _ = _select("context", "test", pools, config)
    train, _ = _select("context", "train", pools, config)
    below = {i.image.key for i in items if sources.stable_fraction(7, i.image.key) < 0.25}
    assert len(below) == 4 and {i.image.key for i in test} == below
    assert {i.image.key for i in train} == {i.image.key for i in items} - below
    assert _warnings(caplog) == [
        "context test: only 4 of 10 groups available",
        "context train: only 12 of 30 groups available",
    ]


def test_a_split_that_gets_no_group_names_the_commonest_reasons(tmp_path):
    pools = _pools(
        a=_items(tmp_path, "a", 4, {0: "missing", 1: "missing", 2: "missing", 3: "corrupt"}),
        b=_items(tmp_path, "b", 4, {0: "empty", 1: "empty", 2: "unreadable", 3: "lost"}),
    )
    with pytest.raises(sources.SourceError) as err:
        _select("context", "test", pools, _select_config(tmp_path, "context", 20, 0))
    # The 4 commonest, ties in reverse order of name: "1 a: corrupt image file" is left out.
    assert str(err.value) == (
        "context test: none of the 20 groups asked for could be made from the sources (3 a: missing image "
        "file; 2 b: empty image file; 1 b: unreadable image file; 1 b: missing or empty image in the dataset); "
        "check the source folders against docs/data.md#bad-sources"
    )


def test_a_split_without_candidates_says_so_and_an_empty_target_asks_nothing(tmp_path):
    pools = _pools(a=_items(tmp_path, "a", 2, {0: "corrupt"}))  # a test split only: nothing for train
    with pytest.raises(sources.SourceError) as err:
        _select("context", "train", pools, _select_config(tmp_path, "context", 3, 1))
    assert str(err.value) == (
        "context train: none of the 1 groups asked for could be made from the sources (the sources hold no "
        "candidate); check the source folders against docs/data.md#bad-sources"
    )
    chosen, report = _select("context", "test", pools, _select_config(tmp_path, "context", 0, 0))
    assert chosen == [] and (report.target, report.skipped) == (0, {})  # no image even looked at


KEY_ENV = "MMR3_SELECT_TEST_KEY"


def _questions(root: Path, source: str, questions: list[str]) -> list:
    """RephraseItems of `source`, one image and question each (key `<source>/<k>.jpg`)."""
    out = []
    for k, question in enumerate(questions):
        key = f"{source}/{k:02d}.jpg"
        fx.save_jpeg(root / key, fx.synthetic_image(k, 16, 16))
        ref = ImageRef(key, path=str(root / key))
        out.append(RephraseItem(f"{source}-{k:02d}", source, key, ref, question, ["dogs", "dog"], "", ""))
    return out


def _rephrase_pools(root: Path) -> dict:
    # Seeded orders: okvqa 01 03 00 02, infovqa 03 02 00 01. okvqa-01 and infovqa-02 get replies
    # without questions, infovqa-03 one with the same question thrice; okvqa-03's first reply is
    # malformed (and retried).
    q = fx.LONG_Q.format
    return _pools(
        "rephrase",
        okvqa=_questions(root, "okvqa", [q(i=0), q(i="NOQUESTION 1"), q(i=2), q(i="FLAKY 3")]),
        infovqa=_questions(root, "infovqa", [q(i=4), q(i=5), q(i="NOQUESTION 6"), q(i="DUPLICATE 7")]),
    )


def _rephrase_config(tmp_path: Path, server, test: int, **kw) -> BuildConfig:
    generator = GeneratorConfig(model="gpt-test", base_url=server.base_url, api_key_env=KEY_ENV, backoff_s=0.01, **kw)
    return _select_config(tmp_path, "rephrase", test, 0, generator=generator)


def test_rephrase_counts_only_questions_with_usable_rephrasings(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    cache = ReplyCache(tmp_path / "rephrase-cache.jsonl")
    with fx.ChatServer() as server:
        server.faults = {"FLAKY": ["malformed"]}
        config = _rephrase_config(tmp_path, server, 5, concurrency=2)
        chosen, report = _select("rephrase", "test", _rephrase_pools(tmp_path / "a"), config, cache)
        # allocate(5, {infovqa: 4, okvqa: 4}) = {infovqa: 3, okvqa: 2}. The first wave keeps 1 and 1
        # (3 rejected), the second 1 and 1; infovqa, dry, is still 1 short, which okvqa's last makes up.
        assert [i.group_id for i in chosen] == ["infovqa-00", "infovqa-01", "okvqa-03", "okvqa-00", "okvqa-02"]
        rejected = {"duplicate questions": 1, "fewer than 3 questions": 2}
        assert report.rephrase == {"requested": 8, "cached": 0, "accepted": 5, "rejected": rejected, "retries": 1}
        assert report.skipped == {"generator": {f"rephrasing rejected: {r}": n for r, n in rejected.items()}}
        question = fx.LONG_Q.format(i=4).rstrip("?")
        assert chosen[0].rephrasings == [
            f"Could you tell me: {question}?",
            f"Put differently, {question}?",
            f"Asked another way, {question}?",
        ]
        asked = len(server.log)
        # Again from the cache: nothing requested, no generator made (so no retries), the same groups.
        again, report = _select("rephrase", "test", _rephrase_pools(tmp_path / "b"), config, cache)
        assert len(server.log) == asked
    assert [i.group_id for i in again] == [i.group_id for i in chosen]
    assert report.rephrase == {"requested": 0, "cached": 8, "accepted": 5, "rejected": rejected, "retries": 0}


def test_rephrase_without_a_rejection_reports_none(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    pools = _pools("rephrase", okvqa=_questions(tmp_path, "okvqa", [fx.LONG_Q.format(i=i) for i in range(3)]))
    with fx.ChatServer() as server:
        config = _rephrase_config(tmp_path, server, 2)
        chosen, report = _select("rephrase", "test", pools, config, ReplyCache(tmp_path / "cache.jsonl"))
    assert len(chosen) == 2 and report.skipped == {}
    assert report.rephrase == {"requested": 2, "cached": 0, "accepted": 2, "rejected": {}, "retries": 0}


def test_the_generate_bar_counts_the_questions_answered(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    pools = _pools("rephrase", okvqa=_questions(tmp_path, "okvqa", [fx.LONG_Q.format(i=i) for i in range(2)]))
    # One request at a time, each answered after 0.15 s: more than tqdm's 0.1 s between redraws, so
    # the bar is drawn at every answer.
    with fx.ChatServer(latency=0.15) as server:
        config = _rephrase_config(tmp_path, server, 2, concurrency=1)
        config.progress = True
        _select("rephrase", "test", pools, config, ReplyCache(tmp_path / "cache.jsonl"))
    err = capsys.readouterr().err
    frames = re.split(r"[\r\n]", err)
    generate = [f for f in frames if f.startswith("rephrase test: generate:")]
    assert re.match(r"rephrase test: generate: 100%\|[^|]*\| 2/2 \[[^\]]*(q/s|s/q)\]", generate[-1]), frames
    # The generate bar sits under the select bar and is erased when done: no line of the output
    # ends with one of its frames (a bar drawn on the line below is followed by "cursor up", ESC [A).
    assert re.search(r"rephrase test: generate:[^\r\n\x1b]*\n", err) is None, err
    select_bar = [f for f in frames if f.startswith("rephrase test: select:")]
    assert re.match(r"rephrase test: select: 100%\|[^|]*\| 2/2 \[[^\]]*(group/s|s/group)\]$", select_bar[-1]), frames


def test_a_local_rephrasing_model_samples_with_the_builds_seed(tmp_path):
    from mmr3_tasks.builder.rephrase import LocalHF, rephrase_prompt

    model = str(fx.make_tiny_lm(tmp_path / "lm"))
    generator = GeneratorConfig(backend="transformers", model=model, max_tokens=8, temperature=1.0, device="cpu")
    question = fx.LONG_Q.format(i=0)
    pools = _pools("rephrase", okvqa=_questions(tmp_path, "okvqa", [question]))
    cache = ReplyCache(tmp_path / "cache.jsonl")
    config = _select_config(tmp_path, "rephrase", 1, 0, generator=generator, seed=7)
    # The random model's replies are never usable, but the cache keeps what it said.
    with pytest.raises(sources.SourceError, match="rephrasing rejected: fewer than 3 questions"):
        _select("rephrase", "test", pools, config, cache)
    [said] = cache.replies.values()

    def direct(seed: int) -> str:
        replies = {}
        LocalHF(generator, seed).generate([("q", rephrase_prompt(question, "dogs"))], replies.__setitem__)
        return replies["q"]

    assert said == direct(7)
    assert direct(7) != direct(0)  # the seed matters: a build that dropped it would say something else


def test_mit_indoor_answers_are_unambiguous_substrings():
    from collections import Counter

    from mmr3_tasks.builder.labels import MIT_INDOOR_ANSWERS

    assert len(MIT_INDOOR_ANSWERS) == 67
    counts = Counter(a for answers in MIT_INDOOR_ANSWERS.values() for a in set(answers))
    assert [a for a, n in counts.items() if n > 1] == []  # no answer counts for two classes
    for answers in MIT_INDOOR_ANSWERS.values():
        # Acc is a substring test: a short synonym would match inside other words ("lab" in "label").
        assert all(len(a) >= 5 for a in answers[1:]), answers


# --------------------------------------------------------------------------- malformed source files


def _edit_json(path: Path, edit) -> None:
    import json

    content = json.loads(path.read_text())
    path.write_text(json.dumps(edit(content)))


def _drop(key):
    def edit(content):
        del content[key]
        return content

    return edit


def _in_first(key, field, value=None, delete=False):
    def edit(content):
        if delete:
            del content[key][0][field]
        else:
            content[key][0][field] = value
        return content

    return edit


COCO_VAL = "annotations/instances_val2017.json"
OKVQA_Q = "OpenEnded_mscoco_val2014_questions.json"
OKVQA_A = "mscoco_val2014_annotations.json"
INFOVQA = "infographicsVQA_val_v1.0.json"


@pytest.mark.parametrize(
    "make, reader, file, edit, message",
    [
        # Each was a KeyError or TypeError traceback before: the message now names file, key and entry.
        (fx.make_coco, sources.coco, COCO_VAL, _drop("categories"), "instances_val2017.json: no 'categories' list"),
        (fx.make_coco, sources.coco, COCO_VAL, lambda c: {**c, "categories": 5}, "'categories' is 5 (int), not a list"),
        (fx.make_coco, sources.coco, COCO_VAL, _drop("images"), "no 'images' list (its keys are ['annotations', "),
        (fx.make_coco, sources.coco, COCO_VAL, _in_first("images", "width", delete=True), "images[0] lacks the key"),
        (fx.make_coco, sources.coco, COCO_VAL, _in_first("images", "width", 0), "image 1000 has size 0x72"),
        (
            fx.make_coco,
            sources.coco,
            COCO_VAL,
            _in_first("annotations", "image_id", "x"),
            "annotations[0].image_id is 'x' (str), expected a number",
        ),
        (fx.make_coco, sources.coco, COCO_VAL, _in_first("categories", "name", None), "categories[0].name is None"),
        (fx.make_okvqa, sources.okvqa, OKVQA_A, lambda c: c["annotations"], "it is a JSON list"),
        (fx.make_okvqa, sources.okvqa, OKVQA_Q, _in_first("questions", "question", delete=True), "questions[0] lacks"),
        (
            fx.make_okvqa,
            sources.okvqa,
            OKVQA_A,
            _in_first("annotations", "answers", ["dog"]),
            "annotations[0].answers holds a non-object",
        ),
        (fx.make_infovqa, sources.infovqa, INFOVQA, _drop("data"), "infographicsVQA_val_v1.0.json: no 'data' list"),
        (
            fx.make_infovqa,
            sources.infovqa,
            INFOVQA,
            _in_first("data", "image_local_name", delete=True),
            "data[0] lacks the key(s) ['image_local_name']",
        ),
        (fx.make_infovqa, sources.infovqa, INFOVQA, _in_first("data", "answers", "42"), "answers is '42' (str)"),
    ],
    ids=[
        "coco-no-categories",
        "coco-categories-a-number",
        "coco-no-images",
        "coco-image-without-width",
        "coco-image-of-width-0",
        "coco-image-id-a-string",
        "coco-category-without-name",
        "okvqa-annotations-a-list",
        "okvqa-question-without-text",
        "okvqa-answers-not-objects",
        "infovqa-no-data",
        "infovqa-no-image-name",
        "infovqa-answers-a-string",
    ],
)
def test_a_malformed_json_source_names_the_file_and_the_key(tmp_path, make, reader, file, edit, message):
    make(tmp_path)
    _edit_json(tmp_path / file, edit)
    with pytest.raises(sources.SourceError, match=re.escape(message)) as err:
        reader(str(tmp_path))
    assert str(tmp_path / file) in str(err.value) and "re-download it" in str(err.value)


def test_malformed_gldv2_and_mit_indoor_lists_are_named(tmp_path):
    fx.make_gldv2(tmp_path, n_landmarks=3)
    labels_csv = tmp_path / "train_label_to_category.csv"
    labels_csv.write_text("landmark_id,name\n1,Category:Taban\n")
    with pytest.raises(sources.SourceError, match=re.escape(f"{labels_csv} lacks the columns landmark_id,category")):
        sources.gldv2(str(tmp_path))
    labels_csv.write_text("landmark_id,category\n1\n")  # a short line: no category, not a crash
    assert sources.gldv2(str(tmp_path)).skipped["landmark without a category name"] == 7  # all 3x2 + 9999
    (tmp_path / "train.csv").write_bytes(b"id,url,landmark_id\n\xff\xfe,x,1\n")
    with pytest.raises(sources.SourceError, match="train.csv is not UTF-8 text"):
        sources.gldv2(str(tmp_path))
    mit = tmp_path / "mit"
    fx.make_mit_indoor(mit)
    (mit / "TestImages.txt").write_bytes(b"kitchen/\xff.jpg\n")
    with pytest.raises(sources.SourceError, match="TestImages.txt is not UTF-8 text"):
        sources.mit_indoor(str(mit))


def test_a_hub_dataset_without_the_needed_columns_is_named(tmp_path):
    import datasets

    fx.make_okvqa_hub(tmp_path)
    shard = next((tmp_path / "data").glob("*.parquet"))
    datasets.Dataset.from_parquet(str(shard)).remove_columns(["answers"]).to_parquet(str(shard))
    with pytest.raises(sources.SourceError, match=r"split 'val2014' lacks the columns \['answers'\]"):
        sources.okvqa(f"hub:{tmp_path}")


def test_a_coco_box_with_a_non_number_is_a_skipped_annotation(tmp_path):
    fx.make_coco(tmp_path, n_val=3, n_train=2)
    _edit_json(tmp_path / COCO_VAL, _in_first("annotations", "bbox", [None, 8.0, 40.0, 30.0]))
    pool = sources.coco(str(tmp_path), seed=0)
    assert pool.skipped["annotation without a box inside its image"] == 3  # the fixture's 2, and this one


def test_mmr3_build_names_annotations_without_categories_in_one_line(tmp_path, capsys):
    """Through the command: one line naming the file, exit 1, and no build_config.json left behind."""
    from mmr3_tasks.cli import main

    fx.make_coco(tmp_path / "coco")
    _edit_json(tmp_path / "coco" / COCO_VAL, _drop("categories"))
    out = tmp_path / "out"
    code = main(["build", "--out", str(out), "--tasks", "context", "--coco", str(tmp_path / "coco"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert (
        err[0].startswith("mmr3 build: error: ") and f"{tmp_path / 'coco' / COCO_VAL}: no 'categories' list" in err[0]
    )
    assert not (out / "build_config.json").exists()


def test_mmr3_build_with_no_usable_group_fails_naming_why(tmp_path, capsys):
    """Every COCO object of an unknown category: 0 groups is an error (exit 1), not an empty build."""
    from mmr3_tasks.cli import main

    fx.make_coco(tmp_path / "coco")
    for split in ("val", "train"):
        path = tmp_path / "coco" / f"annotations/instances_{split}2017.json"
        _edit_json(path, lambda c: {**c, "annotations": [{**a, "category_id": 999} for a in c["annotations"]]})
    out = tmp_path / "out"
    code = main(["build", "--out", str(out), "--tasks", "context", "--coco", str(tmp_path / "coco"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("mmr3 build: error: context test: none of the"), err
    assert "groups asked for could be made from the sources" in err[-1] and "docs/data.md#bad-sources" in err[-1]
