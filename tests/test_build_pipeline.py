"""The full build on synthetic sources: what the tasks read, the manifest, determinism, resuming
(also after a kill), bad sources counted, the CLI, and the hub upload."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_fixtures as fx  # noqa: E402

from mmr3_tasks import data, schema  # noqa: E402
from mmr3_tasks.builder import pipeline, shards  # noqa: E402
from mmr3_tasks.builder.config import BuildConfig, ConfigError, SourceLocations  # noqa: E402
from mmr3_tasks.builder.images import sha256_bytes, sha256_file  # noqa: E402
from mmr3_tasks.builder.rephrase import GeneratorConfig  # noqa: E402
from mmr3_tasks.builder.styles import StyleModelSpec  # noqa: E402

SIZES = {"rephrase": {"test": 5, "train": 6}, "restyle": {"test": 6, "train": 8}, "context": {"test": 5, "train": 6}}
KEY_ENV = "MMR3_BUILD_TEST_KEY"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("build_sources")
    paths = fx.make_all_sources(root)
    os.environ[KEY_ENV] = "sk-test"
    with fx.ChatServer() as server:
        yield {"root": root, "paths": paths, "server": server, "styles": fx.style_dir(root)}


def _config(env, out: Path, **kw) -> BuildConfig:
    return BuildConfig(
        out=str(out),
        sizes=json.loads(json.dumps(SIZES)),
        sources=SourceLocations(**{k: str(v) for k, v in env["paths"].items()}),
        generator=GeneratorConfig(
            model="gpt-test", base_url=env["server"].base_url, api_key_env=KEY_ENV, concurrency=4, backoff_s=0.01
        ),
        style_models=StyleModelSpec(str(env["styles"]), device="cpu"),
        shard_rows=6,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def built(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "out"
    report = pipeline.build(_config(env, out))
    return out, report


def _rows(out: Path, task: str, split: str) -> datasets.Dataset:
    return data.load_split(task, split, location=str(out))


# --------------------------------------------------------------------------- what the tasks read


@pytest.mark.parametrize("task", schema.TASKS)
@pytest.mark.parametrize("split", ["test", "train"])
def test_build_is_what_the_tasks_read(built, task, split):
    out, _ = built
    ds = _rows(out, task, split)
    check = data.check_rows(ds, task)
    assert len(check.kept) == len(ds) and not check.dropped
    assert ds.features == schema.FEATURES
    variants = schema.VARIANTS[task]
    assert len(ds) == SIZES[task][split] * len(variants)
    assert len(set(ds["id"])) == len(ds)
    rows = ds.remove_columns("image").to_list()
    for start in range(0, len(rows), len(variants)):
        group = rows[start : start + len(variants)]
        assert [r["variant"] for r in group] == list(variants)  # adjacent, in variant_index order
        assert [r["variant_index"] for r in group] == list(range(len(variants)))
        assert {r["group_id"] for r in group} == {group[0]["group_id"]}
        assert all(r["id"] == schema.variant_id(r["group_id"], r["variant"]) for r in group)
        assert all(r["group_size"] == len(variants) and r["answers"] and r["image_license"] for r in group)
        assert len({r["group_id"] for r in rows}) == len(rows) // len(variants)
        if task == "rephrase":
            assert len({r["question"] for r in group}) == 3
            assert all(r["original_question"] and r["original_question"] != r["question"] for r in group)
            assert {r["source"] for r in group} <= {"okvqa", "infographicvqa"}
        elif task == "restyle":
            assert all(r["question"] == schema.RESTYLE_PROMPT and r["style"] == r["variant"] for r in group)
        else:
            assert all(r["question"] == schema.CONTEXT_PROMPT for r in group)
            kinds = {(r["mask_shape"], r["mask_lines"], r["mask_color"]) for r in group}
            assert len(kinds) == 3
            for shape, lines, color in kinds:
                assert shape in schema.MASK_SHAPES and lines in schema.MASK_LINES and color in schema.MASK_COLORS


def test_context_masks_sit_in_the_stored_image(built):
    out, _ = built
    ds = _rows(out, "context", "test")
    for row in ds:
        x0, y0, x1, y1 = row["mask_box"]
        w, h = row["image"].size
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_load_dataset_reads_the_card_configs(built):
    out, _ = built
    for task in schema.TASKS:
        ds = datasets.load_dataset(str(out), name=task, split="train")
        assert len(ds) == SIZES[task]["train"] * len(schema.VARIANTS[task])


def test_manifest_has_every_image_and_shard_hash(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    for task in schema.TASKS:
        for split in ("test", "train"):
            entry = manifest["tasks"][task][split]
            ds = _rows(out, task, split).cast_column("image", datasets.Image(decode=False))
            assert entry["images"] == {r["id"]: sha256_bytes(r["image"]["bytes"]) for r in ds}
            for shard in entry["shards"]:
                assert sha256_file(out / shard["file"]) == shard["sha256"]
            assert entry["settings"]["seed"] == 0
    assert manifest["tasks"]["restyle"]["test"]["settings"]["style_models"].keys() == {"candy", "mosaic", "udnie"}
    assert "sk-test" not in (out / "manifest.json").read_text() + (out / "build_config.json").read_text()


def test_bad_sources_are_skipped_and_counted(built):
    _, report = built
    skipped = {
        (task, split, source, reason): n
        for task, splits in report["tasks"].items()
        for split, r in splits.items()
        for source, reasons in r["skipped"].items()
        for reason, n in reasons.items()
    }
    assert skipped[("rephrase", "test", "okvqa", "missing image file")] == 2  # its 2 long questions
    assert skipped[("rephrase", "test", "infographicvqa", "corrupt image file")] == 1
    assert skipped[("context", "test", "coco", "corrupt image file")] == 1
    assert report["sources"]["coco"]["skipped"] == {"annotation without a box inside its image": 2}
    assert report["sources"]["okvqa"]["filtered"]["question of 10 words or fewer"] == 8
    assert "skipped" in pipeline.summary(report)


def test_test_and_train_share_no_image(built):
    out, _ = built
    for task in ("restyle", "context"):
        test = set(_rows(out, task, "test")["source_id"])
        train = set(_rows(out, task, "train")["source_id"])
        assert test and train and not test & train


def test_restyled_images_keep_their_size_per_group(built):
    out, _ = built
    ds = _rows(out, "restyle", "test")
    sizes = [r["image"].size for r in ds]
    for start in range(0, len(sizes), 4):
        assert len(set(sizes[start : start + 4])) == 1
        assert all(s % 4 == 0 for s in sizes[start])


# --------------------------------------------------------------------------- resume and determinism


def test_rerun_reuses_everything_and_requests_nothing(env, built):
    out, _ = built
    before = len(env["server"].log)
    report = pipeline.build(_config(env, out))
    assert len(env["server"].log) == before
    for splits in report["tasks"].values():
        for r in splits.values():
            assert r["shards_reused"] == r["shards"] > 0


def test_two_builds_give_identical_manifests(env, built, tmp_path):
    out, _ = built
    pipeline.build(_config(env, tmp_path / "again", tasks=["rephrase", "context"]))
    first = json.loads((out / "manifest.json").read_text())
    second = json.loads((tmp_path / "again" / "manifest.json").read_text())
    for task in ("rephrase", "context"):
        assert first["tasks"][task] == second["tasks"][task]


def test_another_seed_changes_the_choices(env, built, tmp_path):
    out, _ = built
    pipeline.build(_config(env, tmp_path / "seed1", tasks=["context"], seed=1))
    a = json.loads((out / "manifest.json").read_text())["tasks"]["context"]["train"]["images"]
    b = json.loads((tmp_path / "seed1" / "manifest.json").read_text())["tasks"]["context"]["train"]["images"]
    assert a != b


def test_a_new_shard_size_replaces_the_old_shards(env, built, tmp_path):
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    config = _config(env, copy, tasks=["context"])
    config.shard_rows = 100
    pipeline.build(config)
    assert sorted(p.name for p in (copy / "context").glob("*.parquet")) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    assert _rows(copy, "context", "test")["id"] == _rows(out, "context", "test")["id"]
    manifest = json.loads((copy / "manifest.json").read_text())
    assert set(manifest["tasks"]) == set(schema.TASKS)  # the other tasks' entries are kept


def _cli(env, out: Path, *extra: str) -> list[str]:
    p = env["paths"]
    args = [
        sys.executable,
        "-m",
        "mmr3_tasks.cli",
        "build",
        "--out",
        str(out),
        "--no-progress",
        "--okvqa",
        str(p["okvqa"]),
        "--infovqa",
        str(p["infovqa"]),
        "--gldv2",
        str(p["gldv2"]),
        "--mit-indoor",
        str(p["mit_indoor"]),
        "--coco",
        str(p["coco"]),
        "--style-models",
        str(env["styles"]),
        "--device",
        "cpu",
        "--rephrase-model",
        "gpt-test",
        "--api-base",
        env["server"].base_url,
        "--api-key-env",
        KEY_ENV,
        "--shard-rows",
        "6",
    ]
    for task, splits in SIZES.items():
        for split, n in splits.items():
            args += ["--size", f"{task}.{split}={n}"]
    return args + list(extra)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> bool:
    """SIGKILLs the build once ready() holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the build neither finished nor reached the kill point")


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_result(env, built, tmp_path):
    """Kill during rephrasing, then inside the restyle test split, then run to the end with the same
    settings: the result equals the uninterrupted build's, the restyle shards finished before the
    second kill are reused, and no cached request is ever sent again."""
    reference, _ = built
    out = tmp_path / "killed"
    server = env["server"]
    server.latency = 0.15
    cache_path = out / ".mmr3-build" / "rephrase-cache.jsonl"
    try:
        start = len(server.log)
        proc = subprocess.Popen(_cli(env, out, "--concurrency", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert _kill_when(proc, lambda: cache_path.exists() and cache_path.read_text().count("\n") >= 3)
        at_kill = len(server.log)
        cached_prompts = {json.loads(line)["prompt"] for line in cache_path.read_text().splitlines() if line.strip()}
        with open(cache_path, "a") as f:
            f.write('{"key": "half-writ')  # as if killed mid-line
        (out / "context").mkdir(parents=True, exist_ok=True)
        (out / "context" / ".test-00000-of-00002.parquet.abc.tmp").write_bytes(b"PAR1 half")  # a torn shard
        server.latency = 0.0

        restyle_markers = out / ".mmr3-build" / "restyle"
        # The final run's settings: another --style-batch-size is part of the restyle shards'
        # fingerprint, and the resume would reuse none of them.
        proc = subprocess.Popen(_cli(env, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert _kill_when(proc, lambda: any(restyle_markers.glob("test-*.json")))
        assert proc.returncode == -signal.SIGKILL
        finished = list(restyle_markers.glob("test-*.json"))
        assert 1 <= len(finished) < SIZES["restyle"]["test"]  # one group per shard: killed inside the split
        done = subprocess.run(_cli(env, out), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        server.latency = 0.0
    resent = [p for p in server.log[at_kill:] if p in cached_prompts]
    assert not resent, f"{len(resent)} cached prompts were requested again"
    assert len(server.log) - start <= len(set(server.log[start:])) + 2  # at most the 2 in flight at the kill
    assert not list(out.rglob(".*.tmp"))
    for task in schema.TASKS:
        for split in ("test", "train"):
            rows = _rows(out, task, split)
            assert rows["id"] == _rows(reference, task, split)["id"]
            assert len(data.check_rows(rows, task).kept) == len(rows)
    a = json.loads((reference / "manifest.json").read_text())["tasks"]
    b = json.loads((out / "manifest.json").read_text())["tasks"]
    assert a == b
    report = json.loads((out / "build_report.json").read_text())["tasks"]
    assert report["restyle"]["test"]["shards_reused"] == len(finished)
    for split in ("test", "train"):  # written before the second kill
        assert report["rephrase"][split]["shards_reused"] == report["rephrase"][split]["shards"]


# --------------------------------------------------------------------------- CLI and config


def test_cli_flags_become_the_build_config(env, tmp_path):
    from mmr3_tasks.builder.cli import config_from_args
    from mmr3_tasks.cli import build_parser

    args = build_parser().parse_args(
        [
            "build",
            "--out",
            str(tmp_path),
            "--tasks",
            "context,restyle",
            "--size",
            "context.test=7",
            "--seed",
            "3",
            "--coco",
            "hub:detection-datasets/coco",
            "--resolution",
            "224",
            "--style-models",
            "johnson-onnx",
            "--rephrase-model",
            "gpt-4o-mini",
            "--concurrency",
            "12",
        ]
    )
    config = config_from_args(args)
    assert config.tasks == ["context", "restyle"] and config.seed == 3
    assert config.size("context", "test") == 7 and config.size("context", "train") == 10001
    assert config.sources.coco == "hub:detection-datasets/coco" and config.restyle_resolution == 224
    assert config.style_models.location == "johnson-onnx"
    assert config.generator.model == "gpt-4o-mini" and config.generator.concurrency == 12
    assert BuildConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--size", "context.dev=3"], "TASK.SPLIT=N"),
        (["--tasks", "caption"], "unknown tasks"),
        (["--tasks", "context"], "no source for the context task: pass --coco"),
        (["--tasks", "restyle", "--mit-indoor", "/nowhere"], "needs the style models"),  # before any long step
        (["--tasks", "context", "--coco", "/nowhere"], "no COCO instances in /nowhere"),
        (["--rephrase-backend", "transformers"], "--rephrase-model"),
    ],
)
def test_cli_errors_say_what_to_fix(tmp_path, capsys, argv, message):
    from mmr3_tasks.cli import main

    assert main(["build", "--out", str(tmp_path / "o"), "--no-progress", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mmr3 build: error: ") and message in err


def test_restyle_without_style_models_says_where_to_get_them(env, tmp_path):
    config = _config(env, tmp_path / "o", tasks=["restyle"])
    config.style_models = None
    with pytest.raises(ConfigError, match="--style-models"):
        pipeline.build(config)


def test_build_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "mmr3_tasks.cli", "build", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--demo", "--okvqa", "--mit-indoor", "--style-models", "--resolution", "--push-to-hub", "--api-base"):
        assert flag in out.stdout


def test_push_to_hub_uploads_the_build_without_resume_state(monkeypatch, built):
    out, _ = built
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload", kw))
            return type("Info", (), {"commit_url": "https://hf.co/commit/1"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert pipeline.push_to_hub(out, "me/mmr3", private=True) == "https://hf.co/commit/1"
    assert calls[0] == ("create", "me/mmr3", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls[1][1]
    assert upload["folder_path"] == str(out) and upload["repo_type"] == "dataset"
    assert ".mmr3-build/**" in upload["ignore_patterns"]


def test_image_bytes_of_rephrase_rows_are_the_sources_own(built, env):
    out, _ = built
    ds = _rows(out, "rephrase", "test").cast_column("image", datasets.Image(decode=False))
    row = next(r for r in ds if r["source"] == "okvqa")
    name = row["image_source"].split("COCO image ")[1]
    assert row["image"]["bytes"] == (env["paths"]["okvqa"] / "val2014" / name).read_bytes()
    assert Image.open(io.BytesIO(row["image"]["bytes"])).format == "JPEG"
    assert Counter(ds["source"]).keys() <= {"okvqa", "infographicvqa"}


def test_an_image_failing_at_render_is_skipped_and_counted(tmp_path):
    """An image that validated but cannot be decoded when rendered loses its group, counted."""
    from mmr3_tasks.builder.render import ContextItem, ImagePolicy, ImageRef

    good = tmp_path / "good.jpg"
    fx.save_jpeg(good, fx.synthetic_image(1))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:300])
    items = [
        ContextItem(f"coco-{i}", "coco", str(i), ImageRef(str(p), path=str(p)), (10, 8, 50, 38), ["dog"], "", "")
        for i, p in enumerate((good, cut, good))
    ]
    config = BuildConfig(out=str(tmp_path / "out"), progress=False)
    ctx = pipeline.TaskContext("context", ImagePolicy(), {"test": 1})
    report = pipeline.SplitReport()
    markers = pipeline.write_split(items, "test", ctx, config, report)
    assert report.skipped == {"coco": {"image failed to decode": 1}}
    assert markers[0]["skipped"] == report.skipped and report.groups == 2
    assert [g.split("/")[0] for g in _rows(tmp_path / "out", "context", "test")["id"][::3]] == ["coco-0", "coco-2"]


# --------------------------------------------------------------------------- the manifest guards the data


def test_manifest_lists_every_shards_size_and_the_build_verifies(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    for task in schema.TASKS:
        for split in ("test", "train"):
            for shard in manifest["tasks"][task][split]["shards"]:
                assert shard["bytes"] == (out / shard["file"]).stat().st_size
            assert data.verify_split(out, task, split, full=True).ok


def test_a_damaged_build_is_refused_and_the_advised_rerun_redoes_only_the_bad_shards(env, built, tmp_path):
    from mmr3_tasks.cli import main

    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    context = sorted((copy / "context").glob("test-*.parquet"))
    rephrase = sorted((copy / "rephrase").glob("train-*.parquet"))
    assert len(context) > 1 and len(rephrase) > 1
    context[1].unlink()
    rephrase[0].write_bytes(rephrase[0].read_bytes()[:-10])
    config = copy / "build_config.json"
    advice = f"rerun `mmr3 build --config {config} --out {copy}` (it renders only the missing or changed shards again)"
    for task, split in (("context", "test"), ("rephrase", "train")):
        with pytest.raises(data.DataIntegrityError, match="MISSING shard|TRUNCATED shard") as err:
            _rows(copy, task, split)
        assert advice in str(err.value)
    requests = len(env["server"].log)
    assert main(["build", "--config", str(config), "--out", str(copy), "--no-progress"]) == 0
    assert len(env["server"].log) == requests  # the rephrasings came from the cache
    report = json.loads((copy / "build_report.json").read_text())["tasks"]
    for task, splits in report.items():
        for split, r in splits.items():
            redone = 1 if (task, split) in {("context", "test"), ("rephrase", "train")} else 0
            assert r["shards"] - r["shards_reused"] == redone, (task, split)
    assert (
        json.loads((copy / "manifest.json").read_text())["tasks"]
        == json.loads((out / "manifest.json").read_text())["tasks"]
    )
    assert _rows(copy, "context", "test")["id"] == _rows(out, "context", "test")["id"]


def test_a_build_that_fails_before_its_first_shard_leaves_the_folder_as_it_found_it(env, tmp_path):
    from mmr3_tasks.builder.sources import SourceError

    coco = tmp_path / "coco"
    shutil.copytree(env["paths"]["coco"], coco)
    annotations = coco / "annotations" / "instances_val2017.json"
    content = json.loads(annotations.read_text())
    del content["categories"]
    annotations.write_text(json.dumps(content))

    fresh = tmp_path / "new" / "out"
    config = _config(env, fresh, tasks=["context"])
    config.sources.coco = str(coco)
    with pytest.raises(SourceError, match="instances_val2017.json: no 'categories' list"):
        pipeline.build(config)
    assert not (tmp_path / "new").exists()  # no folder, no build_config.json of settings that built nothing

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "build_config.json").write_text("an earlier build's settings\n")
    # Rephrase first: its cache folder is made at once, and its shards would come before COCO is read.
    config = _config(env, earlier, tasks=["rephrase", "context"])
    config.sources.coco = str(coco)
    with pytest.raises(SourceError, match="categories"):
        pipeline.build(config)
    assert [p.name for p in earlier.iterdir()] == ["build_config.json"]
    assert (earlier / "build_config.json").read_text() == "an earlier build's settings\n"


def test_build_config_is_written_with_the_first_shard(env, tmp_path, monkeypatch):
    """A build that fails after its first shard keeps its settings, so `--config` can resume it."""
    out = tmp_path / "out"
    calls = []

    def fail_on_second(rows, path):
        calls.append(path)
        if len(calls) == 2:
            assert (out / "build_config.json").is_file()  # written before the first shard
            raise OSError("disk full")
        return real(rows, path)

    real = shards.write_parquet_atomic
    monkeypatch.setattr(shards, "write_parquet_atomic", fail_on_second)
    config = _config(env, out, tasks=["context"])
    with pytest.raises(OSError, match="disk full"):
        pipeline.build(config)
    assert BuildConfig.from_json(out / "build_config.json") == config


def test_a_rerun_that_writes_no_shard_still_records_its_settings(env, built, tmp_path):
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    report = pipeline.build(_config(env, copy, workers=1))
    assert all(r["shards_reused"] == r["shards"] for splits in report["tasks"].values() for r in splits.values())
    assert BuildConfig.from_json(copy / "build_config.json").workers == 1
