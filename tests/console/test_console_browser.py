"""The console in a real browser (Debian's Chromium, driven by Playwright): a worker
process SIGKILLed while it holds a task goes online -> disconnected (with the grace
countdown) -> lost on a page that is never reloaded, its task is requeued and finished
by another worker; then its timeline and the task's attempts are drawn as SVG marks.
Screenshots are saved under the test's tmp dir (the paths are printed)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.services import services_required

from .browser import WAIT_MS, chromium, open_console

try:
    from playwright.async_api import expect
except ImportError:  # the dev extra is not installed
    if services_required():
        raise
    pytest.skip("Playwright is not installed (the dev extra)", allow_module_level=True)

pytestmark = pytest.mark.slow  # a browser and worker processes
expect.set_options(timeout=WAIT_MS)

GRACE = 5.0  # seconds a killed worker keeps its claims
JOB = "lab:modifiers:Rotate"


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


async def set_moment(page: Any, moment_ms: int) -> None:
    """Move the timeline's slider to `moment_ms`, as a drag does (an `input` event)."""
    await page.eval_on_selector(
        "#at-slider",
        "(slider, value) => { slider.value = String(value);"
        " slider.dispatchEvent(new Event('input', { bubbles: true })); }",
        moment_ms,
    )


async def screenshot(page: Any, path: Path) -> None:
    await page.screenshot(path=str(path), full_page=True)
    print(f"console screenshot: {path}")


async def test_a_killed_worker_goes_disconnected_then_lost_live_and_its_timeline_shows_it(
    start_host, spawn_worker, tmp_path
):
    running = await start_host(disconnect_grace_seconds=GRACE, sweep_interval_seconds=1)
    api = running.api()
    victim = await spawn_worker(running.url, "lab", "Rotate")
    submitted = await api.post(f"/rooms/lab/tasks/{JOB}", json={"payload": {}})
    task_id = submitted.json()["id"]
    assert (await victim.claim())["id"] == task_id  # it holds the task, unfinished
    rescuer = await spawn_worker(running.url, "lab", "Rotate", "--serve")

    async with chromium() as browser:
        errors: list[str] = []  # uncaught script errors of the page
        page = await open_console(browser, running.url, "tok-alice", errors)
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads

        def worker_row(worker_id: str) -> Any:
            return page.locator(f"tr.worker[data-worker-id='{worker_id}']")

        killed, task = worker_row(victim.worker_id), page.locator(f"tr[data-task-id='{task_id}']")
        await expect(killed).to_have_attribute("data-state", "online")
        await expect(worker_row(rescuer.worker_id)).to_have_attribute("data-state", "online")
        await expect(killed.locator("td.held")).to_contain_text(task_id[:8])
        await expect(task).to_have_attribute("data-status", "claimed")
        await expect(task).to_have_attribute("data-worker-id", victim.worker_id)

        await victim.kill()
        await expect(killed).to_have_attribute("data-state", "disconnected")
        countdown = killed.locator("[data-countdown]")
        await expect(countdown).to_have_text(re.compile(r"^lost in \d+(\.\d)? s$"))
        left = float(re.findall(r"[\d.]+", await countdown.inner_text())[0])
        assert 0 < left <= GRACE
        await expect(killed.locator(".reason")).to_have_text("transport close")
        await expect(killed).to_have_attribute("data-state", "lost")
        await expect(killed.locator("[data-reason]")).to_have_text(re.compile("grace"))
        await expect(task).to_have_attribute("data-status", "completed")
        await expect(task).to_have_attribute("data-worker-id", rescuer.worker_id)
        await expect(task).to_have_attribute("data-attempt", "2")
        await expect(task.locator("td.detail")).to_have_text("requeued once")
        assert await page.evaluate("window.sameDocument") is True  # never reloaded
        await screenshot(page, tmp_path / "console-overview.png")

        await killed.locator("a").first.click()  # its timeline, in the same document
        chart = page.locator(f"svg#worker-timeline[data-worker-id='{victim.worker_id}']")
        await expect(chart).to_have_attribute("data-ended", "true")
        connection = chart.locator("[data-kind=connection]")
        await expect(connection).to_have_count(1)
        await expect(connection).to_have_attribute("data-sid", victim.sid)
        claim = chart.locator("[data-kind=claim]")
        await expect(claim).to_have_count(1)
        for name, value in {"task-id": task_id, "attempt": "1", "outcome": "requeued"}.items():
            await expect(claim).to_have_attribute(f"data-{name}", value)
        disconnect = chart.locator("[data-kind=disconnect]")
        await expect(disconnect).to_have_attribute("data-reason", "transport close")
        await expect(chart.locator("[data-kind=grace]")).to_have_count(1)
        await expect(chart.locator("[data-kind=resume]")).to_have_count(0)
        end = chart.locator("[data-kind=end]")
        await expect(end).to_have_attribute("data-state", "lost")
        await expect(end).to_have_attribute("data-reason", re.compile("grace"))
        release = chart.locator("[data-kind=release]")
        await expect(release).to_have_attribute("data-task-id", task_id)
        await expect(release).to_have_attribute("data-outcome", "requeued")
        disconnected_at = ms(await disconnect.get_attribute("data-at"))
        ended_at = ms(await end.get_attribute("data-at"))
        assert ended_at >= disconnected_at + GRACE * 1000 - 1  # lost when the window closed
        assert await page.evaluate("window.sameDocument") is True

        state = page.locator("#state-at")
        await set_moment(page, disconnected_at - 1)  # just before the kill was noticed
        await expect(state).to_have_attribute("data-status", "online")
        await expect(state).to_have_attribute("data-held", task_id)
        await expect(chart.locator("[data-kind=cursor]")).to_have_attribute("visibility", "visible")
        assert "at=" in page.url
        await set_moment(page, disconnected_at + 1)  # in its grace window: still holding
        await expect(state).to_have_attribute("data-status", "disconnected")
        await expect(state).to_have_attribute("data-held", task_id)
        await page.click("#at-now")
        await expect(state).to_have_attribute("data-status", "lost")
        await expect(state).to_have_attribute("data-held", "")
        await screenshot(page, tmp_path / "console-worker.png")

        moment = f"{page.url.split('?')[0]}?at=2000-01-01T00:00:00Z"  # before it existed
        await page.goto(moment)  # a new document: the tab kept its token
        await expect(state).to_have_attribute("data-status", "absent")

        await chart.locator("[data-kind=claim]").click()  # the task's page
        attempts = page.locator(f"svg#task-timeline[data-task-id='{task_id}'] [data-kind=attempt]")
        await expect(attempts).to_have_count(2)
        first, second = attempts.nth(0), attempts.nth(1)
        await expect(first).to_have_attribute("data-outcome", "requeued")
        await expect(first).to_have_attribute("data-worker-id", victim.worker_id)
        await expect(second).to_have_attribute("data-outcome", "completed")
        await expect(second).to_have_attribute("data-worker-id", rescuer.worker_id)
        task_chart = page.locator("svg#task-timeline")
        for kind in ("submitted", "requeue", "final"):
            await expect(task_chart.locator(f"[data-kind={kind}]")).to_have_count(1)
        await screenshot(page, tmp_path / "console-task.png")
        assert errors == []


async def test_no_data_reaches_the_page_without_a_token_the_host_accepts(start_host):
    running = await start_host()
    await running.api().post("/workers")
    async with chromium() as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        data_requests: list[str] = []
        page.on(
            "request",
            lambda request: (
                data_requests.append(request.url)
                if "/api/" in request.url or "/v1/" in request.url
                else None
            ),
        )
        await page.goto(running.url + "/console")
        await expect(page.locator("#login")).to_be_visible()
        assert data_requests == []
        await page.fill("#login input[name=token]", "not-a-token")
        await page.click("#login button")
        await expect(page.locator("#login .refused")).to_have_text("The host refused that token.")
        await expect(page.locator("tr.worker")).to_have_count(0)
        assert await page.evaluate("sessionStorage.length") == 0
        await page.fill("#login input[name=token]", "tok-bob")
        await page.click("#login button")
        await expect(page.locator("tr.worker")).to_have_count(1)
        await page.click("#forget")
        await expect(page.locator("#login")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 0
        assert errors == []


async def test_a_worker_page_draws_a_resume_and_follows_the_worker_to_its_end(
    start_host, spawn_worker
):
    running = await start_host(disconnect_grace_seconds=30.0)
    worker = await spawn_worker(running.url, "lab", "Rotate")
    await worker.send("drop-old")  # its only connection closes: disconnected, in grace
    await worker.expect("dropped")
    api = running.api()
    async with asyncio.timeout(WAIT_MS / 1000):  # the host records it after the close
        while (await api.get(f"/workers/{worker.worker_id}/history")).json()["state"][
            "status"
        ] != "disconnected":
            await asyncio.sleep(0.05)
    await worker.send("attach", running.url)  # back within the window: resumed
    assert (await worker.expect("attached"))["ack"] == {"ok": True}

    async with chromium() as browser:
        errors: list[str] = []  # uncaught script errors of the page
        page = await open_console(browser, running.url, "tok-alice", errors)
        await page.locator(f"tr.worker[data-worker-id='{worker.worker_id}'] a").first.click()
        chart = page.locator("svg#worker-timeline")
        spans = chart.locator("[data-kind=connection]")
        await expect(spans).to_have_count(2)
        await expect(spans.nth(0)).to_have_attribute("data-sid", worker.sid)
        await expect(spans.nth(1)).to_have_attribute("data-open", "")
        await expect(chart.locator("[data-kind=disconnect]")).to_have_count(1)
        await expect(chart.locator("[data-kind=resume]")).to_have_count(1)
        grace = chart.locator("[data-kind=grace]")
        await expect(grace).to_have_count(1)
        assert await grace.get_attribute("data-open") is None  # closed by the resume
        await expect(chart).to_have_attribute("data-ended", "false")
        await page.evaluate("window.sameDocument = true")

        await worker.send("leave")  # the page follows a live worker without reloading
        await worker.expect("left")
        await expect(chart).to_have_attribute("data-ended", "true")
        end = chart.locator("[data-kind=end]")
        await expect(end).to_have_attribute("data-state", "left")
        await expect(page.locator("#state-at")).to_have_attribute("data-status", "left")
        assert await page.evaluate("window.sameDocument") is True
        assert errors == []


async def test_an_operator_drains_a_worker_and_requeues_a_task_from_the_pages(start_host):
    # Given alice's worker holding two claimed tasks
    running = await start_host()
    api = running.api()
    put = await api.put("/rooms/r1/jobs", json={"category": "modifiers", "name": "Rotate"})
    worker_id = put.json()["worker_id"]
    tasks = []
    for n in range(2):
        submitted = await api.post(
            "/rooms/r1/tasks/r1:modifiers:Rotate", json={"payload": {"n": n}}
        )
        tasks.append(submitted.json()["id"])
        claimed = await api.post("/tasks/claim", json={"worker_id": worker_id})
        assert claimed.json()["task"]["id"] == tasks[-1]

    async with chromium() as browser:
        errors: list[str] = []
        page = await open_console(browser, running.url, "tok-alice", errors)
        answers: list[str] = []

        async def answer(dialog: Any) -> None:  # the reason asked for, as a person types it
            answers.append(dialog.message)
            await dialog.accept("kernel update" if "drain" in dialog.message else "stuck")

        page.on("dialog", answer)
        # When the operator drains it from its page
        await page.goto(f"{running.url}/console/workers/{worker_id}")
        await page.click("#drain")
        # Then the page shows it draining, with the reason and who asked
        await expect(page.locator("#draining")).to_contain_text("kernel update, by alice")
        await expect(page.locator("#drain")).to_have_count(0)  # asked once
        worker = (await api.get(f"/workers/{worker_id}")).json()
        assert worker["draining"] is True

        # When the operator requeues one of its tasks from the task's page
        await page.goto(f"{running.url}/console/tasks/{tasks[0]}")
        await page.click("#requeue")
        # Then the task is pending again, its page says so, and the worker still drains
        await expect(page.locator("#task-head .badge").first).to_have_text("pending")
        await expect(page.locator("#requeue")).to_have_count(0)
        assert (await api.get(f"/tasks/{tasks[0]}")).json()["status"] == "pending"
        history = (await api.get(f"/tasks/{tasks[0]}/history")).json()
        assert any(e["type"] == "TaskRequeued" for e in history["timeline"])
        assert len(answers) == 2 and "drain" in answers[0] and "requeue" in answers[1]

        # A refusal is shown, not swallowed: bob may not requeue alice's other task
        bob_page = await open_console(browser, running.url, "tok-bob", errors)
        bob_page.on("dialog", answer)
        await bob_page.goto(f"{running.url}/console/tasks/{tasks[1]}")
        await bob_page.click("#requeue")
        result = bob_page.locator("#requeue-result")
        await expect(result).to_have_attribute("data-outcome", "refused")
        assert (await api.get(f"/tasks/{tasks[1]}")).json()["status"] == "claimed"
        assert errors == []
    await api.aclose()
