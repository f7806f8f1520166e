"""`workerledger serve` under cProfile over a window set by signals (bench/profile_host.py).

    python bench/profiled_serve.py OUT.prof -- serve --host 127.0.0.1 --port 8123

Run by path with the python under test (stdlib and workerledger only; `python -m
workerledger` is run through runpy). SIGUSR1 starts profiling, SIGUSR2 stops it and writes
the merged pstats file OUT.prof (then `OUT.prof.done`). Every thread is profiled: the
event loop's thread by a cProfile.Profile enabled in the SIGUSR1 handler, every other
thread (the ledger's executor, asyncio.to_thread) by a Profile of its own that a
`threading.setprofile` hook enables at the thread's first call inside the window (cProfile
on Python 3.11 sees only the thread that enabled it). The timer is the thread's CPU time
(time.thread_time), so that waiting (epoll, a queue) counts for nothing and own times add
up to the CPU the host spent, plus the profiler's overhead.
"""

from __future__ import annotations

import cProfile
import marshal
import os
import runpy
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # bench/ is not the package under test

OUT = sys.argv[1]
ARGS = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]

main_profile = cProfile.Profile(time.thread_time)
thread_profiles: list[cProfile.Profile] = []
lock = threading.Lock()
active = False


def thread_hook(frame: FrameType, event: str, arg: Any) -> None:
    """Until the window opens: nothing. Then: this thread's own Profile takes over."""
    if not active:
        return
    profile = cProfile.Profile(time.thread_time)
    with lock:
        thread_profiles.append(profile)
    profile.enable()  # replaces this hook for the thread


def start(signum: int, frame: FrameType | None) -> None:
    global active
    active = True
    main_profile.enable()


def stop(signum: int, frame: FrameType | None) -> None:
    global active
    main_profile.disable()
    active = False
    main_profile.create_stats()
    merged: dict[Any, Any] = dict(main_profile.stats)
    with lock:
        others = list(thread_profiles)
    for profile in others:
        profile.snapshot_stats()  # no disable(): that would act on this (the main) thread
        for key, (cc, nc, tt, ct, callers) in profile.stats.items():
            if key in merged:
                cc0, nc0, tt0, ct0, callers0 = merged[key]
                joined = dict(callers0)
                for caller, numbers in callers.items():
                    if caller in joined:
                        joined[caller] = tuple(
                            a + b for a, b in zip(joined[caller], numbers, strict=True)
                        )
                    else:
                        joined[caller] = numbers
                merged[key] = (cc0 + cc, nc0 + nc, tt0 + tt, ct0 + ct, joined)
            else:
                merged[key] = (cc, nc, tt, ct, callers)
    with open(OUT, "wb") as file:
        marshal.dump(merged, file)
    with open(OUT + ".done", "w") as file:
        file.write(f"{len(others)} other threads\n")


threading.setprofile(thread_hook)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.argv = ["workerledger", *ARGS]
runpy.run_module("workerledger", run_name="__main__", alter_sys=True)
