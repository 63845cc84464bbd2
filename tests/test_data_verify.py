"""The data a run scores is the data that was built: every load checks the shards against the
folder's manifest.json, `mmr3 info --verify` checks their sha256 too, and `data_fingerprint`
follows the rows actually scored."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from mmr3_tasks import cli, data, hooks
from mmr3_tasks.builder import pipeline
from tests import mmr3_rows

SHARD = "context/test-00000-of-00001.parquet"


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    """The bundled demo set copied as a data folder: its own manifest (kind mmr3-demo) included."""
    root = tmp_path / "data"
    shutil.copytree(data.DEMO_DIR, root)
    return root


def damage(root: Path, how: str) -> str:
    """Damages the context test shard of a demo copy; returns the start of the problem it causes."""
    shard = root / SHARD
    if how == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
        return f"TRUNCATED shard {SHARD}: its parquet footer does not read"
    if how == "missing":
        shard.unlink()
        return f"MISSING shard {SHARD} (manifest.json lists it with 90 rows)"
    if how == "extra":
        shutil.copy(root / "context" / "train-00000-of-00001.parquet", root / "context" / "test-00001-of-00001.parquet")
        return "EXTRA shard context/test-00001-of-00001.parquet: not in manifest.json"
    if how == "resized":  # the same rows written again uncompressed: only the size tells
        pq.write_table(pq.read_table(shard), shard, compression="none", row_group_size=100)
        return f"CHANGED shard {SHARD}: {shard.stat().st_size:,} bytes, manifest.json lists 1,397,561"
    raise ValueError(how)


DAMAGES = ["truncated", "missing", "extra", "resized"]


def locator(task: str, protocol: str = "all") -> datasets.Dataset:
    return datasets.Dataset.from_list([{"mmr3_task": task, "data": "benchmark", "protocol": protocol}])


def build_manifest(root: Path, sizes: bool = True) -> None:
    """A `mmr3 build`-style manifest.json for the shards in `root` (bytes left out: an older build)."""
    tasks: dict = {}
    for path in sorted(root.glob("*/*.parquet")):
        task, split = path.parent.name, path.name.split("-")[0]
        shard = {
            "file": path.relative_to(root).as_posix(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": pq.read_metadata(path).num_rows,
        }
        if sizes:
            shard["bytes"] = path.stat().st_size
        tasks.setdefault(task, {}).setdefault(split, {"shards": []})["shards"].append(shard)
    manifest = {"kind": data.BUILD_KIND, "format_version": pipeline.FORMAT_VERSION, "tasks": tasks}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def three_shard_build(root: Path, sizes: bool = True) -> None:
    """context/test in 3 shards of 2 groups each, with its manifest, config and resume state."""
    for k in range(3):
        rows = [r for g in (2 * k, 2 * k + 1) for r in mmr3_rows.group("context", f"g{g}", ["cat"])]
        path = root / "context" / f"test-{k:05d}-of-00003.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        mmr3_rows.dataset(rows).to_parquet(str(path))
    build_manifest(root, sizes)
    (root / data.BUILD_CONFIG).write_text("{}\n")
    (root / data.BUILD_STATE_DIR).mkdir()


# --------------------------------------------------------------------------- verify_split


def test_the_names_data_reads_are_the_ones_the_builder_writes():
    assert data.MANIFEST == pipeline.MANIFEST and data.BUILD_CONFIG == pipeline.CONFIG
    assert data.BUILD_STATE_DIR == pipeline.STATE_DIR
    assert pipeline._load_manifest(Path("/nonexistent"))["kind"] == data.BUILD_KIND


def test_the_bundled_demo_set_verifies_in_full():
    for task, split in [(t, s) for t in ("rephrase", "restyle", "context") for s in data.DEMO_SPLITS]:
        check = data.verify_split(data.DEMO_DIR, task, split, full=True)
        assert check.ok and check.compared == "bytes, rows, sha256", (task, split, check.problems)
    manifest = json.loads((data.DEMO_DIR / "manifest.json").read_text())
    for splits in manifest["tasks"].values():
        for entry in splits.values():  # every shard's size is listed, and it is the file's
            assert entry["bytes"] == (data.DEMO_DIR / entry["file"]).stat().st_size


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_shard_is_named(demo_copy, how):
    problem = damage(demo_copy, how)
    check = data.verify_split(demo_copy, "context", "test")
    assert len(check.problems) == 1 and check.problems[0].startswith(problem), check.problems
    assert data.verify_split(demo_copy, "context", "train").ok  # the other split is not blamed
    with pytest.raises(data.DataIntegrityError) as err:
        data.load_split("context", location=str(demo_copy))
    message = str(err.value)
    assert "\n" not in message and problem in message
    assert f"Fix: copy the demo set again from {data.DEMO_DIR}" in message or "delete or move" in message


def test_a_good_build_loads_and_says_what_was_checked(tmp_path):
    three_shard_build(tmp_path)
    check = data.verify_split(tmp_path, "context", "test")
    assert check.ok and check.status() == "3 shards, 18 rows, verified against manifest.json (bytes, rows)"
    assert len(data.load_split("context", location=str(tmp_path))) == 18


def test_a_missing_shard_of_a_build_names_it_and_the_rebuild(tmp_path):
    three_shard_build(tmp_path)
    (tmp_path / "context" / "test-00001-of-00003.parquet").unlink()
    check = data.verify_split(tmp_path, "context", "test")
    assert check.status() == "MISSING shard context/test-00001-of-00003.parquet (manifest.json lists it with 6 rows)"
    with pytest.raises(data.DataIntegrityError) as err:
        data.load_split("context", location=str(tmp_path))
    rebuild = f"rerun `mmr3 build --config {tmp_path / 'build_config.json'} --out {tmp_path}`"
    assert f"{rebuild} (it renders only the missing or changed shards again)" in str(err.value)
    # Without the resume state every shard is rendered again; without the config, the original command.
    (tmp_path / data.BUILD_STATE_DIR).rmdir()
    (tmp_path / data.BUILD_CONFIG).unlink()
    assert data.rebuild_advice(tmp_path) == (
        f"rerun the `mmr3 build --out {tmp_path} ...` command that made it "
        "(without its resume state .mmr3-build/ it renders every shard again)"
    )


def test_rows_are_read_off_the_footer_and_compared(tmp_path):
    three_shard_build(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["tasks"]["context"]["test"]["shards"][2]["rows"] = 9
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    check = data.verify_split(tmp_path, "context", "test")
    assert check.problems == ["CHANGED shard context/test-00002-of-00003.parquet: 6 rows, manifest.json lists 9"]


def test_only_the_full_check_reads_the_sha256(tmp_path):
    three_shard_build(tmp_path)
    path = tmp_path / "context" / "test-00000-of-00003.parquet"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside an image: same size, same footer
    path.write_bytes(bytes(raw))
    assert data.verify_split(tmp_path, "context", "test").ok
    full = data.verify_split(tmp_path, "context", "test", full=True)
    assert full.problems == [
        "CHANGED shard context/test-00000-of-00003.parquet: its sha256 is not the one manifest.json lists"
    ]


def test_a_manifest_without_sizes_is_checked_on_presence_and_rows(tmp_path):
    three_shard_build(tmp_path, sizes=False)
    path = tmp_path / "context" / "test-00000-of-00003.parquet"
    pq.write_table(pq.read_table(path), path, compression="none")  # other size, same rows
    check = data.verify_split(tmp_path, "context", "test")
    assert check.ok and check.compared == "rows; this manifest.json predates shard sizes"
    path.write_bytes(path.read_bytes()[:-100])
    assert (
        data.verify_split(tmp_path, "context", "test")
        .problems[0]
        .startswith("TRUNCATED shard context/test-00000-of-00003.parquet")
    )


def test_a_split_the_manifest_does_not_list_is_refused(tmp_path):
    three_shard_build(tmp_path)
    mmr3_rows.write_build(tmp_path, "context", mmr3_rows.group("context", "t1", ["dog"]), split="train")
    check = data.verify_split(tmp_path, "context", "train")
    assert check.problems == [
        "UNLISTED split: 1 shard(s) in context/ but manifest.json has no context/train entry "
        "(a build that stopped before finishing this split?)"
    ]
    assert "rerun `mmr3 build --config" in check.message()
    assert data.verify_split(tmp_path, "restyle", "test").status() == "missing"  # neither built nor listed


def test_an_unreadable_manifest_stops_the_load(tmp_path):
    three_shard_build(tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "mmr3-benchmark", ')
    with pytest.raises(data.DataIntegrityError, match="UNREADABLE manifest.json: not valid JSON"):
        data.load_split("context", location=str(tmp_path))


def test_a_folder_without_a_manifest_has_its_footers_read(tmp_path):
    mmr3_rows.write_build(tmp_path, "context", mmr3_rows.group("context", "g1", ["cat"]))
    check = data.verify_split(tmp_path, "context", "test")
    assert check.ok and check.status() == "1 shard, 3 rows, parquet footers read (no manifest.json to verify against)"
    path = tmp_path / SHARD
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(data.DataIntegrityError) as err:
        data.load_split("context", location=str(tmp_path))
    assert f"has a damaged shard: TRUNCATED shard {SHARD}" in str(err.value)


def _edit_manifest(root: Path, edit) -> None:
    path = root / "manifest.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@pytest.mark.parametrize(
    "edit, problem",
    [
        # Each used to turn verification off (and keep the fingerprint), or crash the loader.
        (lambda m: {}, "UNKNOWN manifest.json: not an mmr3 build manifest (kind None;"),
        (lambda m: [m], "UNKNOWN manifest.json: not an mmr3 build manifest (a JSON list;"),
        (lambda m: {**m, "kind": "x"}, "UNKNOWN manifest.json: not an mmr3 build manifest (kind 'x';"),
        (lambda m: {**m, "tasks": [1]}, "MALFORMED manifest.json: 'tasks' is list, not a mapping"),
        (lambda m: {**m, "tasks": {**m["tasks"], "context": 5}}, "tasks.context is int, not a mapping"),
        (
            lambda m: {**m, "tasks": {**m["tasks"], "context": {**m["tasks"]["context"], "test": {"shards": 5}}}},
            "tasks.context.test.shards is int, not a list",
        ),
        (
            lambda m: {**m, "tasks": {**m["tasks"], "context": {"test": {"shards": [{**m_shard(m), "rows": "30"}]}}}},
            "tasks.context.test.shards[0].rows is '30' (str), not int",
        ),
        (
            lambda m: {**m, "tasks": {**m["tasks"], "context": {"test": {"shards": [{**m_shard(m), "bytes": "1"}]}}}},
            "tasks.context.test.shards[0].bytes is '1' (str), not int",
        ),
    ],
    ids=["empty", "a-list", "other-kind", "tasks-a-list", "task-a-number", "shards-a-number", "rows-a-string",
         "bytes-a-string"],
)  # fmt: skip
def test_a_manifest_of_another_kind_or_shape_stops_the_load(tmp_path, edit, problem):
    three_shard_build(tmp_path)
    _edit_manifest(tmp_path, edit)
    check = data.verify_split(tmp_path, "context", "test")
    assert not check.ok and problem in check.problems[0], check.problems
    with pytest.raises(data.DataIntegrityError, match=re.escape(problem)):
        data.load_split("context", location=str(tmp_path))


def m_shard(manifest: dict) -> dict:
    return manifest["tasks"]["context"]["test"]["shards"][0]


def test_a_data_location_that_is_a_file_says_so(tmp_path, monkeypatch):
    path = tmp_path / "answers.jsonl"
    path.write_text("{}")
    monkeypatch.setenv(data.DATA_ENV, str(path))
    with pytest.raises(data.DataNotFoundError, match=re.escape(f"{path} [from $MMR3_DATA] is a file, not a build")):
        data.load_split("context")
    monkeypatch.setenv(data.DATA_ENV, "  ")
    assert data.data_origin() == "the default ($MMR3_DATA is set but blank)"


def test_a_shard_whose_pages_do_not_read_is_named_not_a_pyarrow_traceback(demo_copy):
    """Same size, same footer (the cheap check passes), but a page header overwritten."""
    path = demo_copy / SHARD
    raw = bytearray(path.read_bytes())
    raw[4:60] = b"\xff" * 56  # the first column chunk's page header
    path.write_bytes(bytes(raw))
    assert data.verify_split(demo_copy, "context", "test").ok
    with pytest.raises(data.DataIntegrityError, match=f"UNREADABLE shard {SHARD}: Couldn't deserialize thrift"):
        data.load_split("context", location=str(demo_copy))


def test_a_shard_whose_text_is_not_utf8_is_named_when_it_loads(tmp_path):
    """Pages that read, but hold text that is not UTF-8: refused at load, not when lmms-eval reads a row."""
    import pyarrow as pa

    table = pq.read_table(data.DEMO_DIR / SHARD)
    questions = table.column("question").combine_chunks()
    raw = bytearray(questions.buffers()[2].to_pybytes())
    raw[0] = 0xFF  # never valid in UTF-8
    bad = pa.Array.from_buffers(pa.string(), len(questions), [None, questions.buffers()[1], pa.py_buffer(bytes(raw))])
    shard = tmp_path / SHARD
    shard.parent.mkdir(parents=True)
    pq.write_table(table.set_column(table.schema.get_field_index("question"), "question", bad), shard)
    with pytest.raises(data.DataIntegrityError, match=f"UNREADABLE shard {SHARD}: .*(UTF|utf)"):
        data.load_split("context", location=str(tmp_path))


# --------------------------------------------------------------------------- lmms-eval hooks


@pytest.mark.parametrize("how", DAMAGES)
def test_load_docs_stops_on_damaged_data_with_a_message(demo_copy, monkeypatch, how):
    problem = damage(demo_copy, how)
    monkeypatch.setenv(data.DATA_ENV, str(demo_copy))
    with pytest.raises(hooks.MMR3SetupError) as err:
        hooks.load_docs(locator("context"))
    assert not isinstance(err.value, Exception) and problem in str(err.value.code)


def test_the_fingerprint_follows_the_rows_scored(tmp_path, monkeypatch):
    rows = [r for g in ("g1", "g2", "g3") for r in mmr3_rows.group("context", g, ["cat"])]
    mmr3_rows.write_build(tmp_path, "context", rows)
    build_manifest(tmp_path)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    base = data.fingerprint("benchmark", str(tmp_path))
    assert set(hooks.load_docs(locator("context"))[hooks.DATA_COLUMN]) == {base}  # nothing dropped: the build's

    def fingerprint_without(row_id: str) -> set[str]:
        """The fingerprints of the All and Sampling protocols when `row_id`'s image is unreadable."""
        bad = [{**r, "image": None} if r["id"] == row_id else r for r in rows]
        mmr3_rows.write_build(tmp_path, "context", bad)
        build_manifest(tmp_path)
        prints = {p: set(hooks.load_docs(locator("context", p))[hooks.DATA_COLUMN]) for p in ("all", "sampling")}
        assert prints["all"] == prints["sampling"]  # the same rows kept: the same data, either protocol
        return prints["all"]

    without_g1, without_g2 = fingerprint_without("g1/m2"), fingerprint_without("g2/m2")
    (only_g1,) = without_g1
    assert only_g1.startswith("build:") and only_g1.endswith(
        data.with_kept_rows("", [r["id"] for r in rows if r["id"] != "g1/m2"])
    )
    assert without_g1 != without_g2  # the same build's manifest sha256 alone would not tell them apart


# --------------------------------------------------------------------------- mmr3 info


def test_info_shows_the_cheap_check_per_split(demo_copy, monkeypatch, capsys):
    damage(demo_copy, "missing")
    monkeypatch.setenv(data.DATA_ENV, str(demo_copy))
    assert cli.main(["info"]) == 0  # plain info reports, it does not fail
    out = capsys.readouterr().out
    assert re.search(r"ok  context/train +1 shard, 30 rows, verified against manifest.json \(bytes, rows\)", out)
    assert re.search(rf"BAD context/test +MISSING shard {SHARD}", out)
    assert f"fix: copy the demo set again from {data.DEMO_DIR}" in out


def test_info_verify_checks_the_sha256_and_exits_1_on_any_problem(demo_copy, monkeypatch, capsys):
    monkeypatch.setenv(data.DATA_ENV, str(demo_copy))
    assert cli.main(["info", "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("verified against manifest.json (bytes, rows, sha256)") == 6
    assert "verified: 6 split(s)" in out

    path = demo_copy / "rephrase" / "train-00000-of-00001.parquet"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # only the sha256 sees it
    path.write_bytes(bytes(raw))
    assert cli.main(["info"]) == 0 and "BAD" not in capsys.readouterr().out
    assert cli.main(["info", "--verify"]) == 1
    captured = capsys.readouterr()
    assert re.search(
        r"BAD rephrase/train +CHANGED shard rephrase/train-00000-of-00001.parquet: its sha256", captured.out
    )
    assert captured.err.startswith("mmr3 info: error: 1 problem(s) in rephrase/train of ")
    assert cli.main(["info", "--verify", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [p["split"] for p in report["data_problems"]] == ["rephrase/train"]


def test_info_verify_without_data_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nowhere"))
    assert cli.main(["info", "--verify"]) == 1
    assert "there is none at" in capsys.readouterr().err
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))  # a folder, but nothing built in it
    assert cli.main(["info", "--verify"]) == 1
    assert f"--verify found no MM-R³ data at {tmp_path}" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real lmms-eval command


@pytest.mark.parametrize("how", DAMAGES)
def test_lmms_eval_stops_on_damaged_data_with_our_message_and_exit_1(demo_copy, run_lmms_eval, tmp_path, how):
    """Never a retried traceback, never exit 0 without results (each run takes about 10 s)."""
    problem = damage(demo_copy, how)
    answers = tmp_path / "answers.jsonl"
    answers.write_text("")
    run = run_lmms_eval(
        "--model", "mmr3_replay", "--model_args", f"responses={answers}", "--tasks", "mmr3_context",
        "--limit", "2", env={data.DATA_ENV: str(demo_copy)},
    )  # fmt: skip
    assert run.proc.returncode == 1, run.output[-3000:]
    assert f"mmr3: MM-R³ context data (test split) at {demo_copy} does not match its manifest.json: {problem}" in (
        run.proc.stderr
    )
    assert "Traceback" not in run.output and not list(run.out_dir.rglob("*_results.json"))


def test_a_demo_build_lists_every_shards_size(tmp_path):
    from mmr3_tasks.builder.demo_set import DemoConfig, build_demo
    from mmr3_tasks.builder.styles import StyleModelSpec

    spec = StyleModelSpec(str(tmp_path / "unused"))
    manifest = build_demo(DemoConfig(style_models=spec, out=str(tmp_path), tasks=["rephrase"], splits=["test"]))
    entry = manifest["tasks"]["rephrase"]["test"]
    assert entry["bytes"] == (tmp_path / entry["file"]).stat().st_size
    assert data.verify_split(tmp_path, "rephrase", "test", full=True).compared == "bytes, rows, sha256"
