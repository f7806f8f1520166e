// The console's entry: the token gate and the page router. One HTML shell serves
// BASE (the overview), BASE/workers/ID (a worker's timeline) and BASE/tasks/ID (a
// task's attempts); links with data-nav change pages without reloading.

import { showOverview } from "./overview.js";
import { showTask, showWorker } from "./timeline.js";
import { BASE, Unauthorized, el, forgetToken, getToken, setLive, setToken } from "./util.js";

const main = document.getElementById("main");
const forget = document.getElementById("forget");
let current = null; // the shown page: { stop() }

function route() {
  current?.stop();
  current = null;
  main.replaceChildren();
  if (!getToken()) {
    askToken();
    return;
  }
  forget.hidden = false;
  const path = location.pathname.slice(BASE.length);
  const params = new URLSearchParams(location.search);
  const context = { main, failed };
  let match;
  if ((match = path.match(/^\/workers\/([^/]+)$/))) {
    current = showWorker(context, decodeURIComponent(match[1]), params.get("at"));
  } else if ((match = path.match(/^\/tasks\/([^/]+)$/))) {
    current = showTask(context, decodeURIComponent(match[1]));
  } else {
    current = showOverview(context, params);
  }
}

/** A page's fetch failed: a refused token asks again, anything else is shown. */
function failed(error) {
  if (error instanceof Unauthorized) {
    current?.stop();
    current = null;
    askToken("The host refused that token.");
    return true;
  }
  setLive("error", `offline: ${error.message}`);
  return false;
}

function askToken(message) {
  forget.hidden = true;
  setLive("idle", "no token");
  main.replaceChildren();
  const input = el("input", {
    type: "password",
    name: "token",
    autocomplete: "off",
    placeholder: "bearer token",
    required: true,
    "aria-label": "bearer token",
  });
  const form = el(
    "form",
    { class: "login", id: "login" },
    el("h1", {}, "workerledger console"),
    el("p", {}, "The host's data needs one of its bearer tokens. It is kept for this tab only."),
    message ? el("p", { class: "refused", role: "alert" }, message) : null,
    input,
    el("button", { type: "submit" }, "Open"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    setToken(token);
    route();
  });
  main.append(form);
  input.focus();
}

export function navigate(href) {
  history.pushState(null, "", href);
  route();
}

document.addEventListener("click", (event) => {
  const anchor = event.target.closest?.("a[data-nav]");
  if (!anchor || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(anchor.getAttribute("href"));
});
window.addEventListener("popstate", route);
forget.addEventListener("click", () => {
  forgetToken();
  route();
});
route();
