"""The operator console at scale: time to first render and update latency in a real
browser, with 1,000 workers and 100,000 tasks in the log.

    python -m bench --only console [--quick]     # also rewrites BENCHMARKS.md
    python -m bench.bench_console [--quick]      # bench/results/console.json only

Seeding (SQLite file, through LedgerService, the host's decision path): 1,000 workers
registered for 50 jobs in 10 rooms; 100,000 tasks submitted (TaskSubmitted appended in
bulk, 1,000 per transaction, as bench_growth does); 2,000 of them claimed, run and
completed, 500 held running, and 100 workers left. `workerledger rebuild` writes the
read-model tables, then `workerledger serve` runs on the file (heartbeat timeout and
claim lease long, so the host changes nothing by itself). Measured:

- the overview answer on the server (`GET /console/api/overview`, first page of each
  list): changed (a new query each time, so no cached answer), unchanged (`since` = its
  token), and filtered by a task status no task has (a filtered walk: 10,000 tasks, its
  bound);
- time to first render: navigation start to the page's `wl-first-render` mark (the
  first overview drawn), a new browser context each time, the token already in the tab;
- update latency: in an open page, from just before a write the page itself sends
  (a task submitted; a worker's DELETE) to the moment the change is in its DOM (a
  MutationObserver), at a random phase of its 500 ms poll.

Needs Debian's `chromium` and Playwright (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from workerledger.adapters.service import LedgerService
from workerledger.adapters.store.url import open_store
from workerledger.core import (
    Actor,
    ClaimTask,
    RegisterJob,
    RemoveWorker,
    TaskStatus,
    TaskSubmitted,
    UpdateTask,
)

from bench.bench_growth import timed_ms
from bench.report import machine_description, results_dir

CHROMIUM = os.environ.get("WORKERLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "bench-token"
ALICE = Actor(user="alice")
ROOMS, JOBS_PER_ROOM = 10, 5
LISTENING = "workerledger listening on "
Row = dict[str, Any]

# In the page: send a write, then wait until `template` (with "{id}" replaced by the id
# the answer names) is in the DOM; the ms from just before the write to that moment.
TIMED_WRITE = """
async ([method, url, body, template]) => {
  const token = sessionStorage.getItem("workerledger.console.token");
  const headers = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
  const started = performance.now();
  const response = await fetch(url, { method, body: body ?? undefined, headers });
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status}`);
  const text = await response.text();
  const selector = template.replace("{id}", text ? JSON.parse(text).id : "");
  const seen = await new Promise((resolve) => {
    if (document.querySelector(selector)) return resolve(performance.now());
    const observer = new MutationObserver(() => {
      if (!document.querySelector(selector)) return;
      observer.disconnect();
      resolve(performance.now());
    });
    observer.observe(document.body, { subtree: true, childList: true, attributes: true });
  });
  return seen - started;
}
"""


def seed(url: str, workers: int, tasks: int, completed: int, running: int, left: int) -> list[str]:
    """The log of a busy deployment; returns the worker ids, oldest first."""
    service = LedgerService(open_store(url))
    now = datetime.now(UTC) - timedelta(minutes=30)
    tick = iter(range(10**9))

    def at() -> datetime:
        return now + timedelta(milliseconds=next(tick))

    ids: list[str] = []
    for n in range(workers):
        worker_id = str(uuid.uuid4())
        room, job = f"room{n % ROOMS}", f"job{(n // ROOMS) % JOBS_PER_ROOM}"
        service.execute(
            RegisterJob(now=at(), actor=ALICE, room_id=room, category="modifiers", name=job,
                        worker_id=worker_id, create_worker=True)
        )  # fmt: skip
        ids.append(worker_id)
    jobs = [(f"room{r}", f"room{r}:modifiers:job{j}") for r in range(ROOMS) for j in range(5)]
    for start in range(0, tasks, 1000):
        batch = []
        for i in range(start, min(start + 1000, tasks)):
            room, job = jobs[i % len(jobs)]
            batch.append(TaskSubmitted(task_id=str(uuid.uuid4()), job_name=job, room_id=room,
                                       by="alice", at=at()))  # fmt: skip
        service.store.append(batch, {event.stream: 0 for event in batch})
    service.catch_up()
    for n in range(completed + running):
        worker_id = ids[n % len(ids)]
        claimed = service.claim_next(
            ClaimTask(now=at(), actor=ALICE, task_id="", worker_id=worker_id)
        )
        assert claimed is not None
        report = {"actor": ALICE, "task_id": claimed.task_id, "worker_id": worker_id}
        service.execute(UpdateTask(now=at(), status=TaskStatus.RUNNING, **report))
        if n < completed:
            service.execute(UpdateTask(now=at(), status=TaskStatus.COMPLETED, **report))
    for worker_id in ids[:left]:
        service.execute(RemoveWorker(now=at(), actor=ALICE, worker_id=worker_id))
    service.store.close()
    return ids


class Host:
    def __init__(self, url: str, tmp: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKERLEDGER_")}
        env |= {
            "WORKERLEDGER_DATABASE_URL": url,
            "WORKERLEDGER_AUTH_TOKENS": json.dumps({TOKEN: {"user": "alice"}}),
            "WORKERLEDGER_HEARTBEAT_TIMEOUT_SECONDS": "86400",
            "WORKERLEDGER_CLAIM_TIMEOUT_SECONDS": "86400",
        }
        self.log = open(tmp / "host.log", "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workerledger", "serve", "--port", "0"],
            env=env, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = ""
        for line in self.proc.stdout:
            text = line.decode().strip()
            if text.startswith(LISTENING):
                self.url = text.removeprefix(LISTENING)
                break
        if not self.url:
            raise SystemExit(f"the host did not start; see {tmp / 'host.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def row(figure: str, runs: list[float], note: str) -> Row:
    return {
        "figure": figure,
        "value": round(statistics.median(runs), 1),
        "unit": "ms",
        "runs": [round(r, 1) for r in runs],
        "note": f"{note}; min {min(runs):.1f}, max {max(runs):.1f}, n={len(runs)}",
    }


def server_rows(url: str, sizes: str, repeat: int) -> list[Row]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:

        def get(**params: str) -> dict[str, Any]:
            response = http.get("/console/api/overview", params=params)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        token = get()["token"]
        assert not get(since=token)["changed"], "the host changed the view by itself"
        sizes_asked = iter(range(100, 100 - repeat * 4, -1))  # a new query each: no cache

        def fresh(**params: str) -> dict[str, Any]:
            return get(job_limit=str(next(sizes_asked)), **params)

        return [
            row(f"overview answer, {sizes}", timed_ms(fresh, repeat),
                "GET /console/api/overview: counts, 100 workers, the jobs, 50 tasks"),
            row(f"overview answer when nothing changed, {sizes}",
                timed_ms(lambda: get(since=token), repeat * 3),
                "the same with since=<its token>: `changed: false`"),
            row(f"overview filtered by a status no task has, {sizes}",
                timed_ms(lambda: fresh(status="cancelled"), repeat),
                "walks the newest 10,000 tasks, the bound of a filtered walk"),
        ]  # fmt: skip


def browser_rows(url: str, ids: list[str], sizes: str, repeat: int, left: int) -> list[Row]:
    from playwright.sync_api import sync_playwright

    rng = random.Random(13)
    rows: list[Row] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            first: list[float] = []
            for _ in range(repeat):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.add_init_script(
                    f"sessionStorage.setItem('workerledger.console.token', {json.dumps(TOKEN)})"
                )
                page = context.new_page()
                page.goto(url + "/console")
                page.wait_for_selector("body[data-rendered=overview]", timeout=60_000)
                mark = "performance.getEntriesByName('wl-first-render')[0].startTime"
                first.append(float(page.evaluate(mark)))
                context.close()
            note = "navigation start to the first overview drawn (a new context each)"
            rows.append(row(f"time to first render, {sizes}", first, note))

            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script(
                f"sessionStorage.setItem('workerledger.console.token', {json.dumps(TOKEN)})"
            )
            page = context.new_page()
            page.goto(url + "/console")
            page.wait_for_selector("body[data-rendered=overview]", timeout=60_000)
            submits: list[float] = []
            for _ in range(repeat * 2):
                page.wait_for_timeout(rng.uniform(0, 500))
                ms = page.evaluate(
                    TIMED_WRITE,
                    ["POST", "/v1/joblib/rooms/room0/tasks/room0:modifiers:job0",
                     '{"payload": {}}', "tr[data-task-id='{id}']"],
                )  # fmt: skip
                submits.append(float(ms))
            note = "POST sent by the page -> its row in the page (500 ms poll)"
            rows.append(row(f"update latency, a submitted task, {sizes}", submits, note))
            ends: list[float] = []
            for worker_id in list(reversed(ids[left:]))[: repeat * 2]:
                page.wait_for_timeout(rng.uniform(0, 500))
                ms = page.evaluate(
                    TIMED_WRITE,
                    ["DELETE", f"/v1/joblib/workers/{worker_id}", None,
                     f"tr[data-worker-id='{worker_id}'][data-state=left]"],
                )  # fmt: skip
                ends.append(float(ms))
            note = "DELETE /workers/{id} sent by the page -> its row says left"
            rows.append(row(f"update latency, a worker leaves, {sizes}", ends, note))
            context.close()
        finally:
            browser.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_console")
    parser.add_argument("--quick", action="store_true", help="100 workers, 5,000 tasks")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"bench_console: no Chromium at {CHROMIUM} (apt-get install chromium)")
    workers, tasks = (100, 5_000) if args.quick else (1_000, 100_000)
    completed, running, left = (200, 50, 10) if args.quick else (2_000, 500, 100)
    repeat = 5 if args.quick else 10
    sizes = f"{workers:,} workers, {tasks:,} tasks"
    tmp = Path(tempfile.mkdtemp(prefix="workerledger-bench-console-"))
    url = f"sqlite:///{tmp / 'console.db'}"
    try:
        started = time.perf_counter()
        print(f"console: seeding {sizes} ...", flush=True)
        ids = seed(url, workers, tasks, completed, running, left)
        rebuild = [sys.executable, "-m", "workerledger", "rebuild", "--database-url", url]
        subprocess.run(rebuild, check=True, capture_output=True, timeout=600)
        print(f"console: seeded in {time.perf_counter() - started:.0f} s", flush=True)
        host = Host(url, tmp)
        try:
            rows = server_rows(host.url, sizes, repeat)
            rows += browser_rows(host.url, ids, sizes, repeat, left)
        finally:
            host.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for r in rows:
        print(f"  {r['figure']}: {r['value']} {r['unit']} ({r['note']})", flush=True)
    result = {
        "title": "Operator console (a real browser: Debian's Chromium, Playwright)",
        "command": "python -m bench --only console" + (" --quick" if args.quick else ""),
        "machine": machine_description(),
        "rows": rows,
        "notes": [
            f"Log: {sizes}; {completed:,} tasks completed, {running} running, "
            f"{left} workers left. Host: `workerledger serve` on SQLite; browser and host "
            "share the machine's cores.",
            "The page polls the overview every 500 ms with the token of what it shows; "
            "an update therefore waits half a poll on average.",
        ],
    }
    out = (args.results_dir or results_dir()) / "console.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"console: wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
