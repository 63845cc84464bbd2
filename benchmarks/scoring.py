"""Scoring cost at the paper's size, measured side by side in one run (issue 2's speed target).

13,344 responses over the three tasks (3,516 rephrase + 5,328 restyle + 4,500 context), with
answers shaped like the real ones (short VQA answers, two-sentence scene descriptions, object
names). Three timings with the same real all-MiniLM-L6-v2:

  embed-once  encoding every distinct response and ground-truth string once (the floor)
  ours        the full aggregation lmms-eval runs: every metric, intervals and breakdowns
  per-group   a straightforward script: each group's strings encoded in their own call
  per-string  the authors' released scripts: one encode call per response and per ground truth

Targets: ours <= 1.5 x embed-once, per-group >= 5 x ours, peak memory < 2 GB.
Run: python benchmarks/scoring.py [--scale 1.0] [--repeats 1]
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import numpy as np

from mmr3_tasks import hooks, metrics, schema
from mmr3_tasks.embedding import get_embedder

PAPER_GROUPS = {"rephrase": 1172, "restyle": 1332, "context": 1500}
OBJECTS = (
    "person bicycle car motorcycle airplane bus train truck boat bench bird cat dog horse sheep cow elephant bear "
    "zebra giraffe backpack umbrella handbag tie suitcase frisbee skis kite bottle cup fork knife spoon bowl banana "
    "apple sandwich orange broccoli carrot pizza donut cake chair couch bed toilet laptop mouse remote keyboard "
    "microwave oven toaster sink refrigerator book clock vase scissors"
).split()
PLACES = "kitchen library bakery church subway bookstore airport gym bar bedroom museum garage castle bridge".split()
ADJ = "old red small large busy quiet bright dark modern historic crowded empty wooden stone narrow wide".split()
NOUNS = "building street window table wall tower crowd light sign door roof garden shelf counter".split()


def sentence(rng: random.Random, place: str) -> str:
    return (
        f"The image shows a {rng.choice(ADJ)} {place} with a {rng.choice(ADJ)} {rng.choice(NOUNS)} "
        f"and several {rng.choice(NOUNS)}s. It looks like a {rng.choice(ADJ)} place, "
        f"perhaps near a {rng.choice(ADJ)} {rng.choice(NOUNS)}."
    )


def synthetic_payloads(scale: float, seed: int = 0) -> dict[str, list[dict]]:
    """Payloads as process_results logs them, for the paper's numbers of groups."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {}
    for task, n_groups in PAPER_GROUPS.items():
        payloads = []
        for g in range(int(n_groups * scale)):
            if task == "rephrase":
                gts = rng.sample(OBJECTS, k=rng.randint(1, 4)) + [str(rng.randint(1, 99))]
                base = rng.choice(gts)
                texts = [rng.choice([base, f"{base}s", f"the {base}", rng.choice(OBJECTS), str(rng.randint(1, 99))])
                         for _ in schema.VARIANTS[task]]  # fmt: skip
            elif task == "restyle":
                place = rng.choice(PLACES)
                gts = [place]
                texts = [sentence(rng, rng.choice([place, place, rng.choice(PLACES)])) for _ in schema.VARIANTS[task]]
            else:
                obj = rng.choice(OBJECTS)
                gts = [obj]
                texts = [rng.choice([obj, f"a {obj}", f"There is a {obj}.", rng.choice(OBJECTS), "bat"])
                         for _ in schema.VARIANTS[task]]  # fmt: skip
            for variant, text in zip(schema.VARIANTS[task], texts, strict=True):
                kinds = {}
                if task == "restyle":
                    kinds = {"style": variant}
                elif task == "context":
                    kinds = {
                        "mask_lines": rng.choice(schema.MASK_LINES),
                        "mask_shape": rng.choice(schema.MASK_SHAPES),
                        "mask_color": rng.choice(schema.MASK_COLORS),
                    }
                payloads.append(
                    {"id": f"{task}-{g}/{variant}", "group_id": f"{task}-{g}", "task": task, "variant": variant,
                     "group_size": len(schema.VARIANTS[task]), "answers": gts, "kinds": kinds, "response": text}
                )  # fmt: skip

        out[task] = payloads
    return out


def distinct_strings(payloads: dict[str, list[dict]]) -> list[str]:
    seen: dict[str, None] = {}
    for task, items in payloads.items():
        for p in items:
            text = metrics.clean_context_answer(p["response"]) if task == "context" else p["response"]
            seen.setdefault(metrics._embedding_text(text), None)
            for gt in p["answers"]:
                seen.setdefault(metrics._embedding_text(gt), None)
    return [s for s in seen if s]


def straightforward_scores(items: list[dict], encode, clean: bool) -> dict[str, float]:
    """Group-by-group scoring in Python loops; `encode(texts, gts)` embeds one group's strings."""
    groups: dict[str, list[dict]] = {}
    for p in items:
        groups.setdefault(p["group_id"], []).append(p)
    acc, sgt, con, sc = [], [], [], []
    for members in groups.values():
        texts = [metrics.clean_context_answer(p["response"]) if clean else p["response"] for p in members]
        gts = [metrics.clean_context_answer(g) if clean else g for g in members[0]["answers"]]
        r, g = encode([t.lower() for t in texts], [x.lower() for x in gts])
        acc.append(np.mean([metrics.is_correct(t, gts) for t in texts]))
        sgt.append(float(np.mean((r @ g.T).max(axis=1))))
        pair = [float(r[i] @ r[j]) for i in range(len(r)) for j in range(i + 1, len(r))]
        con.append(np.mean([c > metrics.CONSISTENCY_THRESHOLD for c in pair]))
        sc.append(np.mean(pair))
    return {"acc": 100 * np.mean(acc), "s_gt": 100 * np.mean(sgt), "con": 100 * np.mean(con), "s_c": 100 * np.mean(sc)}


def per_group_encoder(model):
    """One encode call per group, for the group's responses and ground truths together."""

    def encode(texts, gts):
        emb = model.encode(texts + gts, normalize_embeddings=True)
        return emb[: len(texts)], emb[len(texts) :]

    return encode


def per_string_encoder(model):
    """One encode call per string, as the authors' released scoring scripts do."""

    def encode(texts, gts):
        one = lambda t: model.encode(t, normalize_embeddings=True)  # noqa: E731
        return np.stack([one(t) for t in texts]), np.stack([one(g) for g in gts])

    return encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the paper's size (default 1.0)")
    ap.add_argument("--repeats", type=int, default=1, help="repetitions of each timing; the minimum is reported")
    ap.add_argument("--skip-per-string", action="store_true", help="skip the slowest baseline")
    args = ap.parse_args()

    payloads = synthetic_payloads(args.scale)
    n = sum(len(v) for v in payloads.values())
    embedder = get_embedder()
    embedder.encode(["warm up the encoder"])
    strings = distinct_strings(payloads)
    print(f"{n} responses, {len(strings)} distinct strings to embed")

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    t_embed = timed(lambda: embedder.encode(strings))
    ours: dict[str, dict] = {}

    def aggregate_all():
        for task, items in payloads.items():
            ours[task] = hooks.score_payloads(items, embedder=embedder)

    t_ours = timed(aggregate_all)
    naive: dict[str, dict] = {}

    def per_group_all():
        for task, items in payloads.items():
            naive[task] = straightforward_scores(items, per_group_encoder(embedder.model), task == "context")

    t_naive = timed(per_group_all)
    single: dict[str, dict] = {}

    def per_string_all():
        for task, items in payloads.items():
            single[task] = straightforward_scores(items, per_string_encoder(embedder.model), task == "context")

    t_single = timed(per_string_all) if not args.skip_per_string else float("nan")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    for task in payloads:  # the scorers must agree, or the comparison means nothing
        for other in (naive, single):
            for m in ("acc", "s_gt", "con", "s_c") if other else ():
                assert abs(ours[task][m] - other[task][m]) < 0.05, (task, m, ours[task][m], other[task][m])
    print(f"embed-once  {t_embed:8.2f} s")
    print(f"ours        {t_ours:8.2f} s   (all metrics, 1000-resample intervals, breakdowns)")
    print(f"per-group   {t_naive:8.2f} s   (one encode call per group)")
    print(f"per-string  {t_single:8.2f} s   (one encode call per string, as the authors' scripts do)")
    print(f"ours / embed-once  = {t_ours / t_embed:5.2f}   (target <= 1.5)")
    print(f"per-group / ours   = {t_naive / t_ours:5.2f}   (target >= 5)")
    print(f"per-string / ours  = {t_single / t_ours:5.2f}")
    print(f"peak memory        = {peak_mb:7.0f} MB (target < 2048)")


if __name__ == "__main__":
    main()
