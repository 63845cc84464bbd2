"""Resuming a build, shard by shard: a rerun renders again exactly the shards that are missing,
damaged or were built with other settings, reuses every other one untouched, and ends with the
bytes of a clean build. Also after a build killed in the middle of a split."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmr3_tasks import data
from mmr3_tasks.builder import pipeline, shards
from mmr3_tasks.builder.config import BuildConfig, SourceLocations
from mmr3_tasks.builder.images import sha256_file
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
