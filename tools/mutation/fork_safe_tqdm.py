"""A pytest plugin for the mutation runs: tqdm bars that cannot deadlock a forked mutant.

mutmut runs every mutant in a process forked from one that has already run the tests. tqdm's
default lock includes a multiprocessing lock, a semaphore that forked processes share: a mutant
killed at its timeout while a bar held it leaves it taken, and every later mutant whose tests draw
a bar then waits on it until its own timeout. tqdm's monitor thread, which takes the same lock, can
also be holding it at the fork. So each test session here gets a fresh in-process lock and no
monitor thread. The bars still draw (tests assert on them); only their locking changes.
"""

from __future__ import annotations

import threading


def pytest_configure(config) -> None:
    from tqdm import auto, std

    std.tqdm.monitor_interval = 0
    for cls in {std.tqdm, auto.tqdm}:
        cls.set_lock(threading.RLock())
