// Delivery attempts, of one endpoint or of one message: when, the outcome,
// the status code, how long, why it failed, and the response body; resend
// one message to its endpoint; recover everything that failed since a time.

import { button, card, field, h, link, notice, table } from "../lib/dom.js";
import { duration, fromLocalInput, statusClass, statusLabel, time, toLocalInput } from "../lib/format.js";

const TRIGGER = { 0: "scheduled", 1: "manual" };

function responseCell(a) {
  const text = a.response || "";
  if (!text) return h("span", { class: "dim", text: "(empty)" });
  return h("details", { class: "response" }, h("summary", { text: `${text.length} bytes` }), h("pre", { text }));
}

/** Waits for a background task to end; answers it, or null after `ms`. */
async function waitForTask(ctx, id, ms = 15000) {
  const until = Date.now() + ms;
  for (;;) {
    const task = await ctx.api.get(`/background-task/${encodeURIComponent(id)}`);
    if (task.status !== "running" || Date.now() > until) return task;
    await new Promise((r) => setTimeout(r, 300));
  }
}

/**
 * A panel listing attempts: `of` is { endpointId } or { msgId }. Resend is
 * offered when the token may create attempts.
 */
export function attemptsPanel(ctx, of) {
  const status = h("div", { class: "panel-status", "aria-live": "polite" });
  const list = h("div", { testid: "attempts" }, h("p", { class: "loading", text: "Loading attempts…" }));
  const path = of.endpointId
    ? ctx.path(`/attempt/endpoint/${encodeURIComponent(of.endpointId)}`)
    : ctx.path(`/attempt/msg/${encodeURIComponent(of.msgId)}`);

  const resend = (a) =>
    button(
      "Resend",
      async () => {
        status.replaceChildren();
        try {
          await ctx.api.post(ctx.path(`/msg/${encodeURIComponent(a.msgId)}/endpoint/${encodeURIComponent(a.endpointId)}/resend`));
          status.append(notice("ok", `Message ${a.msgId} queued again for ${a.url}.`, { testid: "resend-done" }));
          setTimeout(load, 800);
        } catch (err) {
          status.append(notice("error", err.message, { testid: "action-error" }));
        }
      },
      { testid: "resend", "aria-label": `Resend message ${a.msgId}` },
    );

  const columns = [
    ["Time", (a) => time(a.timestamp)],
    of.endpointId
      ? ["Message", (a) => link(ctx.href(["messages", a.msgId]), a.msgId, { class: "mono" })]
      : ["Endpoint", (a) => link(ctx.href(["endpoints", a.endpointId]), a.url, { class: "url" })],
    ["Outcome", (a) => h("span", { class: `badge ${statusClass(a.status)}`, testid: "attempt-status", text: statusLabel(a.status) })],
    ["Status code", (a) => h("span", { testid: "attempt-code", text: a.responseStatusCode ? String(a.responseStatusCode) : "—" })],
    ["Duration", (a) => duration(a.responseDurationMs)],
    ["Error", (a) => a.errorKind || "—"],
    ["Trigger", (a) => `${TRIGGER[a.triggerType] || a.triggerType} #${a.attemptNumber ?? ""}`],
    ["Response", responseCell],
  ];
  if (ctx.perms.createAttempts) columns.push(["", resend]);

  async function load() {
    try {
      const page = await ctx.api.get(path, { limit: 50 });
      list.replaceChildren(
        page.data.length
          ? table(columns, page.data, { class: "attempts", testid: "attempts-table" })
          : h("p", { class: "empty", testid: "no-attempts", text: "No attempts yet." }),
      );
    } catch (err) {
      list.replaceChildren(notice("error", err.message, { testid: "screen-error" }));
    }
  }

  const refresh = button("Refresh", load, { testid: "refresh-attempts" });
  const node = card("Attempts", h("div", { class: "actions" }, refresh), status, list);
  load();
  return { node, reload: load };
}

/** "Recover failed messages since …": re-sends what failed to one endpoint. */
export function recoverForm(ctx, endpointId) {
  if (!ctx.perms.createAttempts) return null;
  const since = h("input", { type: "datetime-local", name: "since", required: true, testid: "recover-since" });
  since.value = toLocalInput(new Date(Date.now() - 24 * 3600 * 1000).toISOString());
  const status = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", testid: "recover", text: "Recover" });
  const form = h(
    "form",
    { class: "inline-form", novalidate: true },
    field("Failed since", since, "Every message that failed to this endpoint since then is sent again.").wrap,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const at = fromLocalInput(since.value);
    if (!at) {
      status.append(notice("error", "Give a date and time."));
      return;
    }
    submit.disabled = true;
    try {
      const task = await ctx.api.post(ctx.path(`/endpoint/${encodeURIComponent(endpointId)}/recover`), { since: at });
      status.append(notice("info", `Recovering (task ${task.id})…`));
      const done = await waitForTask(ctx, task.id);
      const sent = done.data && done.data.messagesSent !== undefined ? `: ${done.data.messagesSent} message(s) sent again` : "";
      status.replaceChildren(notice(done.status === "finished" ? "ok" : "error", `Recovery ${done.status}${sent}.`, { testid: "recover-done" }));
    } catch (err) {
      status.replaceChildren(notice("error", err.message, { testid: "action-error" }));
    } finally {
      submit.disabled = false;
    }
  });
  return card("Recover", form, status);
}
