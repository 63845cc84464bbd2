"""The lmms-eval side of mmr3_blip2 / mmr3_llava, in process: registry, arguments, requests, errors."""

from __future__ import annotations

import lmms_eval.models as lmms_eval_models  # a hard dependency: a broken import fails, never skips
import pytest
from lmms_eval.api.instance import GenerationResult, Instance

from mmr3_adapters import lmms_models
from mmr3_adapters.models.generation import GenerationError
from tests.tiny_models import QUESTIONS, images, tiny_checkpoint

GEN_KWARGS = {"max_new_tokens": 10, "temperature": 0.0, "do_sample": False, "until": ["\n\n"]}
# What simple_evaluate adds to --model_args: the CLI's --batch_size is a str, the others None when unset.
CLI_EXTRAS = {"batch_size": "3", "max_batch_size": None, "device": None}


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    path = tiny_checkpoint("llava", tmp_path_factory)
    cls = lmms_eval_models.get_model("mmr3_llava")
    return cls.create_from_arg_string(f"pretrained={path},dtype=float32", CLI_EXTRAS)


def docs(with_ids: bool = True) -> list[dict]:
    rows = []
    for i, (question, image) in enumerate(zip(QUESTIONS, images(len(QUESTIONS)), strict=True)):
        row = {"question": question, "image": image}
        if with_ids:
            row["id"] = f"grp-{i // 2}/v{i % 2}"
        rows.append(row)
    return rows


def doc_to_visual(doc):
    return [doc["image"]]


def requests(n: int, task: str = "t", gen_kwargs: dict | None = None, visual=doc_to_visual) -> list[Instance]:
    return [
        Instance(
            request_type="generate_until",
            arguments=(QUESTIONS[i], dict(gen_kwargs or GEN_KWARGS), visual, i, task, "test"),
            idx=0,
            metadata={"task": task, "doc_id": i, "repeats": 1},
        )
        for i in range(n)
    ]


def test_models_are_registered_through_the_entry_point():
    for model_id, cls in (("mmr3_blip2", lmms_models.Blip2), ("mmr3_llava", lmms_models.Llava)):
        assert lmms_eval_models.get_model(model_id) is cls
        assert cls.is_simple


def test_answers_come_back_in_request_order_whatever_the_batch(llava):
    llava.task_dict = {"t": {"test": docs()}}
    reqs = requests(len(QUESTIONS))
    batched = llava.generate_until(reqs)
    assert all(isinstance(r, GenerationResult) and r.text for r in batched)
    assert all(r.token_counts.output_tokens == 10 for r in batched)  # the task's max_new_tokens
    llava.batch_size_per_gpu = 1
    try:
        one_by_one = [llava.generate_until([r])[0].text for r in reqs]
    finally:
        llava.batch_size_per_gpu = 3
    assert [r.text for r in batched] == one_by_one
    # A repeated Instance (the Sampling protocol's `repeats`) is answered once per copy.
    twice = llava.generate_until([reqs[1], reqs[1]])
    assert [r.text for r in twice] == [one_by_one[1]] * 2


def test_a_doc_that_cannot_be_read_fails_with_its_row_id(llava):
    llava.task_dict = {"t": {"test": docs()}}
    # Doc 1 has the longest question, so its batch runs first; its row id is grp-0/v1.
    with pytest.raises(
        GenerationError, match=r"sample t/1: TypeError: sample grp-0/v1: mmr3_llava takes PIL images .* got str"
    ):
        llava.generate_until(requests(3, visual=lambda doc: ["/videos/clip.mp4"]))


def test_a_generation_failure_names_the_row_ids_or_task_and_doc(llava, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("device-side assert triggered (simulated)")

    monkeypatch.setattr(llava.generator, "generate_from_embeddings", boom)
    llava.task_dict = {"t": {"test": docs()}}
    with pytest.raises(GenerationError, match=r"'grp-0/v1'.*device-side assert triggered"):
        llava.generate_until(requests(2))
    llava.task_dict = {"other_task": {"test": docs(with_ids=False)}}  # no id column: task/doc_id
    with pytest.raises(GenerationError, match=r"\['other_task/1', 'other_task/0'\]"):
        llava.generate_until(requests(2, task="other_task"))


def test_bad_gen_kwargs_name_the_task(llava):
    llava.task_dict = {"t": {"test": docs()}}
    with pytest.raises(SystemExit, match="mmr3_llava, task t: unsupported generation_kwargs"):  # a clean stop
        llava.generate_until(requests(1, gen_kwargs={"max_new_tokens": 4, "image_aspect_ratio": "pad"}))


def test_loglikelihood_is_refused_clearly(llava):
    with pytest.raises(NotImplementedError, match="generate_until tasks only"):
        llava.loglikelihood([])


# Every one is a SystemExit (hooks.MMR3SetupError): lmms-eval prints only its message and exits 1,
# where an Exception would print a traceback and exit 0. tests/test_lmms_errors.py runs the CLI.
@pytest.mark.parametrize(
    "arg_string, message",
    [
        ("pretrained=x,adapter=runs/adapter", "adapter='runs/adapter' does not exist"),
        ("pretrained=x,adapter=a,lora=b", "adapter= and lora= together"),
        ("pretrained=x,lora=runs/lora", "lora=runs/lora does not exist"),  # before the model loads
        ("pretrained=x,temprature=0", "unknown model_args ['temprature']"),
        ("dtype=float32", "needs pretrained=<hub id or local folder>"),
        ("pretrained=x,batch_size=auto", "batch_size must be a positive integer, got 'auto'"),
        ("pretrained=x,batch_size=0", "batch_size must be a positive integer, got 0"),
        # A path, not a malformed hub id ("Repo id must be in the form ...").
        ("pretrained=/no/such/folder", "pretrained=/no/such/folder: no such folder"),
        ("pretrained=./no-such-folder", "pretrained=./no-such-folder: no such folder"),
    ],
)
def test_bad_model_args_fail_before_loading(arg_string, message):
    for model_id in ("mmr3_blip2", "mmr3_llava"):
        with pytest.raises(SystemExit) as err:
            lmms_eval_models.get_model(model_id).create_from_arg_string(arg_string)
        assert message in str(err.value) and model_id in str(err.value)


def test_a_pretrained_folder_that_is_no_checkpoint_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.safetensors").write_bytes(b"")
    cases = {
        "empty": "empty: the folder holds no config.json, so it is not a transformers checkpoint",
        "weights.safetensors": "weights.safetensors is a file; give the checkpoint folder",
    }
    for name, message in cases.items():
        with pytest.raises(SystemExit) as err:
            lmms_eval_models.get_model("mmr3_llava").create_from_arg_string(f"pretrained={tmp_path / name}")
        assert f"mmr3_llava: pretrained={tmp_path / name}" in str(err.value) and message in str(err.value)


def test_llava_image_aspect_is_checked_before_loading_and_reaches_the_generator(tmp_path_factory):
    llava_class = lmms_eval_models.get_model("mmr3_llava")
    with pytest.raises(SystemExit, match="mmr3_llava: image_aspect must be 'pad' or 'crop', got 'letterbox'"):
        llava_class.create_from_arg_string("pretrained=does-not-exist,image_aspect=letterbox")
    path = tiny_checkpoint("llava", tmp_path_factory)
    extras = {"batch_size": 1, "max_batch_size": None, "device": "cpu"}
    for arg, aspect in (("", "pad"), (",image_aspect=crop", "crop")):
        lm = llava_class.create_from_arg_string(f"pretrained={path},dtype=float32{arg}", extras)
        assert lm.generator.image_aspect == aspect
        lm.clean()


def test_blip2_loads_through_the_cli_path(tmp_path_factory):
    path = tiny_checkpoint("blip2-t5", tmp_path_factory)
    extras = {"batch_size": 2, "max_batch_size": None, "device": "cpu"}
    lm = lmms_eval_models.get_model("mmr3_blip2").create_from_arg_string(
        f"pretrained={path},dtype=float32,prompt=Question: {{question}} Short answer:", extras
    )
    assert (lm.batch_size, lm.rank, lm.world_size, str(lm.device)) == (2, 0, 1, "cpu")
    assert lm.generator.prompt("What?", 1) == "Question: What? Short answer:"
    lm.task_dict = {"t": {"test": docs()}}
    assert all(r.text for r in lm.generate_until(requests(3)))
    lm.clean()
    with pytest.raises(RuntimeError, match="released by clean"):
        lm.generate_until(requests(1))


def test_adapter_and_lora_arguments_attach_the_trained_weights(llava, tmp_path_factory, tmp_path):
    import torch

    from mmr3_adapters.adapter import AdapterConfig, ConsistencyAdapter, save_adapter
    from mmr3_adapters.adapter.lora import LoraSettings, apply_lora, save_lora
    from mmr3_adapters.models import LlavaGenerator

    path = tiny_checkpoint("llava", tmp_path_factory)
    torch.manual_seed(0)
    adapter = ConsistencyAdapter(AdapterConfig(hidden_size=32, backbone="llava", base_model_name_or_path=str(path)))
    with torch.no_grad():
        for p in adapter.mlp.parameters():
            p.mul_(20)  # a prefix large enough to move the tiny model's answers
    save_adapter(adapter, tmp_path / "adapter")
    scratch = LlavaGenerator.from_pretrained(path, dtype="float32")
    peft_model = apply_lora(scratch, LoraSettings(r=2, dropout=0.0))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)
    save_lora(peft_model, tmp_path / "lora", scratch, {})

    llava.task_dict = {"t": {"test": docs()}}
    plain = [r.text for r in llava.generate_until(requests(4))]
    cls = lmms_eval_models.get_model("mmr3_llava")
    for arg in (f"adapter={tmp_path / 'adapter'}", f"lora={tmp_path / 'lora'}"):
        lm = cls.create_from_arg_string(f"pretrained={path},dtype=float32,{arg}", CLI_EXTRAS)
        lm.task_dict = llava.task_dict
        adapted = [r.text for r in lm.generate_until(requests(4))]
        assert adapted != plain, arg
        lm.clean()
    lm = cls.create_from_arg_string(f"pretrained={path},dtype=float32,adapter=", CLI_EXTRAS)  # empty: no adapter
    assert lm.generator.embedding_transform is None
