// herald listen's page: the history, newest first, kept live over
// server-sent events; one request's details; replay; a filter box.
// Everything shown comes from senders, so it is only ever set as text.
"use strict";

const api = "/_herald/api";
const requests = new Map(); // id -> request JSON
let selected = null;

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(receivedAt) {
  return receivedAt.slice(11, 19);
}

function verifyLabel(r) {
  if (r.verified === true) return ["verified", "ok"];
  if (r.verified === false) return ["unverified", "bad"];
  return ["unchecked", "dim"];
}

function forwardLabel(r) {
  const f = r.forward;
  if (!f) return ["", ""];
  if (f.status === null) return ["failed", "bad"];
  return [String(f.status), f.status < 300 ? "ok" : f.status < 500 ? "warn" : "bad"];
}

function target(r) {
  return r.query ? `${r.path}?${r.query}` : r.path;
}

function matches(r, needle) {
  if (!needle) return true;
  const hay = [r.method, target(r), r.body, r.verifyError || "", ...r.headers.map(([n, v]) => `${n}: ${v}`)];
  return hay.join("\n").toLowerCase().includes(needle);
}

function renderList() {
  const needle = $("filter").value.trim().toLowerCase();
  const list = $("requests");
  list.replaceChildren();
  const sorted = [...requests.values()].sort((a, b) => b.id - a.id);
  let shown = 0;
  for (const r of sorted) {
    if (!matches(r, needle)) continue;
    shown += 1;
    const item = el("li", r.id === selected ? "selected" : "");
    item.dataset.id = r.id;
    item.dataset.testid = "request";
    item.append(el("span", "time", clock(r.receivedAt)), el("span", "method", r.method), el("span", "path", target(r)));
    const [verify, verifyClass] = verifyLabel(r);
    item.append(el("span", `badge ${verifyClass}`, verify));
    const [forward, forwardClass] = forwardLabel(r);
    if (forward) item.append(el("span", `badge ${forwardClass}`, `→ ${forward}`));
    item.addEventListener("click", () => select(r.id));
    list.append(item);
  }
  $("empty").hidden = shown > 0;
  $("empty").textContent = requests.size ? "Nothing matches the filter." : "No requests yet. Send one to this port.";
}

function pretty(r) {
  if (r.bodyEncoding === "base64") return `(binary, base64)\n${r.body}`;
  try {
    return JSON.stringify(JSON.parse(r.body), null, 2);
  } catch {
    return r.body;
  }
}

function renderDetail() {
  const r = requests.get(selected);
  $("detail").hidden = !r;
  if (!r) return;
  $("detail-title").textContent = `${r.method} ${target(r)}`;
  $("detail-time").textContent = r.receivedAt;
  $("detail-source").textContent = r.source === "relay" ? "relay channel" : "this port";
  const [verify, verifyClass] = verifyLabel(r);
  $("detail-verify").className = verifyClass;
  $("detail-verify").textContent = r.verifyError ? `${verify}: ${r.verifyError}` : verify;
  const f = r.forward;
  const forward = $("detail-forward");
  if (!f) {
    forward.textContent = "not forwarded";
    forward.className = "dim";
  } else {
    const outcome = f.status === null ? `failed: ${f.error}` : `${f.status} in ${f.durationMs} ms`;
    const replays = r.replays ? ` (replayed ${r.replays}×)` : "";
    forward.textContent = `${f.url} → ${outcome}${replays}`;
    forward.className = forwardLabel(r)[1];
  }
  const rows = r.headers.map(([name, value]) => {
    const row = el("tr");
    row.append(el("th", "", name), el("td", "", value));
    return row;
  });
  $("detail-headers").replaceChildren(...rows);
  $("detail-size").textContent = `${r.bodyBytes} bytes`;
  $("detail-body").textContent = pretty(r);
  $("detail-answer").textContent = f ? f.body || "(empty)" : "";
}

function select(id) {
  selected = id;
  $("message").hidden = true;
  renderList();
  renderDetail();
}

function upsert(r) {
  requests.set(r.id, r);
  if (selected === null) selected = r.id;
  renderList();
  if (r.id === selected) renderDetail();
}

async function load() {
  // The newest 200: each carries its body, and a history can hold large ones.
  const resp = await fetch(`${api}/requests?limit=200`);
  const list = await resp.json();
  requests.clear();
  for (const r of list) requests.set(r.id, r);
  if (selected === null && list.length) selected = list[0].id;
  renderList();
  renderDetail();
}

async function replay() {
  const message = $("message");
  message.hidden = false;
  message.className = "message";
  message.textContent = "Replaying…";
  const resp = await fetch(`${api}/requests/${selected}/replay`, { method: "POST" });
  const body = await resp.json();
  if (!resp.ok) {
    message.className = "message bad";
    message.textContent = body.detail;
    return;
  }
  upsert(body);
  message.textContent = body.forward.status === null
    ? `Replayed: ${body.forward.error}`
    : `Replayed: the target answered ${body.forward.status}`;
}

async function info() {
  const i = await (await fetch(`${api}/info`)).json();
  const parts = [i.forward ? `forwarding to ${i.forward}` : "not forwarding", i.verifies ? "verifying signatures" : "no secret"];
  $("info").textContent = parts.join(" · ");
  $("replay").disabled = !i.forward;
  $("replay").title = i.forward ? "" : "start herald listen with --forward URL to replay";
}

function live() {
  const events = new EventSource(`${api}/events`);
  events.addEventListener("open", () => {
    $("live").textContent = "live";
    $("live").className = "live on";
    load(); // anything that arrived while disconnected
  });
  events.addEventListener("request", (e) => upsert(JSON.parse(e.data)));
  events.addEventListener("lagged", () => load());
  events.addEventListener("error", () => {
    $("live").textContent = "reconnecting…";
    $("live").className = "live";
  });
}

$("filter").addEventListener("input", renderList);
$("replay").addEventListener("click", replay);
info();
load().then(live);
