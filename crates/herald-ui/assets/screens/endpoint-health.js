// An endpoint's health: the share of its messages delivered over the last
// 7 days (the API's stats), its last 50 attempts as a chart (height the
// duration, colour the outcome), and its most recent failures.

import { card, h, notice, table } from "../lib/dom.js";
import { duration, percent, time } from "../lib/format.js";
import { barChart } from "../lib/chart.js";

const WEEK_MS = 7 * 24 * 3600 * 1000;

export async function healthPanel(ctx, ep) {
  const base = ctx.path(`/endpoint/${encodeURIComponent(ep.id)}`);
  const attemptsPath = ctx.path(`/attempt/endpoint/${encodeURIComponent(ep.id)}`);
  const [stats, recent, failures] = await Promise.all([
    ctx.api.get(`${base}/stats`, { since: new Date(Date.now() - WEEK_MS).toISOString() }),
    ctx.api.get(attemptsPath, { limit: 50, with_content: false }),
    ctx.api.get(attemptsPath, { limit: 10, status: 2, with_content: false }),
  ]);
  const settled = stats.success + stats.fail;
  const figures = h(
    "dl",
    { class: "figures", testid: "endpoint-stats" },
    [
      ["Success rate (7 days)", percent(stats.success, settled), "success-rate"],
      ["Delivered", String(stats.success), "stat-success"],
      ["Failed", String(stats.fail), "stat-fail"],
      ["Pending", String(stats.pending + stats.sending), "stat-pending"],
    ].map(([k, v, id]) => h("div", { class: "figure" }, h("dt", { text: k }), h("dd", { testid: id, text: v }))),
  );
  const attempts = [...recent.data].reverse();
  const chart = attempts.length
    ? barChart(
        attempts.map((a) => ({
          value: a.responseDurationMs || 0,
          kind: a.status === 0 ? "ok" : "bad",
          title: `${time(a.timestamp)}: ${a.status === 0 ? "delivered" : "failed"}, ${a.responseStatusCode || a.errorKind || "no answer"}, ${duration(a.responseDurationMs)}`,
        })),
        {
          label: `Last ${attempts.length} attempts: ${attempts.filter((a) => a.status === 0).length} delivered, ${attempts.filter((a) => a.status !== 0).length} failed`,
        },
      )
    : h("p", { class: "empty", text: "No attempts yet." });
  const failed = failures.data.length
    ? table(
        [
          ["Time", (a) => time(a.timestamp)],
          ["Status code", (a) => (a.responseStatusCode ? String(a.responseStatusCode) : "—")],
          ["Error", (a) => a.errorKind || "—"],
          ["Duration", (a) => duration(a.responseDurationMs)],
        ],
        failures.data,
        { testid: "recent-failures" },
      )
    : notice("ok", "No failed attempts.", { testid: "no-failures" });
  return card(
    "Health",
    figures,
    h("h3", { text: "Recent attempts" }),
    chart,
    h("p", { class: "legend small" }, h("span", { class: "swatch ok" }), " delivered ", h("span", { class: "swatch bad" }), " failed · bar height: duration"),
    h("h3", { text: "Recent failures" }),
    failed,
  );
}
