// DOM, SVG, time and HTTP helpers shared by the console's pages. Text is always set
// with textContent and attributes with setAttribute: nothing the host returns is
// ever parsed as HTML.

export const BASE = document.body.dataset.base;
export const REST = document.body.dataset.rest;
const TOKEN_KEY = "workerledger.console.token";
const SVG_NS = "http://www.w3.org/2000/svg";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class Unauthorized extends Error {}

export class HttpError extends Error {
  constructor(status, text) {
    super(`HTTP ${status}: ${text.slice(0, 200)}`);
    this.status = status;
    this.body = text;
  }
}

// Server time minus this tab's clock, from the last answer that said `now`.
let skewMs = 0;

export function noteServerNow(iso, sentAt, receivedAt) {
  const server = Date.parse(iso);
  if (!Number.isNaN(server)) skewMs = server - (sentAt + receivedAt) / 2;
}

export function serverNow() {
  return Date.now() + skewMs;
}

/** GET `url` with the tab's token; 401 forgets the token and throws Unauthorized. */
export function getJSON(url, signal) {
  return request(url, { signal });
}

/** POST `body` as JSON to `url` with the tab's token (an operator command); errors as
 * getJSON's. */
export function postJSON(url, body) {
  return request(url, { method: "POST", body: JSON.stringify(body) }, { "Content-Type": "application/json" });
}

async function request(url, init, headers = {}) {
  const response = await fetch(url, {
    ...init,
    headers: { Authorization: `Bearer ${getToken()}`, ...headers },
    cache: "no-store",
  });
  if (response.status === 401) {
    forgetToken();
    throw new Unauthorized("the host refused the token");
  }
  if (!response.ok) throw new HttpError(response.status, await response.text());
  return response.json();
}

/** A button that asks why (the reason is recorded in the log with the caller's name),
 * then runs `act(reason)`; a refusal (403, 404, 409 ...) is shown next to it. */
export function commandButton(id, label, question, act, onDone) {
  const result = el("span", { class: "reason", id: `${id}-result`, role: "status" });
  const button = el("button", { type: "button", id }, label);
  button.onclick = async () => {
    const reason = window.prompt(question);
    if (!reason) return;
    button.disabled = true;
    try {
      await act(reason);
      result.textContent = ` ${label.toLowerCase()}: asked`;
      result.dataset.outcome = "ok";
      onDone();
    } catch (error) {
      result.dataset.outcome = "refused";
      result.textContent = ` refused: ${refusal(error)}`;
      button.disabled = false;
    }
  };
  return el("span", { class: "command" }, button, result);
}

function refusal(error) {
  if (!(error instanceof HttpError)) return String(error.message ?? error);
  try {
    const problem = JSON.parse(error.body);
    return problem.detail ?? problem.title ?? `HTTP ${error.status}`;
  } catch {
    return `HTTP ${error.status}`;
  }
}

/** An element: `attrs` (data-* and others as attributes, `class`, `on*` listeners) and
 * children (strings become text nodes; null and false are skipped). */
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? String(child) : child);
  }
  return node;
}

export function short(id) {
  return id ? String(id).slice(0, 8) : "–";
}

export function link(path, text, attrs = {}) {
  return el("a", { href: BASE + path, "data-nav": true, ...attrs }, text);
}

export function workerLink(id) {
  return id ? link(`/workers/${encodeURIComponent(id)}`, short(id), { title: id, class: "id" }) : "–";
}

export function taskLink(id) {
  return link(`/tasks/${encodeURIComponent(id)}`, short(id), { title: id, class: "id" });
}

export function time(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

export function dateTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return `${date.toLocaleDateString()} ${time(iso)}`;
}

export function duration(ms) {
  const s = Math.abs(ms) / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function ago(iso) {
  return iso ? `${duration(serverNow() - Date.parse(iso))} ago` : "–";
}

export function badge(kind, text) {
  return el("span", { class: `badge ${kind}`, "data-badge": kind }, text ?? kind);
}

/** Refresh every `[data-countdown]` (grace deadlines) and `[data-ago]` under `root`. */
export function tickClocks(root) {
  for (const node of root.querySelectorAll("[data-countdown]")) {
    const left = Date.parse(node.dataset.countdown) - serverNow();
    node.textContent = left > 0 ? `lost in ${duration(left)}` : "grace over: ending…";
  }
  for (const node of root.querySelectorAll("[data-ago]")) {
    node.textContent = ago(node.dataset.ago);
  }
}

export function setLive(state, text) {
  const live = document.getElementById("live");
  live.dataset.live = state;
  live.textContent = text;
}
