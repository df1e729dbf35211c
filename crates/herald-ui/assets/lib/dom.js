// Building the page without HTML strings. Everything shown comes from the
// API, and much of it from strangers (payloads, response bodies, URLs), so
// values are only ever set as text or attributes, never parsed as markup;
// the page's CSP forbids inline script and style besides.

let nextId = 0;

/** A unique element id, for <label for=…>. */
export function uniqueId(prefix = "f") {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * An element: `props` are attributes, except `text` (its text), `class`,
 * `on*` functions (event listeners) and `testid` (data-testid). Children
 * are nodes or strings (set as text); null and false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  node.append(...flatten(children));
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, with the same props as `h`. */
export function svg(tag, props = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setProps(node, props);
  node.append(...flatten(children));
  return node;
}

function setProps(node, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "testid") node.setAttribute("data-testid", value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
}

function flatten(children) {
  const out = [];
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    out.push(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return out;
}

/** A labelled form control in a wrapper; returns { wrap, input }. */
export function field(label, control, help) {
  const id = control.id || uniqueId();
  control.id = id;
  const helpNode = help ? h("small", { class: "help", id: `${id}-help`, text: help }) : null;
  if (helpNode) control.setAttribute("aria-describedby", helpNode.id);
  const wrap = h("div", { class: "field" }, h("label", { for: id, text: label }), control, helpNode);
  return { wrap, input: control };
}

/** A <select> from [value, label] pairs. */
export function select(name, options, selected) {
  const node = h("select", { name });
  for (const [value, label] of options) {
    node.append(h("option", { value, text: label, selected: value === selected }));
  }
  return node;
}

/** A button that runs `action` once at a time, disabled while it runs. */
export function button(text, action, props = {}) {
  const node = h("button", { type: "button", ...props, text });
  node.addEventListener("click", async (event) => {
    if (node.disabled) return;
    node.disabled = true;
    try {
      await action(event);
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

/** A card: a titled section of a screen. */
export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", { text: title }) : null, ...children);
}

/**
 * A table: `columns` are [heading, (row) => cell]; a cell is a node or
 * text. Wrapped so that a wide table scrolls by itself on a phone rather
 * than widening the page.
 */
export function table(columns, rows, props = {}) {
  const head = h("tr", {}, columns.map(([title]) => h("th", { scope: "col", text: title })));
  const body = rows.map((row) => h("tr", {}, columns.map(([title, cell]) => h("td", { "data-label": title }, cell(row)))));
  return h("div", { class: "table-wrap" }, h("table", props, h("thead", {}, head), h("tbody", {}, body)));
}

/** A message in the screen: `kind` is ok, error or info. */
export function notice(kind, text, props = {}) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status", ...props, text });
}

/**
 * An action that asks first, in the page (no blocking dialog): the button
 * turns into "Really …? [confirm] [cancel]".
 */
export function confirmButton(text, question, action, props = {}) {
  const wrap = h("span", { class: "confirm" });
  const start = h("button", { type: "button", class: "danger", ...props, text });
  const ask = () => {
    const yes = button(`Yes, ${text.toLowerCase()}`, async () => {
      await action();
    }, { class: "danger", testid: props.testid ? `${props.testid}-confirm` : undefined });
    const no = h("button", { type: "button", text: "Cancel", onclick: reset });
    wrap.replaceChildren(h("span", { class: "question", text: question }), yes, no);
    yes.focus();
  };
  const reset = () => {
    wrap.replaceChildren(start);
    start.focus();
  };
  start.addEventListener("click", ask);
  wrap.append(start);
  return wrap;
}

/** A link to a route of the page. */
export function link(href, text, props = {}) {
  return h("a", { href, ...props, text });
}
