// One message: its payload, the endpoints it went to with each delivery's
// state (resend to any of them), and every attempt.

import { button, card, h, link, notice, table } from "../lib/dom.js";
import { pretty, statusClass, statusLabel, time } from "../lib/format.js";
import { attemptsPanel } from "./attempts.js";

export async function render(ctx, id) {
  const msgPath = ctx.path(`/msg/${encodeURIComponent(id)}`);
  const [msg, destinations] = await Promise.all([ctx.api.get(msgPath), ctx.api.get(`${msgPath}/endpoint`, { limit: 250 })]);
  const attempts = attemptsPanel(ctx, { msgId: msg.id });
  const status = h("div", { "aria-live": "polite" });
  const columns = [
    ["Endpoint", (d) => link(ctx.href(["endpoints", d.id]), d.url, { class: "url" })],
    ["Delivery", (d) => h("span", { class: `badge ${statusClass(d.status)}`, text: statusLabel(d.status) })],
    ["Next attempt", (d) => (d.nextAttempt ? time(d.nextAttempt) : "—")],
  ];
  if (ctx.perms.createAttempts) {
    columns.push([
      "",
      (d) =>
        button(
          "Resend",
          async () => {
            status.replaceChildren();
            try {
              await ctx.api.post(`${msgPath}/endpoint/${encodeURIComponent(d.id)}/resend`);
              status.append(notice("ok", `Queued again for ${d.url}.`, { testid: "resend-done" }));
              setTimeout(attempts.reload, 800);
            } catch (e) {
              status.append(notice("error", e.message, { testid: "action-error" }));
            }
          },
          { testid: "resend-destination", "aria-label": `Resend to ${d.url}` },
        ),
    ]);
  }
  const facts = [
    ["Id", h("code", { text: msg.id })],
    msg.eventId ? ["Event id", h("code", { text: msg.eventId })] : null,
    ["Event type", h("code", { text: msg.eventType })],
    ["Sent", time(msg.timestamp)],
    msg.channels && msg.channels.length ? ["Channels", msg.channels.join(", ")] : null,
  ].filter(Boolean);
  return h(
    "div",
    { testid: "message-screen" },
    h("p", { class: "crumbs" }, link(ctx.href(["messages"]), "Messages"), " / "),
    h("h1", { class: "mono", text: msg.id }),
    card(
      "Message",
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)])),
      h("h3", { text: "Payload" }),
      h("pre", { class: "json", testid: "payload", tabindex: 0, text: pretty(msg.payload) }),
    ),
    card(
      "Destinations",
      status,
      destinations.data.length
        ? table(columns, destinations.data, { testid: "destinations" })
        : h("p", { class: "empty", text: "No endpoint subscribed to this message." }),
    ),
    attempts.node,
  );
}
