// The event catalog: what an endpoint may subscribe to, with each type's
// description and, where the platform gave one, its example payload.

import { card, h } from "../lib/dom.js";
import { pretty } from "../lib/format.js";

/** Every event type (with schemas), shared by the screens that list them. */
export async function catalog(ctx) {
  return ctx.api.all("/event-type", { with_content: true });
}

/** The first example payload of an event type's schemas, if any. */
export function example(et) {
  for (const schema of Object.values(et.schemas || {})) {
    if (schema && Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  }
  return undefined;
}

export async function render(ctx) {
  const types = await catalog(ctx);
  const items = types.map((et) => {
    const ex = example(et);
    return h(
      "li",
      { class: "event-type", testid: "event-type" },
      h("h3", {}, h("code", { text: et.name }), et.deprecated ? h("span", { class: "badge warn", text: "deprecated" }) : null),
      h("p", { text: et.description || "" }),
      ex === undefined
        ? null
        : h("details", {}, h("summary", { text: "Example payload" }), h("pre", { class: "json", text: pretty(ex) })),
    );
  });
  return h(
    "div",
    {},
    h("h1", { text: "Event catalog" }),
    card(
      null,
      types.length
        ? h("ul", { class: "plain", testid: "event-types" }, items)
        : h("p", { class: "empty", text: "No event types are defined yet." }),
    ),
  );
}
