"""Resuming a build, shard by shard: a rerun renders again exactly the shards that are missing,
damaged or were built with other settings, reuses every other one untouched, and ends with the
bytes of a clean build. Also after a build killed in the middle of a split. And what the resume
rests on, value by value: the items' descriptions and fingerprints, the shard plan and names, each
marker's contents, the skips a reused shard reports again, and the stale shards removed."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmr3_tasks import data, schema
from mmr3_tasks.builder import masks, pipeline, shards
from mmr3_tasks.builder.build_report import SplitReport
from mmr3_tasks.builder.config import BuildConfig, SourceLocations
from mmr3_tasks.builder.images import sha256_file
from mmr3_tasks.builder.render import ContextItem, ImagePolicy, ImageRef, RephraseItem, RestyleItem
from tests import build_fixtures as fx

# Context groups have 3 variants: 3 rows per shard puts every group in a shard of its own.
SIZES = {"context": {"test": 6, "train": 4}}
STATE = Path(pipeline.STATE_DIR)


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume_sources") / "coco"
    fx.make_coco(root, n_val=8, n_train=6)
    return root


def _config(out: Path, coco: Path, **kw) -> BuildConfig:
    return BuildConfig(
        out=str(out),
        tasks=["context"],
        sizes=json.loads(json.dumps(SIZES)),
        sources=SourceLocations(coco=str(coco)),
        shard_rows=3,
        workers=1,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def clean(coco, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resume_clean") / "out"
    pipeline.build(_config(out, coco))
    return out


@pytest.fixture(scope="module")
def other_quality(coco, tmp_path_factory) -> Path:
    """The same groups and shard plan, with another JPEG quality (part of every context shard's fingerprint)."""
    out = tmp_path_factory.mktemp("resume_q80") / "out"
    pipeline.build(_config(out, coco, jpeg_quality=80))
    return out


def _shard_hashes(out: Path, task: str = "context") -> dict[str, str]:
    """sha256 of every shard file of a task, by name: what a byte-for-byte comparison of builds needs."""
    return {p.name: sha256_file(p) for p in sorted((out / task).glob("*.parquet"))}


def _stamp(path: Path) -> tuple[int, int]:
    """A file's inode and mtime: a shard written again (a new file renamed into place) changes both."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _manifest_tasks(out: Path) -> dict:
    return json.loads((out / pipeline.MANIFEST).read_text())["tasks"]


@pytest.fixture
def written(monkeypatch) -> list[str]:
    """The names of the shards the build writes, recorded around the real writer."""
    names: list[str] = []
    real = shards.write_parquet_atomic

    def record(rows, path):
        names.append(Path(path).name)
        return real(rows, path)

    monkeypatch.setattr(shards, "write_parquet_atomic", record)
    return names


def test_resume_renders_again_exactly_the_deleted_damaged_and_stale_shards(
    coco, clean, other_quality, tmp_path, written
):
    work = tmp_path / "work"
    shutil.copytree(clean, work)
    test_shards = sorted((work / "context").glob("test-*.parquet"))
    assert [p.name for p in test_shards] == [f"test-{i:05d}-of-00006.parquet" for i in range(6)]
    deleted, flipped, stale = test_shards[1], test_shards[3], test_shards[4]

    deleted.unlink()
    damaged = bytearray(flipped.read_bytes())
    middle = len(damaged) // 2
    damaged[middle : middle + 8] = bytes(b ^ 0xFF for b in damaged[middle : middle + 8])
    flipped.write_bytes(bytes(damaged))  # same size: only the hash tells it apart
    # A shard, and its marker, from a build with other settings: file and marker agree, the fingerprint does not.
    stale_marker = STATE / "context" / f"{stale.name}.json"
    for rel in (Path("context") / stale.name, stale_marker):
        shutil.copyfile(other_quality / rel, work / rel)
    assert sha256_file(stale) != sha256_file(clean / "context" / stale.name)
    assert (
        json.loads((work / stale_marker).read_text())["fingerprint"]
        != json.loads((clean / stale_marker).read_text())["fingerprint"]
    )

    untouched = [p for p in sorted((work / "context").glob("*.parquet")) if p not in (flipped, stale)]
    stamps = {p.name: _stamp(p) for p in untouched + [flipped, stale]}
    report = pipeline.build(_config(work, coco))

    assert sorted(written) == sorted(p.name for p in (deleted, flipped, stale))
    test, train = report["tasks"]["context"]["test"], report["tasks"]["context"]["train"]
    assert (test["shards"], test["shards_reused"]) == (6, 3)
    assert (train["shards"], train["shards_reused"]) == (4, 4)
    for path in untouched:
        assert _stamp(path) == stamps[path.name], f"{path.name} was written again"
    for path in (flipped, stale):
        assert _stamp(path) != stamps[path.name], f"{path.name} was reused"
    assert _shard_hashes(work) == _shard_hashes(clean)  # every shard, byte for byte, and no other
    assert _manifest_tasks(work) == _manifest_tasks(clean)
    for split in ("test", "train"):
        assert data.verify_split(work, "context", split, full=True).ok


def test_a_setting_in_the_fingerprint_renders_every_shard_again(coco, clean, other_quality, tmp_path, written):
    work = tmp_path / "work"
    shutil.copytree(clean, work)
    report = pipeline.build(_config(work, coco, jpeg_quality=80))
    assert len(written) == 10
    assert {split: r["shards_reused"] for split, r in report["tasks"]["context"].items()} == {"test": 0, "train": 0}
    assert _shard_hashes(work) == _shard_hashes(other_quality) != _shard_hashes(clean)
    assert _manifest_tasks(work) == _manifest_tasks(other_quality)


# --------------------------------------------------------------------------- killed mid-split

RESTYLE_SHARDS = 5


def _restyle_args(out: Path, indoor: Path, styles: Path) -> list[str]:
    """`mmr3 build` of the restyle test split, one group per shard (4 styles, 4 rows)."""
    return [
        "build",
        "--out",
        str(out),
        "--no-progress",
        "--tasks",
        "restyle",
        "--splits",
        "test",
        "--size",
        f"restyle.test={RESTYLE_SHARDS}",
        "--mit-indoor",
        str(indoor),
        "--style-models",
        str(styles),
        "--device",
        "cpu",
        "--shard-rows",
        "4",
        "--workers",
        "1",
    ]


def _slow_without_onnx(test):
    """Without Johnson's ONNX models the style networks are torch checkpoints, and each of the two
    `mmr3 build` processes pays for importing torch: about 30 s instead of 10."""
    return test if fx.STYLE_MODELS.is_dir() else pytest.mark.slow(test)


@_slow_without_onnx
def test_a_build_killed_mid_split_resumes_from_its_finished_shards(tmp_path):
    from mmr3_tasks.builder.cli import config_from_args
    from mmr3_tasks.cli import build_parser

    indoor = tmp_path / "indoor"
    fx.make_mit_indoor(indoor)
    styles = fx.style_dir(tmp_path)
    reference = tmp_path / "clean"
    pipeline.build(config_from_args(build_parser().parse_args(_restyle_args(reference, indoor, styles))))
    assert len(_shard_hashes(reference, "restyle")) == RESTYLE_SHARDS

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "mmr3_tasks.cli", *_restyle_args(out, indoor, styles)]
    markers = out / STATE / "restyle"
    log = tmp_path / "build.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        # A shard is finished once its marker is there (it is written after the shard, both atomically).
        while proc.poll() is None and not list(markers.glob("test-*.json")) and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # does nothing if the build already ended: returncode says so
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    finished = sorted(p.name.removesuffix(".json") for p in markers.glob("test-*.json"))
    assert 1 <= len(finished) < RESTYLE_SHARDS, finished  # killed inside the split, not before, not after
    assert not (out / pipeline.REPORT).exists()
    stamps = {name: _stamp(out / "restyle" / name) for name in finished}

    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / pipeline.REPORT).read_text())["tasks"]["restyle"]["test"]
    assert (report["shards"], report["shards_reused"]) == (RESTYLE_SHARDS, len(finished))
    assert {name: _stamp(out / "restyle" / name) for name in finished} == stamps  # reused, not written again
    assert not list(out.rglob(".*.tmp"))
    assert _shard_hashes(out, "restyle") == _shard_hashes(reference, "restyle")
    assert _manifest_tasks(out) == _manifest_tasks(reference)
    assert data.verify_split(out, "restyle", "test", full=True).ok


# --------------------------------------------------------------------------- one split's shards, value by value

RENDER_SETTINGS = {"task": "context", "seed": 3, "image_policy": "as is"}


def test_describe_is_what_shapes_the_rows_of_each_kind_of_item():
    ref = ImageRef("val2014/COCO_val2014_000000000010.jpg", path="/nowhere/10.jpg")
    rephrase = RephraseItem("okvqa-1", "okvqa", "1", ref, "What is it?", ("dogs", "dog"), "CC", "x", ["A?", "B?", "C?"])
    assert shards.describe(rephrase) == {
        "group_id": "okvqa-1",
        "image": "val2014/COCO_val2014_000000000010.jpg",
        "answers": ["dogs", "dog"],
        "question": "What is it?",
        "rephrasings": ["A?", "B?", "C?"],
    }
    context = shards.describe(ContextItem("coco-7", "coco", "7", ref, (1, 2, 30, 40), ["car"], "CC", "x"))
    assert context == {"group_id": "coco-7", "image": ref.key, "answers": ["car"], "box": [1.0, 2.0, 30.0, 40.0]}
    assert [type(v) for v in context["box"]] == [float] * 4  # the same fingerprint for an int or a float box
    restyle = RestyleItem("gldv2-abc", "gldv2", "abc", ref, ("Tabán",), "CC", "x")
    assert shards.describe(restyle) == {"group_id": "gldv2-abc", "image": ref.key, "answers": ["Tabán"]}


def test_a_fingerprint_is_the_sha256_of_the_sorted_utf8_json():
    value = {"b": ["Tabán", 1.0], "a": {"z": 1, "y": None}}
    text = '{"a": {"y": null, "z": 1}, "b": ["Tabán", 1.0]}'
    assert shards.fingerprint(value) == hashlib.sha256(text.encode()).hexdigest()
    assert shards.fingerprint({"a": 1, "b": 2}) == shards.fingerprint({"b": 2, "a": 1})
    assert shards.fingerprint({"a": 1}) != shards.fingerprint({"a": 2})


@pytest.mark.parametrize(
    "task,groups,shard_rows,sizes",
    [
        ("context", 7, 6, [2, 2, 2, 1]),  # 3 rows a group: 2 groups a shard
        ("restyle", 5, 11, [2, 2, 1]),  # 4 rows a group: 11 rows hold 2
        ("restyle", 3, 3, [1, 1, 1]),  # a group never splits, however few rows a shard asks for
        ("rephrase", 4, 1000, [4]),
        ("context", 0, 6, []),
    ],
)
def test_plan_shards_fills_each_shard_with_whole_groups(task, groups, shard_rows, sizes):
    items = [f"g{i}" for i in range(groups)]
    plan = shards.plan_shards(items, task, shard_rows)
    assert [len(s) for s in plan] == sizes and [i for s in plan for i in s] == items
    assert shards.shard_name("train", 3, 12) == "train-00003-of-00012.parquet"


def _context_items(root: Path) -> list[ContextItem]:
    """coco-0 ... coco-4; the images of coco-1 and coco-3 are gone by the time they are rendered."""
    fx.save_jpeg(root / "good.jpg", fx.synthetic_image(1))
    return [
        ContextItem(
            f"coco-{i}",
            "coco",
            str(i),
            ImageRef(f"val2017/{i}.jpg", path=str(root / ("gone.jpg" if i % 2 else "good.jpg"))),
            (10.0, 8.0, 50.0, 38.0),
            ["dog"],
            "",
            "",
        )  # fmt: skip
        for i in range(5)
    ]


def _after_selection() -> SplitReport:
    """A split's report as select hands it on: one candidate already skipped."""
    report = SplitReport()
    report.skip("coco", "corrupt image file")
    return report


def _write(
    items: list, out: Path, progress: bool = False, before_write=None, shard_rows: int = 6
) -> tuple[list[dict], SplitReport]:
    """write_split of a context test split: 6 rows a shard (2 groups), seed 3, one thread."""
    config = BuildConfig(out=str(out), tasks=["context"], seed=3, shard_rows=shard_rows, workers=1, progress=progress)
    ctx = shards.TaskContext("context", ImagePolicy(), json.loads(json.dumps(RENDER_SETTINGS)))
    report = _after_selection()
    return shards.write_split(items, "test", ctx, config, report, before_write=before_write), report


NAMES = [f"test-{i:05d}-of-00003.parquet" for i in range(3)]
RENDER_SKIPS = {"coco": {"corrupt image file": 1, "image failed to decode": 2}}


def test_write_split_writes_each_shard_and_its_marker_as_documented(tmp_path, written, caplog, monkeypatch):
    items, out = _context_items(tmp_path), tmp_path / "out"
    threads = set()
    real = shards.render_context

    def render(*args):
        threads.add(threading.get_ident())
        time.sleep(0.02)  # busy long enough that a pool of more threads would hand the next item to another
        return real(*args)

    monkeypatch.setattr(shards, "render_context", render)
    caplog.set_level(logging.INFO, logger=shards.__name__)
    before = []
    markers, report = _write(items, out, before_write=lambda: before.append(list(written)))

    assert written == NAMES and before == [[], NAMES[:1], NAMES[:2]]  # called before each shard is written
    assert len(threads) == 1  # workers=1: one thread renders them all
    gone = tmp_path / "gone.jpg"
    assert [r.getMessage() for r in caplog.records if r.name == shards.__name__] == [
        f"skipping coco-{i}: missing image file {gone}" for i in (1, 3)
    ]
    for k, (name, marker) in enumerate(zip(NAMES, markers, strict=True)):
        path = out / "context" / name
        rows = pq.read_table(path).to_pylist()
        group = f"coco-{2 * k}"  # each shard's first item; its second, if any, lost its image
        shard = [i for i in items if int(i.source_id) in (2 * k, 2 * k + 1)]
        described = [
            {"group_id": i.group_id, "image": i.image.key, "answers": ["dog"], "box": [10.0, 8.0, 50.0, 38.0]}
            for i in shard
        ]
        text = json.dumps(
            {"settings": RENDER_SETTINGS, "split": "test", "items": described}, sort_keys=True, ensure_ascii=False
        )
        expected = {
            "fingerprint": hashlib.sha256(text.encode()).hexdigest(),
            "file": f"context/{name}",
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "rows": 3,
            "groups": 1,
            "images": {r["id"]: hashlib.sha256(r["image"]["bytes"]).hexdigest() for r in rows},
            "skipped": {"coco": {"image failed to decode": 1}} if k < 2 else {},
        }
        assert marker == expected
        marker_file = out / STATE / "context" / f"{name}.json"
        assert marker_file.read_text() == json.dumps(expected, sort_keys=True) + "\n"
        assert [r["id"] for r in rows] == [f"{group}/{v}" for v in schema.CONTEXT_VARIANTS]
        kinds = masks.draw_kinds(3, group)  # the config's seed, not the default 0
        assert [(r["mask_shape"], r["mask_lines"], r["mask_color"]) for r in rows] == [
            (kind.shape, kind.lines, kind.color) for kind in kinds
        ]
    assert (report.shards, report.shards_reused, report.groups, report.rows) == (3, 0, 3, 9)
    assert report.skipped == RENDER_SKIPS


def test_a_rerun_reuses_every_shard_and_counts_its_skips_again(tmp_path, written):
    items, out = _context_items(tmp_path), tmp_path / "out"
    first, _ = _write(items, out)
    stamps = {name: _stamp(out / "context" / name) for name in NAMES}
    written.clear()
    before = []
    markers, report = _write(items, out, before_write=lambda: before.append(1))
    assert written == [] and before == [] and markers == first
    assert {name: _stamp(out / "context" / name) for name in NAMES} == stamps
    assert (report.shards, report.shards_reused, report.groups, report.rows) == (3, 3, 3, 9)
    assert report.skipped == RENDER_SKIPS  # the reused shards' skips, from their markers
    # All five in one shard: its marker counts 2 of one reason, and a rerun counts both again.
    _write(items, tmp_path / "one", shard_rows=15)
    markers, report = _write(items, tmp_path / "one", shard_rows=15)
    assert markers[0]["skipped"] == {"coco": {"image failed to decode": 2}}
    assert (report.shards_reused, report.groups, report.rows, report.skipped) == (1, 3, 9, RENDER_SKIPS)


def test_old_and_broken_markers_and_stale_shards(tmp_path, written):
    items, out = _context_items(tmp_path), tmp_path / "out"
    _write(items, out)
    state = out / STATE / "context"
    old = json.loads((state / f"{NAMES[0]}.json").read_text())
    del old["skipped"]  # a marker written before markers recorded skips
    (state / f"{NAMES[0]}.json").write_text(json.dumps(old))
    (state / f"{NAMES[1]}.json").write_text('{"fingerprint": "cut sh')  # not JSON: redone
    # A shard left from a build with another plan, beside a train shard and a file that is no shard.
    for name in ("test-00003-of-00004.parquet", "train-00000-of-00001.parquet", "test-notes.parquet"):
        shutil.copyfile(out / "context" / NAMES[2], out / "context" / name)
        if "notes" not in name:
            shutil.copyfile(state / f"{NAMES[2]}.json", state / f"{name}.json")
    written.clear()

    markers, report = _write(items, out)
    assert written == [NAMES[1]] and report.shards_reused == 2
    assert markers[0] == old  # reused as it is
    assert report.skipped == {"coco": {"corrupt image file": 1, "image failed to decode": 1}}  # coco-1's is redone
    assert sorted(p.name for p in (out / "context").iterdir()) == sorted(
        [*NAMES, "test-notes.parquet", "train-00000-of-00001.parquet"]
    )
    assert sorted(p.name for p in state.iterdir()) == sorted(
        f"{n}.json" for n in (*NAMES, "train-00000-of-00001.parquet")
    )


@pytest.mark.parametrize(
    "damage",
    [b"\xff\xfe not UTF-8", b"[1, 2]", b'"a string"', b"null", b'{"fingerprint": "%s"}'],
    ids=["not-utf8", "a-list", "a-string", "null", "no-sha256"],
)
def test_a_damaged_marker_is_redone_not_a_crash(tmp_path, written, damage):
    """Whatever is in a marker file, the build redoes that shard and reuses the others."""
    items, out = _context_items(tmp_path), tmp_path / "out"
    first, _ = _write(items, out)
    marker = out / STATE / "context" / f"{NAMES[1]}.json"
    marker.write_bytes(damage.replace(b"%s", first[1]["fingerprint"].encode()))
    written.clear()
    markers, report = _write(items, out)
    assert written == [NAMES[1]] and report.shards_reused == len(NAMES) - 1
    assert markers == first  # the redone shard's marker is the one a clean build writes
    assert json.loads(marker.read_text()) == first[1]


def test_the_render_bar_counts_every_group_written_skipped_or_reused(tmp_path, capsys):
    items, out = _context_items(tmp_path), tmp_path / "out"
    bar = r"context test: render: 100%\|[^|]*\| 5/5 \[[^\]]*(group/s|s/group)\]\n"
    for _ in range(2):  # written, then reused
        _write(items, out, progress=True)
        assert re.fullmatch(bar, capsys.readouterr().err.split("\r")[-1])


def test_rephrase_rows_ask_each_rephrasing_about_the_sources_own_image(tmp_path):
    path = tmp_path / "q.jpg"
    fx.save_jpeg(path, fx.synthetic_image(3))
    items = [
        RephraseItem(
            f"okvqa-{k}",
            "okvqa",
            str(k),
            ImageRef(f"val2014/{k}.jpg", path=str(path)),
            f"What is object {k} here?",
            ["dogs"],
            "",
            "",
            [f"Rephrasing {v} of {k}?" for v in range(3)],
        )  # fmt: skip
        for k in range(2)
    ]
    config = BuildConfig(out=str(tmp_path / "out"), tasks=["rephrase"], shard_rows=6, workers=1, progress=False)
    ctx = shards.TaskContext("rephrase", ImagePolicy(keep_original=True), {"task": "rephrase"})
    markers = shards.write_split(items, "test", ctx, config, SplitReport())  # 3 rows a group: one shard of 2
    rows = pq.read_table(tmp_path / "out" / "rephrase" / "test-00000-of-00001.parquet").to_pylist()
    assert [(r["id"], r["question"], r["original_question"]) for r in rows] == [
        (f"okvqa-{k}/{name}", f"Rephrasing {v} of {k}?", f"What is object {k} here?")
        for k in range(2)
        for v, name in enumerate(schema.REPHRASE_VARIANTS)
    ]
    assert {r["image"]["bytes"] for r in rows} == {path.read_bytes()}  # stored as the source's bytes
    assert (markers[0]["groups"], markers[0]["rows"]) == (2, 6)


@pytest.fixture(scope="module")
def style_models(tmp_path_factory):
    from mmr3_tasks.builder.styles import StyleModelSpec, load_style_models

    folder = fx.style_dir(tmp_path_factory.mktemp("style_models"))
    return load_style_models(StyleModelSpec(str(folder), device="cpu"), batch_size=2)


def test_restyle_renders_in_style_batches_and_skips_an_image_too_small(tmp_path, style_models, capsys):
    items = []
    for k, width in enumerate((64, 30, 64, 56)):  # 30 px is under the style networks' 44
        path = tmp_path / f"{k}.jpg"
        fx.save_jpeg(path, fx.synthetic_image(k, width, 48))
        items.append(RestyleItem(f"gldv2-{k}", "gldv2", str(k), ImageRef(str(k), path=str(path)), ["x"], "", ""))
    config = BuildConfig(
        out=str(tmp_path / "out"), tasks=["restyle"], shard_rows=16, workers=1, style_batch_size=2, progress=True
    )
    ctx = shards.TaskContext("restyle", ImagePolicy(multiple=4), {"task": "restyle"}, style_models)
    report = SplitReport()
    markers = shards.write_split(items, "test", ctx, config, report)
    rows = pq.read_table(tmp_path / "out" / "restyle" / "test-00000-of-00001.parquet").to_pylist()
    assert [r["id"] for r in rows] == [f"gldv2-{k}/{s}" for k in (0, 2, 3) for s in schema.STYLES]
    assert [Image.open(io.BytesIO(r["image"]["bytes"])).size for r in rows[::4]] == [(64, 48), (64, 48), (56, 48)]
    assert report.skipped == {"gldv2": {"image too small for style transfer": 1}} == markers[0]["skipped"]
    assert (report.groups, report.rows, markers[0]["groups"]) == (3, 12, 3)
    bar = capsys.readouterr().err.split("\r")[-1]  # every group counted once, the skipped one too
    assert re.fullmatch(r"restyle test: render: 100%\|[^|]*\| 4/4 \[[^\]]*(group/s|s/group)\]\n", bar), bar
