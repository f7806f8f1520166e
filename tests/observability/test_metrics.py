"""GET /metrics on a real host: counters and histograms move by what was done over REST
and Socket.IO, and the exposition parses with prometheus-client's own parser."""

from __future__ import annotations

import asyncio

import httpx
from host.conftest import WAIT, RunningHost
from prometheus_client.parser import text_string_to_metric_families
from workerledger.adapters.rest.router import create_router

from .steps import LeftRooms, claim, drop, new_worker, report, submit


class Samples:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.values.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str) -> float:
        """The sum over every label set of `name`."""
        return sum(value for (sample, _), value in self.values.items() if sample == name)


async def scrape(running: RunningHost, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=running.url, timeout=WAIT) as http:
        response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Samples(response.text)


async def test_counters_and_histograms_move_as_workers_claim_drop_resume_and_leave(start_host):
    # Given a host with a long grace window, and its figures before any work
    left_rooms = LeftRooms()
    running = await start_host(
        disconnect_grace_seconds=300, heartbeat_timeout_seconds=300, emitters=[left_rooms]
    )
    api = running.api()
    before = await scrape(running)

    # When worker A claims one task and B another (two first claims)
    a, b = await new_worker(api), await new_worker(api)
    first, second = await submit(api), await submit(api)
    assert (await claim(api, a))["id"] == first
    assert (await claim(api, b))["id"] == second
    # and A's connection drops, comes back within the grace window and drops again
    for _ in range(2):
        await drop(running, a, left_rooms)
    # and A leaves (its claimed task is requeued), B finishes its task and claims A's
    assert (await api.delete(f"/workers/{a}")).status_code == 204
    assert (await report(api, second, "running", b, 1)).status_code == 200
    assert (await report(api, second, "completed", b, 1)).status_code == 200
    reclaimed = await claim(api, b)
    assert (reclaimed["id"], reclaimed["attempt"]) == (first, 2)
    # and A's late report for its old attempt is refused as stale
    stale = await report(api, first, "running", a, 1)
    assert stale.status_code == 409, stale.text
    # and a long-poll waits on the reclaimed task while the figures are read
    waiting = asyncio.create_task(api.get(f"/tasks/{first}", headers={"Prefer": "wait=30"}))
    while not running.host.runtime.waiters.watched():
        await asyncio.sleep(0.005)  # polls a condition no event announces; bounded below
        assert not waiting.done(), waiting
    during = await scrape(running)
    assert (await report(api, first, "running", b, 2)).status_code == 200
    assert (await report(api, first, "completed", b, 2)).status_code == 200
    assert (await waiting).json()["status"] == "completed"
    after = await scrape(running)

    # Then the gauges show the view, and each counter moved by what was done
    assert during("workerledger_long_poll_tasks_watched") == 1
    assert after("workerledger_long_poll_tasks_watched") == 0
    assert after("workerledger_workers", state="left") == 1
    assert after("workerledger_workers", state="online") == 1
    assert after("workerledger_workers", state="disconnected") == 0
    assert after("workerledger_tasks", status="completed") == 2
    assert after("workerledger_tasks", status="pending") == 0

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("workerledger_claim_latency_seconds_count") == 2  # first claims only
    assert moved("workerledger_claim_latency_seconds_sum") >= 0
    disconnects = "workerledger_worker_disconnects_total"  # by python-socketio's reason
    assert after.total(disconnects) - before.total(disconnects) == 2
    assert moved("workerledger_worker_resumes_total") == 1
    assert moved("workerledger_stale_reports_total") == 1
    assert moved("workerledger_worker_ends_total", cause="left") == 1
    assert moved("workerledger_task_releases_total", cause="left", outcome="requeued") == 1
    assert after.total("workerledger_task_releases_total") == 1
    assert moved("workerledger_store_append_seconds_count") >= 10
    assert after("workerledger_store_append_conflicts_total") == 0
    # every committed append carried at least one event, and the sizes add up
    committed = moved("workerledger_store_append_events_count")
    assert 10 <= committed <= moved("workerledger_store_append_seconds_count")
    assert moved("workerledger_store_append_events_sum") >= committed


async def test_a_drop_without_grace_counts_as_an_end_and_releases_by_disconnect(start_host):
    # Given a host without grace, and a worker holding a running and a claimed task
    left_rooms = LeftRooms()
    running = await start_host(disconnect_grace_seconds=0, emitters=[left_rooms])
    api = running.api()
    a = await new_worker(api)
    first, second = await submit(api), await submit(api)
    assert (await claim(api, a))["id"] == first
    assert (await report(api, first, "running", a, 1)).status_code == 200
    assert (await claim(api, a))["id"] == second
    before = await scrape(running)

    # When its connection drops
    await drop(running, a, left_rooms)
    after = await scrape(running)

    # Then it ended by a disconnect: the running task failed (policy fail), the other requeued
    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved("workerledger_worker_ends_total", cause="disconnect") == 1
    assert moved("workerledger_worker_ends_total", cause="lost") == 0
    assert moved("workerledger_task_releases_total", cause="disconnect", outcome="failed") == 1
    assert moved("workerledger_task_releases_total", cause="disconnect", outcome="requeued") == 1
    assert moved("workerledger_worker_resumes_total") == 0
    assert after("workerledger_workers", state="lost") == 1
    assert (
        after("workerledger_tasks", status="failed"),
        after("workerledger_tasks", status="pending"),
    ) == (1, 1)


async def test_metrics_need_a_token_only_when_the_setting_says_so(start_host):
    # Given two hosts in this one process, one requiring a token for /metrics
    guarded = await start_host(metrics_require_token=True)
    open_host = await start_host()

    async with httpx.AsyncClient(base_url=guarded.url, timeout=WAIT) as http:
        # Then a scrape without a token or with an unknown one is refused
        assert (await http.get("/metrics")).status_code == 401
        bad = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    # and any user's token is enough
    await new_worker(guarded.api("tok-bob"))
    assert (await scrape(guarded, "tok-bob"))("workerledger_workers", state="online") == 1
    # and the other host is open and keeps its own figures (a registry per runtime)
    assert (await scrape(open_host))("workerledger_workers", state="online") == 0
    assert guarded.host.runtime.metrics.registry is not open_host.host.runtime.metrics.registry
    # and /metrics is neither part of the REST router nor of the API document
    paths = {getattr(route, "path", "") for route in create_router(open_host.host.runtime).routes}
    assert not any(path.endswith("/metrics") for path in paths)
    async with httpx.AsyncClient(base_url=open_host.url, timeout=WAIT) as http:
        assert "/metrics" not in (await http.get("/openapi.json")).json()["paths"]
