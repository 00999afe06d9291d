// regen's dashboard: follows the service's event streams and calls its action routes.
// The pages are rendered by the server; this script only keeps them live.
"use strict";

const BASE = () => document.body.dataset.base || "";

const RUN_EVENTS = ["run.queued", "run.started", "run.succeeded", "run.partial", "run.failed",
  "run.cancelled"];

function parse(message) {
  // An SSE message of the service: its data is the event as JSON ({type, data, seq, …}).
  let body = {};
  try { body = JSON.parse(message.data); } catch (_) { body = { data: message.data }; }
  const type = body.type || (message.type !== "message" ? message.type : "");
  return { type, data: body.data !== undefined ? body.data : body, body };
}

function follow(url, handle, types = RUN_EVENTS) {
  // EventSource reconnects by itself and sends Last-Event-ID: nothing is lost or repeated.
  // The service names each event by its type; ``end`` says the run is over.
  const source = new EventSource(url, { withCredentials: true });
  const on = (message) => handle(parse(message));
  source.onmessage = on;
  for (const type of types) source.addEventListener(type, on);
  source.addEventListener("end", () => source.close());
  return source;
}

async function refresh(selectors) {
  // Swap parts of the page for their freshly rendered versions.
  const answer = await fetch(location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  for (const selector of selectors) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (now && next) now.replaceWith(next);
  }
  wire();
}

function later(fn, ms) {
  let timer = null;
  return () => { if (!timer) timer = setTimeout(() => { timer = null; fn(); }, ms); };
}

async function post(url) {
  const answer = await fetch(url, { method: "POST", credentials: "same-origin" });
  let body = null;
  try { body = await answer.json(); } catch (_) { body = null; }
  if (!answer.ok) {
    const detail = body && (body.detail || body.message);
    alert(typeof detail === "string" ? detail : `${url}: HTTP ${answer.status}`);
    return null;
  }
  return body || {};
}

// --- the runs list --------------------------------------------------------------------------

function wireRuns() {
  for (const button of document.querySelectorAll("button[data-retry]")) {
    button.onclick = async () => {
      button.disabled = true;
      if (await post(button.dataset.retry)) await refresh(["#runs"]);
      button.disabled = false;
    };
  }
}

// --- a run ----------------------------------------------------------------------------------

function wireSteps() {
  const list = document.getElementById("steps");
  const dialog = document.getElementById("confirm-retry");
  if (!list || !dialog) return;
  const steps = [...list.querySelectorAll("button.step-button")];
  steps.forEach((button, index) => {
    button.onclick = () => {
      const again = steps.slice(index).map((b) => b.dataset.step);
      const effects = steps.slice(index).filter((b) => b.dataset.sideEffect === "yes")
        .map((b) => b.dataset.step);
      document.getElementById("confirm-text").textContent =
        `Retry from “${button.dataset.step}”: ${again.join(", ")} will run again; ` +
        "the steps before it keep their results.";
      const warning = document.getElementById("confirm-warning");
      warning.hidden = effects.length === 0;
      warning.textContent = effects.length
        ? `Warning: ${effects.join(", ")} acts outside (a publish, a payment) and will do so again.`
        : "";
      dialog.returnValue = "";
      dialog.onclose = async () => {
        if (dialog.returnValue !== "retry") return;
        const run = list.dataset.run;
        const url = `${BASE()}/api/runs/${run}/retry/${encodeURIComponent(button.dataset.step)}`;
        if (await post(url)) location.reload();
      };
      dialog.showModal();
      document.getElementById("confirm-go").focus();
    };
  });
}

function logLine(event) {
  const line = document.createElement("li");
  const what = document.createElement("strong");
  what.textContent = event.type || "event";
  line.append(what, " ");
  const data = event.data && typeof event.data === "object" ? event.data : {};
  const text = data.message || data.text || (data.error && data.error.message) || "";
  const where = data.step ? `${data.step}${data.item !== undefined ? `[${data.item}]` : ""} ` : "";
  line.append(`${where}${typeof text === "string" ? text : JSON.stringify(text)}`);
  if (event.type) line.className = event.type.replace(/\./g, "-");
  return line;
}

function streamFor(step) {
  const box = document.getElementById("streams");
  let pre = box.querySelector(`pre[data-step="${CSS.escape(step)}"]`);
  if (!pre) {
    pre = document.createElement("pre");
    pre.dataset.step = step;
    pre.className = "stream";
    box.append(pre);
  }
  return pre;
}

function wireRun() {
  const log = document.getElementById("log");
  if (!log || log.dataset.following) return;
  log.dataset.following = "yes";
  const update = later(() => refresh(["#steps", "#run-status", "section.error"]), 150);
  follow(log.dataset.source, (event) => {
    const data = event.data && typeof event.data === "object" ? event.data : {};
    if (event.type === "chunk") {
      streamFor(data.step || "").textContent += data.text || "";
      return;
    }
    if (event.type === "stream.reset") streamFor(data.step || "").textContent = "";
    log.append(logLine(event));
    if (/^(run|step)\./.test(event.type)) update();
  }, JSON.parse(log.dataset.types || "[]"));
}

// --- providers ------------------------------------------------------------------------------

function fmt(value, unit) {
  return value === null || value === undefined ? "–" : `${Math.round(value)}${unit}`;
}

function when(seconds) {
  if (!seconds) return "–";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function showHealth(status) {
  const card = document.querySelector(`article[data-provider="${CSS.escape(status.name)}"]`);
  if (!card) return;
  card.dataset.status = status.status;
  card.querySelector(".dot").className = `dot ${status.status}`;
  card.querySelector(".state").firstChild.textContent = status.status;
  card.querySelector('[data-field="latency"]').textContent = fmt(status.latency_ms, " ms");
  card.querySelector('[data-field="error"]').textContent = status.error || "–";
  card.querySelector('[data-field="quota"]').textContent = fmt(status.quota_remaining, "%");
  card.querySelector('[data-field="checked"]').textContent = when(status.last_check);
  const breaker = card.querySelector('[data-field="breaker"]');
  if (breaker) {
    const names = {closed: "closed", half_open: "half-open", open: "open"};
    const wait = status.breaker === "open" && status.breaker_retry_after
      ? ` (${Math.round(status.breaker_retry_after)} s)` : "";
    breaker.textContent = (names[status.breaker] || "–") + wait;
    breaker.className = `breaker ${status.breaker || "closed"}`;
  }
  const latest = document.getElementById("last-check");
  if (latest && status.last_check) latest.textContent = when(status.last_check);
}

function showReport(report) {
  for (const status of (report && report.providers) || []) showHealth(status);
}

function wireProviders() {
  for (const button of document.querySelectorAll("button[data-check]")) {
    button.onclick = async () => {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      const body = await post(button.dataset.check);
      if (body && body.providers) showReport(body);
      else if (body && body.name) showHealth(body);
      button.disabled = false;
      button.removeAttribute("aria-busy");
    };
  }
  const toggle = document.getElementById("auto-refresh");
  if (!toggle || toggle.dataset.wired) return;
  toggle.dataset.wired = "yes";
  const seconds = Number(document.getElementById("interval").textContent) || 60;
  setInterval(async () => {
    if (!toggle.checked) return;
    const answer = await fetch(`${BASE()}/api/models/health`, { credentials: "same-origin" });
    if (answer.ok) showReport(await answer.json());
  }, seconds * 1000);
}

function wire() {
  const page = document.body.dataset.page;
  if (page === "runs") wireRuns();
  if (page === "run") { wireSteps(); wireRun(); }
  if (page === "providers") wireProviders();
}

document.addEventListener("DOMContentLoaded", () => {
  wire();
  const runs = document.getElementById("runs");
  if (runs) follow(runs.dataset.live, later(() => refresh(["#runs"]), 300));
});
