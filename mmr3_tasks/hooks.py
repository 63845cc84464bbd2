"""The functions the task YAMLs name with `!function mmr3_tasks.hooks.<name>`.

Thin: each hook converts between lmms-eval's shapes and the pure modules (data, metrics). It is
imported as a package module (not exec'd from a file), so the report cache below is shared by the
aggregation of every metric of a task: the responses are embedded once per task, not per metric.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict

import datasets

from mmr3_tasks import data, embedding, metrics, schema, taskdefs
from mmr3_tasks.errors import MMR3Error

logger = logging.getLogger("mmr3")


class MMR3SetupError(SystemExit):
    """Stops an lmms-eval run with a message, not a traceback: the data is missing or malformed.

    lmms-eval prints a traceback for any Exception and still exits 0; SystemExit passes through
    its handlers, prints only the message and exits 1.
    """

    def __init__(self, message: str):
        super().__init__(f"\nmmr3: {message}\n")


# --------------------------------------------------------------------------- docs

DATA_COLUMN = "mmr3_data"  # added to the docs at load time; not part of the stored schema


def load_docs(locator: datasets.Dataset) -> datasets.Dataset:
    """`process_docs`: replaces the task's one-row locator with the rows it names.

    The YAML's `dataset_path` is a locator file shipped next to it (tasks/locators/), because the
    benchmark's folder is only known at run time ($MMR3_DATA). A folder is checked against its
    manifest first (data.verify_split): a missing, extra, truncated or changed shard stops the run
    with MMR3SetupError, as missing or malformed data does. Bad rows are dropped with a warning.
    """
    if len(locator) != 1 or "mmr3_task" not in locator.column_names:
        raise MMR3SetupError(f"expected one MM-R³ locator row, got {len(locator)} rows {locator.column_names}")
    spec = locator[0]
    task, source, protocol = spec["mmr3_task"], spec["data"], spec["protocol"]
    where = str(data.DEMO_DIR) if source == "demo" else data.data_location()  # named in every message
    try:
        ds = data.load_demo(task) if source == "demo" else data.load_split(task, "test")
        check = data.check_rows(ds, task, where=where)
    except (data.DataNotFoundError, data.DataSchemaError) as err:  # DataIntegrityError is a DataSchemaError
        raise MMR3SetupError(str(err)) from None
    # Every payload names the data it was scored on (results: `data_fingerprint`): the build, and
    # when rows were dropped also which rows were kept (before the Sampling protocol's subset).
    fingerprint = data.fingerprint(source)
    if check.dropped:
        logger.warning("mmr3 %s: dropped %s", task, check.summary())
        ds = ds.select(check.kept)
        fingerprint = data.with_kept_rows(fingerprint, ds["id"])
    if protocol == "sampling":
        ds = data.sampling_rows(ds)
    if len(ds) == 0:
        raise MMR3SetupError(f"no usable {task} rows left at {where}: {check.summary()}")
    return ds.add_column(DATA_COLUMN, [fingerprint] * len(ds))


def doc_to_visual(doc: dict) -> list:
    return [doc["image"].convert("RGB")]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def doc_to_target(doc: dict) -> str:
    return " | ".join(doc["answers"])


# --------------------------------------------------------------------------- per-doc payload


def process_results(doc: dict, results: list[str]) -> dict:
    """The doc's payload under `acc`, and a short reference to it under every other metric.

    The payload carries everything scoring needs, so the samples file alone reproduces every
    number (`mmr3 score`). The other metrics' aggregations find the report that `acc`'s built
    through the reference: one payload per sample line instead of one per metric. Under the
    Sampling protocol `results` holds the repeated responses.
    """
    payload = {
        "id": doc["id"],
        "group_id": doc["group_id"],
        "task": doc["task"],
        "variant": doc["variant"],
        "group_size": int(doc["group_size"]),
        "answers": list(doc["answers"]),
        "kinds": {c: doc[c] for c in schema.KIND_COLUMNS.get(doc["task"], ())},
        "data": doc.get(DATA_COLUMN, ""),
    }
    if len(results) == 1:
        payload["response"] = results[0]
    else:
        payload["responses"] = list(results)
    ref = payload_ref(payload)
    protocol = "all" if len(results) == 1 else "sampling"
    return {
        name: payload if name == FULL_PAYLOAD_METRIC else ref for name in taskdefs.metric_names(doc["task"], protocol)
    }


def payload_ref(payload: dict) -> str:
    """A short fingerprint of one payload: its task, id and response(s)."""
    key = json.dumps([payload["task"], payload["id"], payload.get("response"), payload.get("responses")])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def payload_responses(payload: dict) -> list[metrics.ScoredResponse]:
    """A payload as scored responses; a Sampling payload is one group of its repeated responses."""
    answers = tuple(payload["answers"])
    if "responses" in payload:
        return [
            metrics.ScoredResponse(
                id=f"{payload['id']}#s{k + 1}",
                group_id=payload["group_id"],
                variant=f"s{k + 1}",
                answers=answers,
                response=text,
                group_size=len(payload["responses"]),
            )
            for k, text in enumerate(payload["responses"])
        ]
    return [
        metrics.ScoredResponse(
            id=payload["id"],
            group_id=payload["group_id"],
            variant=payload["variant"],
            answers=answers,
            response=payload["response"],
            group_size=payload["group_size"],
            kinds=tuple((k, str(v)) for k, v in sorted(payload.get("kinds", {}).items())),
        )
    ]


def score_payloads(items: list[dict], embedder: metrics.Embedder | None = None, **kwargs) -> dict:
    """Scores the payloads of one task (any order, any ranks): the report every metric reads."""
    tasks = {p["task"] for p in items}
    if len(tasks) > 1:
        raise ValueError(f"payloads of several tasks mixed in one aggregation: {sorted(tasks)}")
    responses = [r for p in items for r in payload_responses(p)]
    model = embedding.requested_embedding_model()
    embedder = embedder or embedding.get_embedder(model)
    result = metrics.score(responses, embedder, clean_context=tasks == {"context"}, **kwargs)
    out = result.as_dict()
    out["embedding_model"] = getattr(embedder, "name", model)
    out["data_fingerprint"] = ", ".join(sorted({p.get("data") or "unknown" for p in items}))
    return out


def metric_value(report: dict, name: str):
    """One flat metric key of taskdefs.metric_names, read off a report."""
    if name in report and name not in ("breakdown", "counts", "ci95"):
        return report[name]
    if name.endswith("_ci95"):
        return report["ci95"][name[: -len("_ci95")]]
    if name in report["counts"]:
        return report["counts"][name]
    for column, values in report["breakdown"].items():
        for value, scores in values.items():
            for m in taskdefs.HEADLINE:
                if taskdefs.breakdown_key(m, column, value) == name:
                    return scores[m]
    return None  # a breakdown kind no response had


# --------------------------------------------------------------------------- aggregation

FULL_PAYLOAD_METRIC = "acc"  # first in lmms-eval's aggregation order, single- and multi-rank
_REPORTS: OrderedDict[str, dict] = OrderedDict()
_REPORTS_KEPT = 8


def aggregate(name: str, items: list) -> object:
    """The aggregation behind every metric: `acc` scores, the others read what it scored."""
    if name == FULL_PAYLOAD_METRIC:
        key = _fingerprint([payload_ref(p) for p in items])
        try:
            _REPORTS[key] = score_payloads(items)
        except MMR3Error as err:  # the embedding model asked for cannot be loaded
            raise MMR3SetupError(str(err)) from None
        _REPORTS.move_to_end(key)
        while len(_REPORTS) > _REPORTS_KEPT:
            _REPORTS.popitem(last=False)
    else:
        key = _fingerprint(items)
        if key not in _REPORTS:
            raise RuntimeError(
                f"mmr3: metric {name!r} was aggregated before {FULL_PAYLOAD_METRIC!r} for these responses; "
                "this lmms-eval orders aggregations differently from the 0.7.x series (pinned in pyproject)"
            )
    return metric_value(_REPORTS[key], name)


def _fingerprint(refs: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(refs)).encode()).hexdigest()


def _aggregation(name: str):
    def aggregation(items: list) -> object:
        return aggregate(name, items)

    aggregation.__name__ = aggregation.__qualname__ = name
    aggregation.__doc__ = f"lmms-eval aggregation of the MM-R³ metric {name!r}."
    return aggregation


def __getattr__(name: str):
    """`!function mmr3_tasks.hooks.<metric>` resolves here for every name in taskdefs."""
    if name in taskdefs.all_metric_names():
        return _aggregation(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
