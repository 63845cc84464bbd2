"""Rephrasing throughput against an OpenAI-compatible test server with 200 ms latency.

    python benchmarks/build_rephrase.py [--questions 1172] [--concurrency 16] [--latency 0.2]

Target (issue 3): at least 8 requests in flight, so the paper's 1,172 test questions take under a
minute. The server is the tests' (tests/build_fixtures.py): a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from build_fixtures import ChatServer  # noqa: E402

from mmr3_tasks.builder.render import ImageRef, RephraseItem  # noqa: E402
from mmr3_tasks.builder.rephrase import GeneratorConfig, OpenAIChat, RephraseStats, ReplyCache, rephrase_items  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=1172)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    items = [
        RephraseItem(
            f"q{i}",
            "okvqa",
            str(i),
            ImageRef(f"img{i // 2}"),
            f"In this photograph number {i}, what is the object that the person on the left is holding?",
            ["umbrella"],
            "",
            "",
        )
        for i in range(args.questions)
    ]
    os.environ["MMR3_BENCH_KEY"] = "sk-test"
    with ChatServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        config = GeneratorConfig(
            model="gpt-test", base_url=server.base_url, api_key_env="MMR3_BENCH_KEY", concurrency=args.concurrency
        )
        stats = RephraseStats()
        started = time.perf_counter()
        ok = rephrase_items(items, lambda: OpenAIChat(config), config, ReplyCache(Path(tmp) / "c.jsonl"), stats)
        elapsed = time.perf_counter() - started
        in_flight = server.max_in_flight
    print(f"questions: {args.questions}  latency: {args.latency * 1000:.0f} ms  concurrency: {args.concurrency}")
    print(f"accepted: {len(ok)}  requests: {stats.requested}  max in flight: {in_flight}")
    print(
        f"elapsed: {elapsed:.1f} s  ({args.questions / elapsed:.1f} questions/s; "
        "every reply fsynced to the JSONL cache as it arrives)"
    )
    passed = in_flight >= 8 and elapsed < 60
    print("target: >= 8 in flight and < 60 s -> " + ("PASS" if passed else "FAIL"))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
