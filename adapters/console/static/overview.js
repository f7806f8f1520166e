// The live overview: workers, jobs and recent tasks. Polls BASE/api/overview every
// POLL_MS with the token of what it shows (`since`); the host answers `changed:
// false` until something changed, so an idle console costs one small answer per poll.
// Filters (room, user, worker state, task status) and pages are the server's: the
// page only ever holds one page of each list.

import {
  BASE,
  badge,
  el,
  getJSON,
  noteServerNow,
  setLive,
  taskLink,
  tickClocks,
  time,
  workerLink,
} from "./util.js";

const POLL_MS = 500;
const HIDDEN_POLL_MS = 5000;
const CLOCK_MS = 200;
const WORKER_STATES = ["all", "live", "ended", "online", "disconnected", "lost", "left", "deleted"];
const TASK_STATUSES = ["", "pending", "claimed", "running", "completed", "failed", "cancelled"];
const FILTERS = ["room", "user", "state", "status"];

export function showOverview({ main, failed }, params) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) ?? ""]));
  if (!WORKER_STATES.includes(filters.state)) filters.state = "all";
  const pages = { offset: 0, job_offset: 0, task_offset: 0 };
  let token = null;
  let stopped = false;
  let timer = null;
  let controller = null;
  let errors = 0;
  let rendered = false;

  const counts = el("div", { class: "counts", id: "counts" });
  const workers = table("workers", ["worker", "state", "user", "jobs", "rooms", "held tasks", "last heartbeat"]);
  const jobs = table("jobs", ["job", "room", "queue", "workers", "running tasks of lost workers"]);
  const tasks = table("tasks", ["task", "job", "room", "status", "attempt", "worker", "submitted by", "submitted", "detail"]);
  main.append(
    filterBar(),
    counts,
    section("Workers", workers, "workers"),
    el("div", { class: "columns wide-right" }, section("Jobs", jobs, "jobs"), section("Recent tasks", tasks, "tasks")),
  );

  function filterBar() {
    const text = (name, placeholder) =>
      el("input", { name, value: filters[name], placeholder, type: "search", "aria-label": name, autocomplete: "off" });
    const select = (name, values, label) =>
      el(
        "select",
        { name, "aria-label": label },
        values.map((value) => el("option", { value, selected: value === filters[name] }, value || "any status")),
      );
    const form = el(
      "form",
      { class: "filters", id: "filters" },
      el("label", {}, "room ", text("room", "any room")),
      el("label", {}, "user ", text("user", "any user")),
      el("label", {}, "workers ", select("state", WORKER_STATES, "worker state")),
      el("label", {}, "tasks ", select("status", TASK_STATUSES, "task status")),
    );
    let typing = null;
    const apply = () => {
      for (const name of FILTERS) filters[name] = form.elements[name].value.trim();
      for (const key of Object.keys(pages)) pages[key] = 0;
      const shown = new URLSearchParams();
      for (const name of FILTERS) {
        if (filters[name] && !(name === "state" && filters[name] === "all")) shown.set(name, filters[name]);
      }
      const search = shown.toString();
      history.replaceState(null, "", BASE + (search ? `?${search}` : ""));
      refresh();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      apply();
    });
    form.addEventListener("change", (event) => {
      if (event.target.tagName === "SELECT") apply();
    });
    form.addEventListener("input", (event) => {
      if (event.target.tagName !== "INPUT") return;
      clearTimeout(typing);
      typing = setTimeout(apply, 300);
    });
    return form;
  }

  function query() {
    const q = new URLSearchParams();
    for (const name of FILTERS) {
      if (filters[name] && !(name === "state" && filters[name] === "all")) q.set(name, filters[name]);
    }
    for (const [key, value] of Object.entries(pages)) if (value) q.set(key, value);
    if (token) q.set("since", token);
    return q;
  }

  async function poll() {
    timer = null;
    controller = new AbortController();
    const sent = Date.now();
    try {
      const data = await getJSON(`${BASE}/api/overview?${query()}`, controller.signal);
      if (stopped) return;
      noteServerNow(data.now, sent, Date.now());
      token = data.token;
      if (data.changed) render(data);
      errors = 0;
      setLive("ok", `live · ${time(data.now)}`);
    } catch (error) {
      if (stopped || error.name === "AbortError") return;
      if (failed(error)) return;
      errors += 1;
    }
    const wait = document.hidden ? HIDDEN_POLL_MS : POLL_MS * Math.min(2 ** errors, 20);
    timer = setTimeout(poll, wait);
  }

  function refresh() {
    token = null;
    controller?.abort();
    clearTimeout(timer);
    poll();
  }

  function render(data) {
    renderCounts(data);
    workers.body.replaceChildren(...data.workers.items.map(workerRow));
    jobs.body.replaceChildren(...data.jobs.items.map(jobRow));
    tasks.body.replaceChildren(...data.tasks.items.map(taskRow));
    empty(workers, data.workers.items, "no workers match");
    empty(jobs, data.jobs.items, "no jobs match");
    empty(tasks, data.tasks.items, "no tasks match");
    pager(workers, data.workers, "offset", data.workers.offset + data.workers.limit < data.workers.total);
    pager(jobs, data.jobs, "job_offset", data.jobs.offset + data.jobs.limit < data.jobs.total);
    pager(tasks, data.tasks, "task_offset", data.tasks.has_more);
    if (data.tasks.truncated) {
      const note = `searched the newest ${data.tasks.searched.toLocaleString()} tasks; older matches are not shown`;
      tasks.pager.prepend(el("span", { class: "muted", "data-truncated": true }, note));
    }
    tickClocks(main);
    if (!rendered) {
      rendered = true;
      performance.mark("wl-first-render");
      document.body.dataset.rendered = "overview";
    }
  }

  function renderCounts(data) {
    const chip = (state, n) =>
      el(
        "button",
        {
          type: "button",
          class: `chip ${state}${filters.state === state ? " active" : ""}`,
          "data-count": state,
          title: `show ${state} workers`,
          onclick: () => {
            const select = main.querySelector("select[name=state]");
            select.value = filters.state === state ? "all" : state;
            select.dispatchEvent(new Event("change", { bubbles: true }));
          },
        },
        el("b", {}, n.toLocaleString()),
        ` ${state}`,
      );
    counts.replaceChildren(
      ...Object.entries(data.counts).map(([state, n]) => chip(state, n)),
      el("span", { class: "chip total", "data-count": "held" }, el("b", {}, data.held.toLocaleString()), " held tasks"),
      el("span", { class: "chip total", "data-count": "queued" }, el("b", {}, data.queued.toLocaleString()), " queued"),
    );
  }

  function pager(list, page, key, hasNext) {
    const size = page.limit;
    const first = page.items.length ? page.offset + 1 : 0;
    const last = page.offset + page.items.length;
    const of = page.total !== undefined ? ` of ${page.total.toLocaleString()}` : "";
    const go = (offset) => () => {
      pages[key] = Math.max(0, offset);
      refresh();
    };
    list.pager.replaceChildren(
      el("button", { type: "button", disabled: page.offset === 0, onclick: go(page.offset - size) }, "‹ newer"),
      el("span", { "data-range": list.name }, `${first.toLocaleString()}–${last.toLocaleString()}${of}`),
      el("button", { type: "button", disabled: !hasNext, onclick: go(page.offset + size) }, "older ›"),
    );
  }

  const clocks = setInterval(() => tickClocks(main), CLOCK_MS);
  const onVisible = () => {
    if (!document.hidden && !stopped) refresh();
  };
  document.addEventListener("visibilitychange", onVisible);
  poll();
  return {
    stop() {
      stopped = true;
      controller?.abort();
      clearTimeout(timer);
      clearInterval(clocks);
      document.removeEventListener("visibilitychange", onVisible);
    },
  };
}

function table(name, headings) {
  const body = el("tbody");
  const node = el(
    "table",
    { class: `list ${name}`, id: `${name}-table` },
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    body,
  );
  return { name, node, body, columns: headings.length, pager: el("div", { class: "pager", id: `${name}-pager` }) };
}

function section(title, list, id) {
  return el("section", { class: "panel", id }, el("h2", {}, title), el("div", { class: "scroll" }, list.node), list.pager);
}

function empty(list, items, text) {
  if (!items.length) list.body.append(el("tr", { class: "empty" }, el("td", { colspan: list.columns }, text)));
}

function jobName(fullName) {
  return fullName.split(":").slice(2).join(":") || fullName;
}

function workerState(w) {
  const cell = el("td", { class: "state" }, badge(w.state));
  if (w.state === "disconnected") {
    cell.append(
      " ",
      el("span", { class: "countdown", "data-countdown": w.grace_deadline }, ""),
      el("div", { class: "reason" }, w.disconnect_reason ?? ""),
    );
  } else if (w.state === "online") {
    cell.append(" ", el("span", { class: "muted" }, w.connected ? "connected" : "REST only"));
  } else {
    cell.append(el("div", { class: "reason", "data-reason": w.end_reason ?? "" }, w.end_reason ?? ""), el("div", { class: "muted" }, `at ${time(w.ended_at)}`));
  }
  return cell;
}

function workerRow(w) {
  const held = el(
    "td",
    { class: "held", "data-held": w.held_count },
    w.held_count ? el("b", {}, String(w.held_count)) : "0",
    w.held.map((task) => el("div", { class: "held-task" }, taskLink(task.id), " ", badge(task.status), " ", jobName(task.job_name))),
  );
  return el(
    "tr",
    { class: `worker ${w.state}`, "data-worker-id": w.id, "data-state": w.state },
    el("td", {}, workerLink(w.id)),
    workerState(w),
    el("td", {}, w.user),
    el("td", { class: "jobs" }, w.jobs.map((job) => el("div", { title: job }, jobName(job))), w.providers.map((p) => el("div", { title: p, class: "muted" }, `provider ${jobName(p)}`))),
    el("td", {}, w.rooms.join(", ")),
    held,
    el("td", { title: w.last_heartbeat }, w.state === "online" || w.state === "disconnected" ? el("span", { "data-ago": w.last_heartbeat }, "") : el("span", { class: "muted" }, time(w.last_heartbeat))),
  );
}

function jobRow(job) {
  return el(
    "tr",
    { class: "job", "data-job": job.full_name, "data-queue": job.queue_depth, "data-workers": job.workers },
    el("td", { title: job.full_name }, `${job.category}:${job.name}`),
    el("td", {}, job.room_id),
    el("td", { class: "num" }, job.queue_depth.toLocaleString()),
    el("td", { class: "num" }, String(job.workers)),
    el("td", {}, job.on_worker_lost),
  );
}

function taskRow(t) {
  let detail = "";
  if (t.status === "pending" && t.queue_position) detail = `#${t.queue_position} in queue`;
  if (t.requeues) detail = `${detail}${detail ? ", " : ""}requeued ${t.requeues === 1 ? "once" : `${t.requeues} times`}`;
  return el(
    "tr",
    { class: `task ${t.status}`, "data-task-id": t.id, "data-status": t.status, "data-attempt": t.attempt, "data-worker-id": t.worker_id ?? "" },
    el("td", {}, taskLink(t.id)),
    el("td", { title: t.job_name }, jobName(t.job_name)),
    el("td", {}, t.room_id),
    el("td", {}, badge(t.status)),
    el("td", { class: "num" }, String(t.attempt)),
    el("td", {}, workerLink(t.worker_id)),
    el("td", {}, t.submitted_by),
    el("td", { title: t.created_at }, el("span", { "data-ago": t.created_at }, "")),
    el("td", { class: "detail" }, t.error ? el("span", { class: "error", title: t.error }, t.error) : detail),
  );
}
