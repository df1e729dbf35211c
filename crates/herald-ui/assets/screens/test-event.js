// "Send a test event": one message to this endpoint only (the API's
// send-example), of any catalog type or `webhook.test`, with the type's
// example payload or one written here; its attempt is then shown as it
// arrives.

import { button, card, field, h, link, notice, select } from "../lib/dom.js";
import { pretty, statusClass, statusLabel } from "../lib/format.js";
import { catalog, example } from "./event-types.js";

/** Polls a message's attempts to this endpoint until one is recorded. */
async function firstAttempt(ctx, msgId, endpointId, ms = 20000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const page = await ctx.api.get(ctx.path(`/attempt/msg/${encodeURIComponent(msgId)}`), { endpoint_id: endpointId, limit: 10 });
    if (page.data.length) return page.data[0];
    await new Promise((r) => setTimeout(r, 300));
  }
  return null;
}

export async function testEventPanel(ctx, ep) {
  if (!ctx.perms.createAttempts) return card("Send test event", notice("info", "This token may not send test events."));
  const types = await catalog(ctx);
  const names = ["webhook.test", ...types.map((t) => t.name).filter((n) => n !== "webhook.test")];
  const typeSelect = select("eventType", names.map((n) => [n, n]), names[0]);
  typeSelect.setAttribute("data-testid", "test-event-type");
  const payload = h("textarea", { name: "payload", rows: 6, class: "mono", spellcheck: "false", testid: "test-payload" });
  const fill = () => {
    const et = types.find((t) => t.name === typeSelect.value);
    const ex = et ? example(et) : undefined;
    payload.value = pretty(ex === undefined ? { success: true } : ex);
  };
  typeSelect.addEventListener("change", fill);
  fill();
  const status = h("div", { "aria-live": "polite", testid: "test-status" });
  const send = button(
    "Send test event",
    async () => {
      status.replaceChildren();
      let body;
      try {
        body = { eventType: typeSelect.value, payload: JSON.parse(payload.value) };
      } catch (e) {
        status.append(notice("error", `The payload is not JSON: ${e.message}`));
        return;
      }
      try {
        const msg = await ctx.api.post(ctx.path(`/endpoint/${encodeURIComponent(ep.id)}/send-example`), body);
        status.append(
          notice("info", `Sent as message ${msg.id}; waiting for its attempt…`),
          link(ctx.href(["messages", msg.id]), "View the message", { testid: "test-message-link" }),
        );
        const a = await firstAttempt(ctx, msg.id, ep.id);
        status.replaceChildren(
          a
            ? h(
                "p",
                { class: "notice info", testid: "test-attempt" },
                "Attempt: ",
                h("span", { class: `badge ${statusClass(a.status)}`, text: statusLabel(a.status) }),
                ` ${a.responseStatusCode || a.errorKind || ""} in ${a.responseDurationMs} ms`,
              )
            : notice("error", "No attempt was recorded within 20 seconds."),
          link(ctx.href(["messages", msg.id]), "View the message", { testid: "test-message-link" }),
        );
      } catch (e) {
        status.replaceChildren(notice("error", e.message, { testid: "action-error" }));
      }
    },
    { class: "primary", testid: "send-test" },
  );
  return card(
    "Send test event",
    h("p", { class: "dim", text: "Sent to this endpoint only, whatever it subscribes to." }),
    field("Event type", typeSelect).wrap,
    field("Payload (JSON)", payload).wrap,
    h("div", { class: "actions" }, send),
    status,
  );
}
