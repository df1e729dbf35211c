// Server health for the operator: figures read from `GET /metrics` (parsed
// here; deliveries per second from two scrapes), the API's health check,
// and the endpoints whose latest attempt failed, found with the public
// per-application calls. A series the server does not report shows as
// "not reported", never as 0.

import { appPath } from "../lib/api.js";
import { card, h, link, notice, table } from "../lib/dom.js";
import { time } from "../lib/format.js";
import * as metrics from "../lib/metrics.js";
import { href } from "../lib/router.js";

const REFRESH_MS = 5000;
/** How far the failing-endpoint scan goes, so a big server is not flooded. */
const SCAN_APPS = 50;
const SCAN_ENDPOINTS = 300;

const NOT_REPORTED = "not reported";

/** [label, testid, (now, before, seconds) => text] for each figure. */
const FIGURES = [
  ["Backlog (deliveries waiting)", "backlog", (s) => whole(metrics.value(s, "herald_backlog_deliveries"))],
  [
    "Deliveries per second",
    "deliveries-per-second",
    (s, prev, secs) => perSecond(prev, s, secs, { outcome: "success" }),
  ],
  [
    "Failed attempts per second",
    "failures-per-second",
    (s, prev, secs) => perSecond(prev, s, secs, { outcome: "failure" }),
  ],
  ["Requests in flight", "in-flight", (s) => whole(metrics.value(s, "herald_deliveries_in_flight"))],
  ["Failing endpoints", "endpoints-failing", (s) => whole(metrics.value(s, "herald_endpoints_failing"))],
  ["Open circuits", "circuits-open", (s) => whole(metrics.value(s, "herald_circuits_open"))],
];

function whole(v) {
  return v === undefined ? NOT_REPORTED : String(Math.round(v));
}

function perSecond(prev, now, secs, labels) {
  if (metrics.value(now, "herald_attempts_total", labels) === undefined) return NOT_REPORTED;
  if (!prev) return "measuring…";
  const r = metrics.rate(prev, now, secs, "herald_attempts_total", labels);
  return r === undefined ? NOT_REPORTED : r.toFixed(r < 10 ? 1 : 0);
}

/** Runs `work` over `items`, `limit` at a time. */
async function pool(items, limit, work) {
  const out = [];
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++];
      out.push(await work(item));
    }
  });
  await Promise.all(runners);
  return out;
}

/** Endpoints (within the scan's bounds) whose latest attempt failed. */
async function failingEndpoints(api) {
  const apps = (await api.get("/app", { limit: SCAN_APPS })).data;
  const targets = [];
  for (const app of apps) {
    const eps = (await api.get(appPath(app.id, "/endpoint"), { limit: 250 })).data;
    for (const ep of eps) if (targets.length < SCAN_ENDPOINTS) targets.push([app, ep]);
  }
  const found = await pool(targets, 4, async ([app, ep]) => {
    const last = await api.get(appPath(app.id, `/attempt/endpoint/${encodeURIComponent(ep.id)}`), { limit: 1, with_content: false });
    const a = last.data[0];
    return a && a.status === 2 ? { app, ep, attempt: a } : null;
  });
  return { failing: found.filter(Boolean), scanned: targets.length, apps: apps.length };
}

export async function render(ctx) {
  const figures = h("dl", { class: "figures", testid: "server-figures" });
  const apiHealth = h("p", { testid: "api-health" });
  const failing = h("div", { testid: "failing-endpoints" }, h("p", { class: "loading", text: "Looking for failing endpoints…" }));
  let prev = null;
  let prevAt = 0;

  const scrape = async () => {
    const [text, health] = await Promise.all([
      ctx.api.metrics(),
      ctx.api.get("/health").catch((e) => ({ status: `error (${e.status || e.message})` })),
    ]);
    const now = metrics.parse(text);
    const at = performance.now();
    const secs = (at - prevAt) / 1000;
    figures.replaceChildren(
      ...FIGURES.map(([label, id, read]) => {
        const v = read(now, prev, secs);
        return h("div", { class: "figure" }, h("dt", { text: label }), h("dd", { testid: id, class: v === NOT_REPORTED ? "dim" : "", text: v }));
      }),
    );
    apiHealth.textContent = `API: ${health.status}, database: ${health.database || "unknown"} · updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`;
    prev = now;
    prevAt = at;
  };

  await scrape();
  const timer = setInterval(() => {
    // Stops once the screen is left.
    if (!figures.isConnected) {
      clearInterval(timer);
      return;
    }
    scrape().catch((e) => apiHealth.replaceChildren(notice("error", e.message)));
  }, REFRESH_MS);
  // A first rate soon, rather than after a whole interval.
  setTimeout(() => figures.isConnected && scrape().catch(() => {}), 1500);

  failingEndpoints(ctx.api)
    .then(({ failing: list, scanned, apps }) => {
      failing.replaceChildren(
        list.length
          ? table(
              [
                ["Application", (f) => link(href(["app", f.app.id, "endpoints"]), f.app.name)],
                ["Endpoint", (f) => link(href(["app", f.app.id, "endpoints", f.ep.id], { tab: "health" }), f.ep.url, { class: "url", testid: "failing-endpoint" })],
                ["Last attempt", (f) => time(f.attempt.timestamp)],
                ["Answer", (f) => (f.attempt.responseStatusCode ? String(f.attempt.responseStatusCode) : f.attempt.errorKind || "—")],
              ],
              list,
            )
          : notice("ok", "No endpoint's latest attempt failed.", { testid: "no-failing" }),
        h("p", { class: "dim small", text: `Scanned ${scanned} endpoint(s) of ${apps} application(s).` }),
      );
    })
    .catch((e) => failing.replaceChildren(notice("error", e.message)));

  return h(
    "div",
    {},
    h("h1", { text: "Server health" }),
    card(null, figures, apiHealth),
    card("Failing endpoints", h("p", { class: "dim", text: "Endpoints whose latest attempt failed." }), failing),
  );
}
