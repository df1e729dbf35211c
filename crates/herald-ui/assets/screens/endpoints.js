// The application's endpoints: the list, and the form that adds one.

import { card, h, link, notice } from "../lib/dom.js";
import { time } from "../lib/format.js";
import { endpointForm } from "./endpoint-fields.js";
import { catalog } from "./event-types.js";

function subscribed(ep) {
  const types = ep.filterTypes || ep.eventTypes;
  return types && types.length ? types.join(", ") : "all events";
}

export async function render(ctx) {
  const page = await ctx.api.get(ctx.path("/endpoint"), { limit: 250 });
  const rows = page.data.map((ep) =>
    h(
      "li",
      { class: "endpoint-row", testid: "endpoint-row" },
      h(
        "div",
        { class: "row-main" },
        link(ctx.href(["endpoints", ep.id]), ep.url, { class: "url", testid: "endpoint-link" }),
        h("span", { class: `badge ${ep.disabled ? "bad" : "ok"}`, text: ep.disabled ? "disabled" : "enabled" }),
      ),
      ep.description ? h("p", { class: "dim", text: ep.description }) : null,
      h("p", { class: "dim small", text: `${subscribed(ep)} · created ${time(ep.createdAt)}` }),
    ),
  );
  const add = ctx.perms.manageEndpoint
    ? link(ctx.href(["endpoints", "new"]), "Add endpoint", { class: "button primary", testid: "add-endpoint" })
    : null;
  return h(
    "div",
    {},
    h("div", { class: "screen-head" }, h("h1", { text: "Endpoints" }), add),
    card(
      null,
      rows.length
        ? h("ul", { class: "plain", testid: "endpoints" }, rows)
        : h("p", { class: "empty", text: "No endpoints yet." }),
      page.done ? null : notice("info", "Showing the newest 250 endpoints."),
    ),
  );
}

export async function renderCreate(ctx) {
  if (!ctx.perms.manageEndpoint) return notice("error", "This token may not add endpoints.", { testid: "screen-error" });
  const types = await catalog(ctx);
  const form = endpointForm(ctx, { types, endpoint: null });
  form.onSubmit(async (body) => {
    const ep = await ctx.api.post(ctx.path("/endpoint"), body);
    ctx.flash("ok", `Endpoint ${ep.url} added.`);
    ctx.go(["endpoints", ep.id]);
  });
  return h("div", {}, h("h1", { text: "Add endpoint" }), card(null, form.node));
}
