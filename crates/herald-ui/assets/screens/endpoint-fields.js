// The endpoint form, built from one table of fields. Each entry names the
// API's field, how it is edited and which right it needs; a new endpoint
// setting (the policy fields a later change adds) is one more entry in
// FIELDS, and the create and edit screens pick it up.

import { h, field, notice, uniqueId } from "../lib/dom.js";
import { pretty } from "../lib/format.js";

/**
 * `kind` decides the control and how its text maps to the API's value;
 * `right` is the permission needed to change it (default manageEndpoint);
 * `clearable`: an empty control sends null (back to the default) on edit.
 */
export const FIELDS = [
  { key: "url", label: "URL", kind: "url", section: "Basics", required: true, placeholder: "https://example.com/webhooks" },
  { key: "description", label: "Description", kind: "text", section: "Basics" },
  {
    key: "filterTypes",
    label: "Event types",
    kind: "eventTypes",
    section: "Subscription",
    clearable: true,
    help: "Tick none to receive every event type.",
  },
  {
    key: "channels",
    label: "Channels",
    kind: "list",
    section: "Subscription",
    clearable: true,
    help: "Comma-separated. Empty: messages on any channel.",
  },
  {
    key: "rateLimit",
    label: "Rate limit (messages per second)",
    kind: "integer",
    section: "Delivery policy",
    clearable: true,
    min: 1,
    help: "Empty: no limit.",
  },
  {
    key: "timeoutSecs",
    label: "Timeout (seconds)",
    kind: "number",
    section: "Delivery policy",
    min: 0.1,
    max: 120,
    step: 0.1,
    help: "How long the endpoint has to answer; 15 by default.",
  },
  {
    key: "payloadTemplate",
    label: "Payload template (JSON)",
    kind: "json",
    section: "Delivery policy",
    clearable: true,
    right: "manageTransformation",
    help: "Builds the body from {{msg.id}}, {{msg.eventType}}, {{msg.payload}}, {{attempt.number}}… Empty: the payload as posted.",
  },
];

/** The endpoint's current value of a field, as the form compares it. */
function currentValue(f, ep) {
  if (!ep) return f.kind === "eventTypes" || f.clearable ? null : undefined;
  if (f.key === "filterTypes") return ep.filterTypes || ep.eventTypes || null;
  const v = ep[f.key];
  return v === undefined ? null : v;
}

/** Builds one field's control; returns { node, read() } (read throws on bad input). */
function control(f, value, types, disabled) {
  if (f.kind === "eventTypes") {
    const chosen = new Set(value || []);
    const id = uniqueId("types");
    const boxes = types.map((et) => {
      const box = h("input", { type: "checkbox", name: f.key, value: et.name, checked: chosen.has(et.name), disabled, id: uniqueId("et") });
      return h("div", { class: "check" }, box, h("label", { for: box.id, text: et.name }));
    });
    const node = h(
      "fieldset",
      { class: "field", id, testid: `field-${f.key}` },
      h("legend", { text: f.label }),
      boxes.length ? h("div", { class: "checks" }, boxes) : h("p", { class: "dim", text: "The catalog is empty." }),
      f.help ? h("small", { class: "help", text: f.help }) : null,
    );
    const read = () => {
      const names = [...node.querySelectorAll("input:checked")].map((b) => b.value);
      return names.length ? names : null;
    };
    return { node, read };
  }
  let input;
  if (f.kind === "json") {
    input = h("textarea", { name: f.key, rows: 5, spellcheck: "false", class: "mono" });
    input.value = value === null || value === undefined ? "" : pretty(value);
  } else {
    const type = { url: "url", integer: "number", number: "number" }[f.kind] || "text";
    input = h("input", {
      name: f.key,
      type,
      required: f.required,
      placeholder: f.placeholder,
      min: f.min,
      max: f.max,
      step: f.kind === "integer" ? 1 : f.step,
      autocomplete: "off",
    });
    input.value = value === null || value === undefined ? "" : f.kind === "list" ? value.join(", ") : String(value);
  }
  input.disabled = disabled;
  input.setAttribute("data-testid", `field-${f.key}`);
  const { wrap } = field(f.label, input, f.help);
  const read = () => {
    const text = input.value.trim();
    if (text === "") return f.clearable ? null : undefined;
    if (f.kind === "list") return text.split(",").map((s) => s.trim()).filter(Boolean);
    if (f.kind === "integer" || f.kind === "number") return Number(text);
    if (f.kind === "json") {
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new Error(`${f.label}: not JSON (${err.message})`);
      }
    }
    return text;
  };
  return { node: wrap, read };
}

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * The create form (no `endpoint`) or the edit form. `onSubmit(fn)` sets
 * what runs with the body: the whole endpoint to create, or on edit only
 * the fields that changed (so a token that may change only the template
 * sends only the template).
 */
export function endpointForm(ctx, { types, endpoint }) {
  const controls = [];
  const sections = new Map();
  for (const f of FIELDS) {
    const may = ctx.perms[f.right || "manageEndpoint"];
    const c = control(f, currentValue(f, endpoint), types, !may);
    controls.push([f, c, may]);
    if (!sections.has(f.section)) sections.set(f.section, []);
    sections.get(f.section).push(c.node);
  }
  const status = h("div", { class: "form-status" });
  const submit = h("button", { type: "submit", class: "primary", testid: "save-endpoint", text: endpoint ? "Save changes" : "Add endpoint" });
  const node = h(
    "form",
    { class: "endpoint-form", novalidate: true, testid: "endpoint-form" },
    [...sections].map(([title, nodes]) => h("fieldset", { class: "section" }, h("legend", { text: title }), nodes)),
    status,
    h("div", { class: "actions" }, submit),
  );
  let handler = async () => {};
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const body = {};
    try {
      for (const [f, c, may] of controls) {
        if (!may) continue;
        const value = c.read();
        if (endpoint) {
          if (value === undefined || same(value, currentValue(f, endpoint))) continue;
          body[f.key] = value;
        } else if (value !== undefined && value !== null) {
          body[f.key] = value;
        }
      }
      if (endpoint && Object.keys(body).length === 0) {
        status.append(notice("info", "Nothing changed."));
        return;
      }
      submit.disabled = true;
      await handler(body);
    } catch (err) {
      status.append(notice("error", err.message || String(err), { testid: "form-error" }));
    } finally {
      submit.disabled = false;
    }
  });
  return { node, onSubmit: (fn) => (handler = fn) };
}
