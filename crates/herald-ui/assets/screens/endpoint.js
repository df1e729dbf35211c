// One endpoint: its settings, enable/disable, delete, the signing secret
// (reveal, rotate), custom headers; and, on tabs, its attempts (with
// resend and recover), its health and a test event.

import { button, card, confirmButton, field, h, link, notice } from "../lib/dom.js";
import { pretty, time } from "../lib/format.js";
import { attemptsPanel, recoverForm } from "./attempts.js";
import { endpointForm } from "./endpoint-fields.js";
import { healthPanel } from "./endpoint-health.js";
import { catalog } from "./event-types.js";
import { testEventPanel } from "./test-event.js";

const TABS = [
  ["overview", "Overview"],
  ["attempts", "Attempts"],
  ["health", "Health"],
  ["test", "Send test event"],
];

function epPath(ctx, id, rest = "") {
  return ctx.path(`/endpoint/${encodeURIComponent(id)}${rest}`);
}

function settings(ep) {
  const rows = [
    ["Id", h("code", { text: ep.id })],
    ep.uid ? ["Uid", h("code", { text: ep.uid })] : null,
    ["Event types", (ep.filterTypes || []).join(", ") || "every event type"],
    ["Channels", (ep.channels || []).join(", ") || "any"],
    ["Rate limit", ep.rateLimit ? `${ep.rateLimit} messages/s` : "none"],
    ["Timeout", `${ep.timeoutSecs} s`],
    ["Payload template", ep.payloadTemplate ? h("pre", { class: "json", text: pretty(ep.payloadTemplate) }) : "none: the payload as posted"],
    ["Created", time(ep.createdAt)],
    ["Updated", time(ep.updatedAt)],
  ].filter(Boolean);
  return h("dl", { class: "facts", testid: "endpoint-settings" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

/** The signing secret: hidden until revealed; rotating shows the new one. */
function secretCard(ctx, ep) {
  if (!ctx.perms.viewSecret) return card("Signing secret", h("p", { class: "dim", text: "This token may not see the signing secret." }));
  const shown = h("code", { class: "secret", testid: "secret-value", text: "whsec_••••••••••••" });
  const status = h("div", { "aria-live": "polite" });
  const reveal = async () => {
    const s = await ctx.api.get(epPath(ctx, ep.id, "/secret"));
    shown.textContent = s.key;
    shown.classList.add("revealed");
  };
  const actions = [button("Reveal", () => reveal().catch((e) => status.replaceChildren(notice("error", e.message))), { testid: "reveal-secret" })];
  if (ctx.perms.rotateSecret) {
    actions.push(
      confirmButton("Rotate", "A new secret signs from now; the old one keeps signing beside it for 24 hours.", async () => {
        status.replaceChildren();
        try {
          await ctx.api.post(epPath(ctx, ep.id, "/secret/rotate"), {});
          await reveal();
          status.append(notice("ok", "Secret rotated. The previous one keeps signing for 24 hours.", { testid: "rotated" }));
        } catch (e) {
          status.append(notice("error", e.message, { testid: "action-error" }));
        }
      }, { testid: "rotate-secret" }),
    );
  }
  return card("Signing secret", h("p", {}, shown), h("div", { class: "actions" }, actions), status);
}

/** Custom headers sent with every request; editable with ManageEndpoint. */
function headersCard(ctx, ep) {
  const rows = h("div", { class: "header-rows", testid: "headers" });
  const status = h("div", { "aria-live": "polite" });
  const may = ctx.perms.manageEndpoint;
  const addRow = (name = "", value = "") => {
    const n = h("input", { name: "header-name", value: name, disabled: !may, autocomplete: "off", testid: "header-name" });
    const v = h("input", { name: "header-value", value, disabled: !may, autocomplete: "off", testid: "header-value" });
    rows.querySelector('[data-testid="no-headers"]')?.remove();
    const row = h("div", { class: "header-row" }, field("Header name", n).wrap, field("Value", v).wrap);
    if (may) row.append(h("button", { type: "button", class: "link", text: "Remove", "aria-label": `Remove header ${name}`, onclick: () => row.remove() }));
    rows.append(row);
  };
  // Sensitive headers (authorization, …) come back by name only, so the
  // card never sends the whole set: it sets what is shown and deletes what
  // was shown and removed, and a sensitive header keeps its value.
  let shown = [];
  const load = async () => {
    const got = await ctx.api.get(epPath(ctx, ep.id, "/headers"));
    rows.replaceChildren();
    const entries = Object.entries(got.headers || {});
    shown = entries.map(([n]) => n.toLowerCase());
    entries.forEach(([n, v]) => addRow(n, v));
    const sensitive = got.sensitive || [];
    sensitive.forEach((n) => rows.append(h("p", { class: "dim", testid: "sensitive-header", text: `${n}: set, value not shown` })));
    if (!entries.length && !sensitive.length) rows.append(h("p", { class: "dim", testid: "no-headers", text: "No custom headers." }));
  };
  const save = async () => {
    status.replaceChildren();
    const headers = {};
    for (const row of rows.querySelectorAll(".header-row")) {
      const [n, v] = row.querySelectorAll("input");
      if (n.value.trim()) headers[n.value.trim()] = v.value;
    }
    const kept = new Set(Object.keys(headers).map((n) => n.toLowerCase()));
    const deleteHeaders = shown.filter((n) => !kept.has(n));
    try {
      await ctx.api.patch(epPath(ctx, ep.id, "/headers"), { headers, deleteHeaders });
      await load();
      status.append(notice("ok", "Headers saved.", { testid: "headers-saved" }));
    } catch (e) {
      status.append(notice("error", e.message, { testid: "action-error" }));
    }
  };
  load().catch((e) => status.append(notice("error", e.message)));
  const actions = may
    ? h("div", { class: "actions" }, button("Add header", () => addRow(), { testid: "add-header" }), button("Save headers", save, { class: "primary", testid: "save-headers" }))
    : null;
  return card("Custom headers", rows, actions, status);
}

function overview(ctx, ep) {
  const status = h("div", { "aria-live": "polite" });
  const actions = [];
  if (ctx.perms.manageEndpoint || ctx.perms.manageTransformation) {
    actions.push(link(ctx.href(["endpoints", ep.id, "edit"]), "Edit", { class: "button", testid: "edit-endpoint" }));
  }
  if (ctx.perms.manageEndpoint) {
    actions.push(
      button(ep.disabled ? "Enable" : "Disable", async () => {
        try {
          await ctx.api.patch(epPath(ctx, ep.id), { disabled: !ep.disabled });
          ctx.flash("ok", `Endpoint ${ep.disabled ? "enabled" : "disabled"}.`);
          ctx.go(["endpoints", ep.id]);
        } catch (e) {
          status.replaceChildren(notice("error", e.message, { testid: "action-error" }));
        }
      }, { testid: "toggle-endpoint" }),
      confirmButton("Delete", "Its pending deliveries stop and its history goes.", async () => {
        try {
          await ctx.api.delete(epPath(ctx, ep.id));
          ctx.flash("ok", `Endpoint ${ep.url} deleted.`);
          ctx.go(["endpoints"]);
        } catch (e) {
          status.replaceChildren(notice("error", e.message, { testid: "action-error" }));
        }
      }, { testid: "delete-endpoint" }),
    );
  }
  return [
    card("Settings", actions.length ? h("div", { class: "actions" }, actions) : null, status, settings(ep)),
    secretCard(ctx, ep),
    headersCard(ctx, ep),
  ];
}

export async function render(ctx, id, query) {
  const ep = await ctx.api.get(epPath(ctx, id));
  const tab = TABS.some(([k]) => k === query.get("tab")) ? query.get("tab") : "overview";
  const tabs = h(
    "nav",
    { class: "tabs sub", "aria-label": "Endpoint" },
    TABS.map(([key, label]) => link(ctx.href(["endpoints", ep.id], { tab: key }), label, { "aria-current": key === tab ? "page" : undefined, testid: `tab-${key}` })),
  );
  let content;
  if (tab === "attempts") content = [attemptsPanel(ctx, { endpointId: ep.id }).node, recoverForm(ctx, ep.id)];
  else if (tab === "health") content = [await healthPanel(ctx, ep)];
  else if (tab === "test") content = [await testEventPanel(ctx, ep)];
  else content = overview(ctx, ep);
  return h(
    "div",
    { testid: "endpoint-screen" },
    h("p", { class: "crumbs" }, link(ctx.href(["endpoints"]), "Endpoints"), " / "),
    h(
      "div",
      { class: "screen-head" },
      h("h1", { class: "url", testid: "endpoint-title", text: ep.url }),
      h("span", { class: `badge ${ep.disabled ? "bad" : "ok"}`, testid: "endpoint-state", text: ep.disabled ? "disabled" : "enabled" }),
    ),
    ep.description ? h("p", { text: ep.description }) : null,
    tabs,
    content,
  );
}

export async function renderEdit(ctx, id) {
  const [ep, types] = await Promise.all([ctx.api.get(epPath(ctx, id)), catalog(ctx)]);
  if (!ctx.perms.manageEndpoint && !ctx.perms.manageTransformation) {
    return notice("error", "This token may not change endpoints.", { testid: "screen-error" });
  }
  const form = endpointForm(ctx, { types, endpoint: ep });
  form.onSubmit(async (body) => {
    await ctx.api.patch(epPath(ctx, ep.id), body);
    ctx.flash("ok", "Endpoint saved.");
    ctx.go(["endpoints", ep.id]);
  });
  return h(
    "div",
    {},
    h("p", { class: "crumbs" }, link(ctx.href(["endpoints"]), "Endpoints"), " / ", link(ctx.href(["endpoints", ep.id]), ep.url)),
    h("h1", { text: "Edit endpoint" }),
    card(null, form.node),
  );
}
