// A worker's life and a task's attempts, drawn as inline SVG from the REST history
// routes (REST/workers/ID/history[?at=], REST/tasks/ID/history). Every mark carries
// data-kind (connection, grace, registered, join, leave, disconnect, resume, end,
// claim, release, cursor; attempt, submitted, requeue, rejected, final) and the ids
// it is about, so that tests and people alike can find it.

import {
  REST,
  HttpError,
  badge,
  commandButton,
  dateTime,
  duration,
  el,
  getJSON,
  link,
  postJSON,
  setLive,
  serverNow,
  short,
  svg,
  taskLink,
  time,
  workerLink,
} from "./util.js";

const WIDTH = 1100;
const LABEL = 112;
const RIGHT = 16;
const LANE = 26;
const AXIS = 26;
const REFRESH_MS = 1000;
const EVENTS_SHOWN = 300;
const ENDS = { WorkerLost: "lost", WorkerLeft: "left", WorkerDeleted: "deleted" };
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const HELD = new Set(["claimed", "running"]);
const TICKS = [
  100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5,
  216e5, 432e5, 864e5, 1728e5, 6048e5,
];

// --- a worker -----------------------------------------------------------------------

export function showWorker({ main, failed }, id, at) {
  let stopped = false;
  let timer = null;
  let controller = null;
  let full = null;
  let atMs = at && !Number.isNaN(Date.parse(at)) ? Date.parse(at) : null;
  let atRequest = 0;
  let atTimer = null;

  const head = el("div", { class: "page-head", id: "worker-head" });
  const figure = el("div", { class: "figure", id: "timeline" });
  const slider = el("input", { type: "range", id: "at-slider", min: 0, max: 1, step: 1, value: 1, "aria-label": "moment" });
  const atLabel = el("span", { id: "at-label", class: "muted" });
  const nowButton = el("button", { type: "button", id: "at-now" }, "now");
  const statePanel = el("section", { class: "panel", id: "state-at" });
  const lists = el("div", { class: "columns", id: "worker-lists" });
  main.append(
    head,
    el(
      "section",
      { class: "panel" },
      el("h2", {}, "Timeline"),
      figure,
      el("div", { class: "slider" }, el("label", { for: "at-slider" }, "state at"), slider, atLabel, nowButton),
      legend(["completed", "running", "claimed", "requeued", "failed", "cancelled"]),
    ),
    statePanel,
    lists,
  );

  async function load() {
    timer = null;
    controller = new AbortController();
    try {
      full = await getJSON(`${REST}/workers/${encodeURIComponent(id)}/history`, controller.signal);
      if (stopped) return;
      render();
      setLive("ok", `worker history · ${time(new Date(serverNow()).toISOString())}`);
    } catch (error) {
      if (stopped || error.name === "AbortError") return;
      if (notFound(error, main, `No worker ${id} in the log.`) || failed(error)) return;
    }
    if (!full?.state?.ended_at) timer = setTimeout(load, REFRESH_MS);
  }

  function render() {
    const model = workerModel(full);
    renderHead(full, model);
    const chart = drawWorker(model, id);
    figure.replaceChildren(chart.node);
    slider.min = String(model.t0);
    slider.max = String(model.tEnd);
    slider.value = String(atMs ?? model.tEnd);
    slider.oninput = () => {
      atMs = Number(slider.value);
      showAt(chart);
      clearTimeout(atTimer);
      atTimer = setTimeout(loadAt, 120);
    };
    nowButton.onclick = () => {
      atMs = null;
      slider.value = slider.max;
      showAt(chart);
      loadAt();
    };
    showAt(chart);
    renderLists(full);
    if (atMs === null) renderState(full, null);
    else if (!statePanel.dataset.at) loadAt();
    if (!document.body.dataset.rendered) document.body.dataset.rendered = "worker";
  }

  function showAt(chart) {
    chart.cursor(atMs);
    atLabel.textContent = atMs === null ? "now" : dateTime(new Date(atMs).toISOString());
    const url = new URL(location.href);
    if (atMs === null) url.searchParams.delete("at");
    else url.searchParams.set("at", new Date(atMs).toISOString());
    history.replaceState(null, "", url);
  }

  async function loadAt() {
    const request = ++atRequest;
    if (atMs === null) {
      renderState(full, null);
      return;
    }
    const iso = new Date(atMs).toISOString();
    try {
      const then = await getJSON(`${REST}/workers/${encodeURIComponent(id)}/history?at=${encodeURIComponent(iso)}`);
      if (!stopped && request === atRequest) renderState(then, iso);
    } catch (error) {
      if (!stopped) failed(error);
    }
  }

  function renderHead(h, model) {
    const s = h.state;
    head.replaceChildren(
      el("h1", {}, "Worker ", el("code", { title: id }, id)),
      el(
        "p",
        {},
        s ? badge(s.status) : null,
        s ? ` user ${s.user} · registered ${dateTime(s.created_at)}` : "",
        s?.end_reason ? el("span", { class: "reason", "data-reason": s.end_reason }, ` · ${s.end_reason}`) : null,
        ` · ${h.claims.length} claims · ${h.caused.length} released at its end · lived ${duration(model.tEnd - model.t0)}`,
      ),
      s?.draining_since && !s.ended_at
        ? el("p", { id: "draining", class: "reason" }, `draining since ${dateTime(s.draining_since)} (${s.drain_reason ?? ""}, by ${s.drained_by ?? "?"}): claims nothing, leaves when its tasks end`)
        : null,
      s && !s.ended_at && !s.draining_since
        ? commandButton("drain", "Drain", "Why drain this worker? It claims nothing more and leaves when its tasks end (recorded with your name).", (reason) => postJSON(`${REST}/workers/${encodeURIComponent(id)}/drain`, { reason }), reload)
        : null,
    );
  }

  function reload() {
    clearTimeout(timer);
    load();
  }

  function renderState(h, iso) {
    const s = h.state;
    statePanel.dataset.at = iso ?? "";
    statePanel.dataset.status = s?.status ?? "absent";
    statePanel.dataset.held = s ? [...s.tasks].sort().join(" ") : "";
    const title = el("h2", {}, iso ? `State at ${dateTime(iso)}` : "State now");
    if (!s) {
      statePanel.replaceChildren(title, el("p", {}, "The worker did not exist yet."));
      return;
    }
    const rows = [
      ["status", badge(s.status)],
      ["connection", s.sid ? el("code", {}, s.sid) : "none"],
      ["jobs", list(s.jobs, (job) => el("div", {}, job))],
      ["job rooms joined", list(s.rooms, (job) => el("div", {}, job))],
      ["holds", list(s.tasks, (task) => el("div", {}, taskLink(task)))],
      ["providers", list(s.providers ?? [], (p) => el("div", {}, p))],
      ["last heartbeat", dateTime(s.last_heartbeat)],
    ];
    if (s.disconnected_at) rows.push(["disconnected", `${dateTime(s.disconnected_at)} (${s.disconnect_reason ?? ""})`]);
    if (s.grace_deadline) rows.push(["grace until", dateTime(s.grace_deadline)]);
    if (s.ended_at) rows.push(["ended", `${dateTime(s.ended_at)}: ${s.end_reason ?? ""}`]);
    rows.push(["events so far", String(h.timeline.length)]);
    statePanel.replaceChildren(title, el("dl", { class: "facts" }, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  }

  function renderLists(h) {
    const claims = table(
      ["task", "attempt", "claimed", "outcome", "ended", "reason"],
      h.claims.map((c) => [taskLink(c.task_id), String(c.attempt), time(c.claimed_at), badge(c.outcome), time(c.ended_at), c.reason ?? ""]),
    );
    const released = table(
      ["task", "attempt", "at", "outcome", "reason"],
      h.caused.map((r) => [taskLink(r.task_id), String(r.attempt), time(r.at), badge(r.outcome), r.reason ?? ""]),
    );
    lists.replaceChildren(
      el("section", { class: "panel", id: "claims" }, el("h2", {}, "Claims"), claims),
      el("section", { class: "panel", id: "released" }, el("h2", {}, "Released at its end"), released),
      events(h.timeline),
    );
  }

  load();
  return {
    stop() {
      stopped = true;
      controller?.abort();
      clearTimeout(timer);
      clearTimeout(atTimer);
    },
  };
}

/** Spans, marks and bars of a worker's history (times in ms since the epoch). */
export function workerModel(h) {
  const entries = h.timeline;
  const t0 = Date.parse(entries[0].at);
  const endedAt = h.state?.ended_at ? Date.parse(h.state.ended_at) : null;
  const tEnd = Math.max(endedAt ?? serverNow(), Date.parse(entries[entries.length - 1].at));
  const spans = [];
  const graces = [];
  const marks = [];
  let open = null;
  let grace = null;
  const close = (at, how) => {
    if (open) spans.push({ ...open, end: at, how });
    open = null;
  };
  const closeGrace = (at, how) => {
    if (grace) graces.push({ ...grace, end: Math.min(at, grace.deadline), how });
    grace = null;
  };
  for (const entry of entries) {
    const at = Date.parse(entry.at);
    const e = entry.event;
    switch (entry.type) {
      case "WorkerRegistered":
        marks.push({ kind: "registered", at, label: entry.summary });
        break;
      case "ConnectionAttached":
        close(at, "replaced");
        open = { sid: e.sid, start: at };
        break;
      case "WorkerResumed":
        closeGrace(at, "resumed");
        marks.push({ kind: "resume", at, label: entry.summary, sid: e.sid });
        if (!open) open = { sid: e.sid, start: at };
        break;
      case "WorkerDisconnected":
        close(at, "disconnected");
        marks.push({ kind: "disconnect", at, label: entry.summary, reason: e.reason });
        grace = { start: at, deadline: Date.parse(e.grace_deadline) };
        break;
      case "RoomJoined":
        marks.push({ kind: "join", at, label: entry.summary });
        break;
      case "RoomLeft":
        marks.push({ kind: "leave", at, label: entry.summary });
        break;
      default:
        if (ENDS[entry.type]) {
          close(at, "ended");
          closeGrace(at, "ended");
          const reason = h.state?.end_reason ?? e.reason ?? e.by ?? "";
          marks.push({ kind: "end", at, state: ENDS[entry.type], reason, label: entry.summary });
        }
    }
  }
  if (open) spans.push({ ...open, end: tEnd, open: true });
  if (grace) graces.push({ ...grace, end: Math.min(tEnd, grace.deadline), open: true });
  const claims = h.claims.map((c) => ({
    ...c,
    start: Date.parse(c.claimed_at),
    end: c.ended_at ? Date.parse(c.ended_at) : tEnd,
  }));
  const releases = h.caused.map((r) => ({ ...r, time: Date.parse(r.at) }));
  return { t0, tEnd, spans, graces, marks, claims, releases, ended: endedAt !== null };
}

function drawWorker(m, id) {
  const claimLanes = assignLanes(m.claims);
  const lanes = ["connection", ...claimLanes.map((_, i) => (i === 0 ? "claims" : "")), "released"];
  if (claimLanes.length === 0) lanes.splice(1, 0, "claims");
  const chart = frame(m.t0, m.tEnd, lanes, { id: "worker-timeline", "data-worker-id": id, "data-ended": String(m.ended) });
  const { x, laneY, layer } = chart;
  const connection = laneY(0);
  for (const g of m.graces) {
    layer.append(
      svg("rect", {
        class: "grace", "data-kind": "grace", "data-open": g.open === true, x: x(g.start), y: connection + 3,
        width: Math.max(2, x(g.end) - x(g.start)), height: LANE - 6,
      }, svg("title", {}, `grace window until ${time(new Date(g.deadline).toISOString())}`)),
    );
  }
  for (const s of m.spans) {
    layer.append(
      svg("rect", {
        class: "span", "data-kind": "connection", "data-sid": s.sid, "data-open": s.open === true,
        x: x(s.start), y: connection + 5, width: Math.max(2, x(s.end) - x(s.start)), height: LANE - 10, rx: 3,
      }, svg("title", {}, `connected as ${s.sid}: ${time(iso(s.start))} – ${s.open ? "now" : time(iso(s.end))}`)),
    );
  }
  claimLanes.forEach((lane, index) => {
    const y = laneY(index + 1);
    for (const c of lane) {
      const width = Math.max(3, x(c.end) - x(c.start));
      const label = width > 70 ? svg("text", { x: x(c.start) + 4, y: y + LANE / 2 + 4, class: "bar-label" }, `${short(c.task_id)} #${c.attempt}`) : null;
      layer.append(
        svg(
          "a",
          { href: `${document.body.dataset.base}/tasks/${encodeURIComponent(c.task_id)}`, "data-nav": true },
          svg("rect", {
            class: `claim ${c.outcome}`, "data-kind": "claim", "data-task-id": c.task_id,
            "data-attempt": c.attempt, "data-outcome": c.outcome, x: x(c.start), y: y + 4, width, height: LANE - 8, rx: 2,
          }, svg("title", {}, `task ${c.task_id}, attempt ${c.attempt}: ${c.outcome}${c.reason ? ` (${c.reason})` : ""}`)),
          label,
        ),
      );
    }
  });
  const releasedY = laneY(lanes.length - 1);
  for (const r of m.releases) {
    const cx = x(r.time);
    const cy = releasedY + LANE / 2;
    layer.append(
      svg(
        "a",
        { href: `${document.body.dataset.base}/tasks/${encodeURIComponent(r.task_id)}`, "data-nav": true },
        svg("path", {
          class: `release ${r.outcome}`, "data-kind": "release", "data-task-id": r.task_id, "data-outcome": r.outcome,
          "data-attempt": r.attempt, d: `M${cx} ${cy - 7} L${cx + 7} ${cy} L${cx} ${cy + 7} L${cx - 7} ${cy} Z`,
        }, svg("title", {}, `released task ${r.task_id} (attempt ${r.attempt}): ${r.outcome}${r.reason ? `, ${r.reason}` : ""}`)),
      ),
    );
  }
  if (m.releases.length) {
    const last = Math.max(...m.releases.map((r) => r.time));
    const text = `${m.releases.length} released: ${summarize(m.releases.map((r) => r.outcome))}`;
    const right = x(last) > WIDTH - 220;
    layer.append(svg("text", { x: x(last) + (right ? -12 : 12), y: releasedY + LANE / 2 + 4, class: "mark-label", "text-anchor": right ? "end" : "start" }, text));
  }
  const top = AXIS;
  const bottom = laneY(lanes.length);
  for (const mark of m.marks) drawMark(layer, mark, x(mark.at), top, bottom, connection);
  return chart;
}

function drawMark(layer, mark, cx, top, bottom, connection) {
  const attrs = { class: `mark ${mark.kind}`, "data-kind": mark.kind, "data-at": iso(mark.at) };
  const title = svg("title", {}, `${time(iso(mark.at))}: ${mark.label}`);
  if (mark.kind === "join" || mark.kind === "leave") {
    layer.append(svg("line", { ...attrs, x1: cx, x2: cx, y1: connection + 2, y2: connection + 8 }, title));
  } else if (mark.kind === "registered") {
    layer.append(svg("line", { ...attrs, x1: cx, x2: cx, y1: top, y2: bottom }, title));
  } else if (mark.kind === "disconnect") {
    const y = connection + LANE / 2;
    layer.append(
      svg("g", { ...attrs, "data-reason": mark.reason },
        svg("line", { x1: cx, x2: cx, y1: top, y2: bottom }),
        svg("path", { d: `M${cx - 6} ${y - 7} L${cx + 6} ${y - 7} L${cx} ${y + 3} Z` }),
        title),
    );
  } else if (mark.kind === "resume") {
    const y = connection + LANE / 2;
    layer.append(
      svg("g", { ...attrs, "data-sid": mark.sid },
        svg("line", { x1: cx, x2: cx, y1: top, y2: bottom }),
        svg("circle", { cx, cy: y, r: 5 }),
        title),
    );
  } else if (mark.kind === "end") {
    layer.append(
      svg("g", { ...attrs, "data-state": mark.state, "data-reason": mark.reason },
        svg("line", { x1: cx, x2: cx, y1: top, y2: bottom }),
        svg("rect", { x: cx - 5, y: connection + LANE / 2 - 5, width: 10, height: 10 }),
        svg("text", { x: cx - 8, y: top + 12, "text-anchor": "end", class: "mark-label" }, `${mark.state}: ${mark.reason}`),
        title),
    );
  }
}

// --- a task -------------------------------------------------------------------------

export function showTask({ main, failed }, id) {
  let stopped = false;
  let timer = null;
  let controller = null;
  const head = el("div", { class: "page-head", id: "task-head" });
  const figure = el("div", { class: "figure", id: "attempts" });
  const lists = el("div", { class: "columns", id: "task-lists" });
  main.append(
    head,
    el("section", { class: "panel" }, el("h2", {}, "Attempts"), figure, legend(["completed", "running", "claimed", "requeued", "failed", "cancelled"])),
    lists,
  );

  async function load() {
    timer = null;
    controller = new AbortController();
    let h = null;
    try {
      h = await getJSON(`${REST}/tasks/${encodeURIComponent(id)}/history`, controller.signal);
      if (stopped) return;
      render(h);
      setLive("ok", `task history · ${time(new Date(serverNow()).toISOString())}`);
    } catch (error) {
      if (stopped || error.name === "AbortError") return;
      if (notFound(error, main, `No task ${id} in the log.`) || failed(error)) return;
    }
    if (!TERMINAL.has(h?.state?.status)) timer = setTimeout(load, REFRESH_MS);
  }

  function render(h) {
    const s = h.state;
    head.replaceChildren(
      el("h1", {}, "Task ", el("code", { title: id }, id)),
      el(
        "p",
        {},
        s ? badge(s.status) : null,
        s ? ` ${s.job_name} · room ${s.room_id} · submitted by ${s.submitted_by} ${dateTime(s.created_at)} · ${h.attempts.length} attempts` : "",
        s?.error ? el("div", { class: "error" }, s.error) : null,
      ),
      s && HELD.has(s.status)
        ? commandButton("requeue", "Requeue", "Why requeue this task? Its holder's attempt is fenced and it is told the task was cancelled (recorded with your name).", (reason) => postJSON(`${REST}/tasks/${encodeURIComponent(id)}/requeue`, { reason }), () => {
            clearTimeout(timer);
            load();
          })
        : null,
    );
    figure.replaceChildren(drawTask(h, id).node);
    lists.replaceChildren(
      el(
        "section",
        { class: "panel", id: "attempt-list" },
        el("h2", {}, "Attempts"),
        table(
          ["attempt", "worker", "claimed", "started", "ended", "outcome", "reason"],
          h.attempts.map((a) => [String(a.attempt), a.worker_id ? workerLink(a.worker_id) : "server", time(a.claimed_at), time(a.started_at), time(a.ended_at), badge(a.outcome), a.reason ?? ""]),
        ),
      ),
      events(h.timeline),
    );
    if (!document.body.dataset.rendered) document.body.dataset.rendered = "task";
  }

  load();
  return {
    stop() {
      stopped = true;
      controller?.abort();
      clearTimeout(timer);
    },
  };
}

function drawTask(h, id) {
  const entries = h.timeline;
  const t0 = Date.parse(entries[0].at);
  const last = Date.parse(entries[entries.length - 1].at);
  const done = TERMINAL.has(h.state?.status);
  const tEnd = done ? last : Math.max(last, serverNow());
  const lanes = ["task", ...h.attempts.map((a) => `attempt ${a.attempt}`)];
  const chart = frame(t0, tEnd, lanes, { id: "task-timeline", "data-task-id": id, "data-status": h.state?.status ?? "" });
  const { x, laneY, layer } = chart;
  h.attempts.forEach((a, index) => {
    const y = laneY(index + 1);
    const start = Date.parse(a.claimed_at);
    const started = a.started_at ? Date.parse(a.started_at) : null;
    const end = a.ended_at ? Date.parse(a.ended_at) : tEnd;
    const claimedEnd = started ?? end;
    const parts = [
      svg("rect", {
        class: `claim-part ${a.outcome}`, x: x(start), y: y + 4, width: Math.max(2, x(claimedEnd) - x(start)), height: LANE - 8, rx: 2,
      }),
    ];
    if (started !== null) {
      parts.push(svg("rect", { class: `claim ${a.outcome}`, x: x(started), y: y + 4, width: Math.max(2, x(end) - x(started)), height: LANE - 8, rx: 2 }));
    }
    const who = a.worker_id ? `worker ${short(a.worker_id)}` : "the server";
    const label = `#${a.attempt} ${who} · ${a.outcome}${a.reason ? ` (${a.reason})` : ""}`;
    const group = svg(
      "g",
      { class: "attempt", "data-kind": "attempt", "data-attempt": a.attempt, "data-outcome": a.outcome, "data-worker-id": a.worker_id ?? "" },
      parts,
      svg("text", { ...labelPlace(x(start), x(end)), y: y + LANE / 2 + 4, class: "bar-label outside" }, label),
      svg("title", {}, `attempt ${a.attempt} by ${a.worker_id ?? "the server"}: ${a.outcome}${a.reason ? ` (${a.reason})` : ""}`),
    );
    layer.append(a.worker_id ? svg("a", { href: `${document.body.dataset.base}/workers/${encodeURIComponent(a.worker_id)}`, "data-nav": true }, group) : group);
  });
  const taskY = laneY(0) + LANE / 2;
  for (const entry of entries) {
    const kind = { TaskSubmitted: "submitted", TaskRequeued: "requeue", TaskReportRejected: "rejected" }[entry.type]
      ?? (["TaskCompleted", "TaskFailed", "TaskCancelled"].includes(entry.type) ? "final" : null);
    if (!kind) continue;
    const cx = x(Date.parse(entry.at));
    layer.append(
      svg("circle", { class: `mark ${kind}`, "data-kind": kind, "data-at": entry.at, cx, cy: taskY, r: kind === "rejected" ? 4 : 6 },
        svg("title", {}, `${time(entry.at)}: ${entry.summary}`)),
    );
  }
  return chart;
}

// --- drawing ------------------------------------------------------------------------

/** An SVG with a time axis from t0 to t1 and one labelled band per lane. */
function frame(t0, t1, lanes, attrs) {
  const span = Math.max(t1 - t0, 1000);
  const pad = span * 0.03;
  const lo = t0 - pad;
  const hi = t0 + span + pad;
  const x = (t) => LABEL + ((t - lo) / (hi - lo)) * (WIDTH - LABEL - RIGHT);
  const laneY = (i) => AXIS + i * LANE;
  const height = laneY(lanes.length) + 6;
  const root = svg("svg", { ...attrs, viewBox: `0 0 ${WIDTH} ${height}`, width: "100%", role: "img", class: "chart" });
  const grid = svg("g", { class: "grid" });
  lanes.forEach((name, i) => {
    grid.append(svg("rect", { class: i % 2 ? "band odd" : "band", x: LABEL, y: laneY(i), width: WIDTH - LABEL - RIGHT, height: LANE }));
    if (name) grid.append(svg("text", { x: LABEL - 8, y: laneY(i) + LANE / 2 + 4, "text-anchor": "end", class: "lane-label" }, name));
  });
  const step = TICKS.find((s) => (hi - lo) / s <= 8) ?? TICKS[TICKS.length - 1];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) {
    const tx = x(t);
    grid.append(svg("line", { class: "tick", x1: tx, x2: tx, y1: AXIS - 4, y2: laneY(lanes.length) }));
    const label = step < 1000 ? time(iso(t)) : time(iso(t)).slice(0, 8);
    grid.append(svg("text", { class: "tick-label", x: tx, y: AXIS - 8, "text-anchor": "middle" }, label));
  }
  const layer = svg("g", { class: "marks" });
  const cursorLine = svg("line", { class: "cursor", "data-kind": "cursor", x1: 0, x2: 0, y1: AXIS - 4, y2: laneY(lanes.length), visibility: "hidden" });
  root.append(grid, layer, cursorLine);
  const cursor = (t) => {
    if (t === null) {
      cursorLine.setAttribute("visibility", "hidden");
      cursorLine.removeAttribute("data-at");
      return;
    }
    const cx = x(Math.min(Math.max(t, lo), hi));
    cursorLine.setAttribute("x1", cx);
    cursorLine.setAttribute("x2", cx);
    cursorLine.setAttribute("visibility", "visible");
    cursorLine.setAttribute("data-at", iso(t));
  };
  return { node: root, x, laneY, layer, cursor };
}

/** Where a bar's label fits: after it, else before it, else over its start. */
function labelPlace(x0, x1) {
  const room = 240;
  if (x1 + 6 + room < WIDTH - RIGHT) return { x: x1 + 6, "text-anchor": "start" };
  if (x0 - 6 - room > LABEL) return { x: x0 - 6, "text-anchor": "end" };
  return { x: x0 + 4, "text-anchor": "start" };
}

/** Claims in as few lanes as no two overlapping bars share one. */
function assignLanes(claims) {
  const lanes = [];
  const ends = [];
  for (const claim of [...claims].sort((a, b) => a.start - b.start)) {
    let index = ends.findIndex((end) => end <= claim.start);
    if (index < 0) {
      index = lanes.length;
      lanes.push([]);
      ends.push(0);
    }
    lanes[index].push(claim);
    ends[index] = claim.end;
  }
  return lanes;
}

function legend(outcomes) {
  return el("div", { class: "legend" }, outcomes.map((o) => el("span", { class: `key ${o}` }, o)));
}

function events(timeline) {
  const shown = timeline.slice(-EVENTS_SHOWN).reverse();
  return el(
    "section",
    { class: "panel", id: "events" },
    el("h2", {}, `Events (${timeline.length}${timeline.length > EVENTS_SHOWN ? `, newest ${EVENTS_SHOWN} shown` : ""})`),
    table(["#", "at", "event", "what"], shown.map((e) => [String(e.version), time(e.at), e.type, e.summary])),
  );
}

function table(headings, rows) {
  if (!rows.length) return el("p", { class: "muted" }, "none");
  return el(
    "div",
    { class: "scroll" },
    el(
      "table",
      { class: "list" },
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
    ),
  );
}

function list(items, render) {
  const sorted = [...items].sort();
  return sorted.length ? sorted.map(render) : "none";
}

function summarize(outcomes) {
  const counts = {};
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
  return Object.entries(counts).map(([o, n]) => `${n} ${o}`).join(", ");
}

function notFound(error, main, text) {
  if (!(error instanceof HttpError) || (error.status !== 404 && error.status !== 422)) return false;
  main.replaceChildren(el("section", { class: "panel", id: "not-found" }, el("h1", {}, "Not found"), el("p", {}, text), link("", "back to the overview")));
  setLive("ok", "not found");
  return true;
}

function iso(ms) {
  return new Date(ms).toISOString();
}
