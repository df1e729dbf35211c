// Operational webhooks: the endpoints that receive Herald's own events
// (Svix's `/api/v1/operational-webhook/endpoint/` routes): list, add,
// enable or disable, delete, reveal and rotate the signing secret.

import { button, card, confirmButton, field, h, notice, uniqueId } from "../lib/dom.js";
import { time } from "../lib/format.js";

/** What Herald sends (herald-api `operational::EVENT_TYPES`). */
const EVENT_TYPES = [
  ["endpoint.created", "an endpoint was created"],
  ["endpoint.updated", "an endpoint was changed"],
  ["endpoint.deleted", "an endpoint was deleted"],
  ["endpoint.disabled", "an endpoint was disabled"],
  ["endpoint.enabled", "an endpoint was enabled again"],
  ["message.attempt.exhausted", "a delivery ran out of retries"],
];

const BASE = "/operational-webhook/endpoint";

function typeChecks(chosen = []) {
  const boxes = EVENT_TYPES.map(([name, what]) => {
    const box = h("input", { type: "checkbox", name: "filterTypes", value: name, id: uniqueId("op"), checked: chosen.includes(name) });
    return h("div", { class: "check" }, box, h("label", { for: box.id, text: name }), h("span", { class: "dim small", text: ` ${what}` }));
  });
  const node = h(
    "fieldset",
    { class: "field", testid: "op-types" },
    h("legend", { text: "Events" }),
    h("div", { class: "checks column" }, boxes),
    h("small", { class: "help", text: "Tick none to receive them all." }),
  );
  const read = () => {
    const names = [...node.querySelectorAll("input:checked")].map((b) => b.value);
    return names.length ? names : undefined;
  };
  return { node, read };
}

function createForm(ctx) {
  const url = h("input", { type: "url", name: "url", required: true, placeholder: "https://ops.example.com/herald", testid: "op-url" });
  const description = h("input", { name: "description", testid: "op-description" });
  const types = typeChecks();
  const status = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { novalidate: true, testid: "op-form" },
    field("URL", url).wrap,
    field("Description", description).wrap,
    types.node,
    h("button", { type: "submit", class: "primary", testid: "op-create", text: "Add operational endpoint" }),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const body = { url: url.value.trim(), description: description.value.trim(), filterTypes: types.read() };
      const ep = await ctx.api.post(BASE, body);
      ctx.flash("ok", `Operational endpoint ${ep.url} added.`);
      ctx.go(["operational"]);
    } catch (e) {
      status.append(notice("error", e.message, { testid: "form-error" }));
    }
  });
  return card("Add an operational endpoint", form);
}

function endpointItem(ctx, ep) {
  const path = `${BASE}/${encodeURIComponent(ep.id)}`;
  const status = h("div", { "aria-live": "polite" });
  const secret = h("code", { class: "secret", testid: "op-secret", text: "whsec_••••••••••••" });
  const fail = (e) => status.replaceChildren(notice("error", e.message, { testid: "action-error" }));
  const reveal = async () => {
    secret.textContent = (await ctx.api.get(`${path}/secret`)).key;
  };
  const toggle = button(ep.disabled ? "Enable" : "Disable", async () => {
    try {
      await ctx.api.put(path, {
        url: ep.url,
        description: ep.description,
        uid: ep.uid,
        filterTypes: ep.filterTypes,
        rateLimit: ep.rateLimit,
        metadata: ep.metadata,
        disabled: !ep.disabled,
      });
      ctx.go(["operational"]);
    } catch (e) {
      fail(e);
    }
  }, { testid: "op-toggle" });
  return h(
    "li",
    { class: "endpoint-row", testid: "op-endpoint" },
    h("div", { class: "row-main" }, h("span", { class: "url", testid: "op-endpoint-url", text: ep.url }), h("span", { class: `badge ${ep.disabled ? "bad" : "ok"}`, text: ep.disabled ? "disabled" : "enabled" })),
    ep.description ? h("p", { class: "dim", text: ep.description }) : null,
    h("p", { class: "dim small", text: `${(ep.filterTypes || []).join(", ") || "every event"} · created ${time(ep.createdAt)}` }),
    h("p", {}, secret),
    h(
      "div",
      { class: "actions" },
      button("Reveal secret", () => reveal().catch(fail), { testid: "op-reveal" }),
      confirmButton("Rotate secret", "A new secret signs from now; the old one beside it for 24 hours.", async () => {
        try {
          await ctx.api.post(`${path}/secret/rotate`, {});
          await reveal();
          status.replaceChildren(notice("ok", "Secret rotated.", { testid: "op-rotated" }));
        } catch (e) {
          fail(e);
        }
      }, { testid: "op-rotate" }),
      toggle,
      confirmButton("Delete", "It stops receiving Herald's events.", async () => {
        try {
          await ctx.api.delete(path);
          ctx.flash("ok", `Operational endpoint ${ep.url} deleted.`);
          ctx.go(["operational"]);
        } catch (e) {
          fail(e);
        }
      }, { testid: "op-delete" }),
    ),
    status,
  );
}

export async function render(ctx) {
  const list = await ctx.api.all(BASE, {}, 250);
  return h(
    "div",
    {},
    h("h1", { text: "Operational webhooks" }),
    h("p", {
      class: "dim",
      text: "Herald's own events, sent as signed webhooks ({\"type\", \"data\"}) to these endpoints: for alerting when your customers' endpoints change or fail.",
    }),
    card(
      null,
      list.length
        ? h("ul", { class: "plain", testid: "op-endpoints" }, list.map((ep) => endpointItem(ctx, ep)))
        : h("p", { class: "empty", testid: "no-op-endpoints", text: "No operational endpoints yet." }),
    ),
    createForm(ctx),
  );
}
