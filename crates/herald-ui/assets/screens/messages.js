// The message log: what was sent to the application, newest first,
// filtered by event type, time and (for one endpoint) delivery status;
// each row opens the message with its payload and attempts. The filters
// live in the url, so a filtered view can be bookmarked.

import { card, field, h, link, notice, select, table } from "../lib/dom.js";
import { fromLocalInput, statusClass, statusLabel, time, toLocalInput } from "../lib/format.js";
import { catalog } from "./event-types.js";

const STATUSES = [
  ["", "Any status"],
  ["0", "Succeeded"],
  ["1", "Pending"],
  ["3", "Sending"],
  ["2", "Failed"],
];

function filtersForm(ctx, { types, endpoints, query }) {
  const eventType = select("eventType", [["", "Any event type"], ...types.map((t) => [t.name, t.name])], query.get("eventType") || "");
  const endpoint = select("endpoint", [["", "All endpoints"], ...endpoints.map((e) => [e.id, e.url])], query.get("endpoint") || "");
  const status = select("status", STATUSES, query.get("status") || "");
  const after = h("input", { type: "datetime-local", name: "after", value: toLocalInput(query.get("after")) });
  const before = h("input", { type: "datetime-local", name: "before", value: toLocalInput(query.get("before")) });
  // A status belongs to a delivery, so it needs one endpoint.
  const sync = () => {
    status.disabled = !endpoint.value;
    if (status.disabled) status.value = "";
  };
  endpoint.addEventListener("change", sync);
  sync();
  for (const [node, id] of [[eventType, "filter-event-type"], [endpoint, "filter-endpoint"], [status, "filter-status"], [after, "filter-after"], [before, "filter-before"]]) {
    node.setAttribute("data-testid", id);
  }
  const form = h(
    "form",
    { class: "filters", novalidate: true, testid: "message-filters" },
    field("Event type", eventType).wrap,
    field("Endpoint", endpoint).wrap,
    field("Status", status, "Of the delivery to the chosen endpoint.").wrap,
    field("After", after).wrap,
    field("Before", before).wrap,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", testid: "apply-filters", text: "Filter" }), h("a", { href: ctx.href(["messages"]), class: "button", text: "Clear" })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.go(["messages"], {
      eventType: eventType.value,
      endpoint: endpoint.value,
      status: status.value,
      after: fromLocalInput(after.value),
      before: fromLocalInput(before.value),
    });
  });
  return form;
}

export async function render(ctx, query) {
  const [types, endpoints] = await Promise.all([catalog(ctx), ctx.api.all(ctx.path("/endpoint"), {}, 250)]);
  const endpointId = query.get("endpoint") || "";
  const params = {
    event_types: query.get("eventType") || undefined,
    after: query.get("after") || undefined,
    before: query.get("before") || undefined,
    with_content: false,
    limit: 50,
  };
  const path = endpointId ? ctx.path(`/endpoint/${encodeURIComponent(endpointId)}/msg`) : ctx.path("/msg");
  if (endpointId && query.get("status")) params.status = query.get("status");

  const columns = [
    ["Time", (m) => time(m.timestamp)],
    ["Event type", (m) => h("code", { text: m.eventType })],
    ["Message", (m) => link(ctx.href(["messages", m.id]), m.eventId || m.id, { class: "mono", testid: "message-link" })],
  ];
  if (endpointId) {
    columns.push(["Status", (m) => h("span", { class: `badge ${statusClass(m.status)}`, testid: "message-status", text: statusLabel(m.status) })]);
  }
  const results = h("div", { testid: "messages" });
  const more = h("div", { class: "actions" });
  const show = async (iterator) => {
    const page = await ctx.api.get(path, { ...params, iterator });
    if (!iterator) results.replaceChildren();
    results.append(
      page.data.length || iterator
        ? table(columns, page.data, { class: "messages", testid: "messages-table" })
        : h("p", { class: "empty", testid: "no-messages", text: "No messages match." }),
    );
    more.replaceChildren();
    if (!page.done && page.iterator) {
      const next = h("button", { type: "button", text: "Older messages", testid: "more-messages" });
      next.addEventListener("click", () => show(page.iterator).catch((e) => more.replaceChildren(notice("error", e.message))));
      more.append(next);
    }
  };
  await show();
  return h(
    "div",
    {},
    h("h1", { text: "Messages" }),
    card("Filters", filtersForm(ctx, { types, endpoints, query })),
    card(null, results, more),
  );
}
