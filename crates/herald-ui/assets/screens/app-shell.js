// One application's screens, the same in the portal and in the dashboard:
// endpoints, the event catalog and the message log, with each endpoint's
// and each message's own screens below them. The route after
// `#/app/{app}/` picks the screen; each screen loads what it shows from
// the API with the page's token, so the server alone decides what is seen.

import { appPath } from "../lib/api.js";
import { h, link, notice } from "../lib/dom.js";
import { go, href } from "../lib/router.js";
import * as endpoints from "./endpoints.js";
import * as endpoint from "./endpoint.js";
import * as eventTypes from "./event-types.js";
import * as messages from "./messages.js";
import * as message from "./message.js";

const SECTIONS = [
  ["endpoints", "Endpoints"],
  ["event-types", "Event catalog"],
  ["messages", "Messages"],
];

/** What the app's screens share: the API, the token's rights, links. */
export function appContext(base, appId) {
  return {
    ...base,
    appId,
    path: (rest = "") => appPath(appId, rest),
    href: (parts, query) => href(["app", appId, ...parts], query),
    go: (parts, query) => go(["app", appId, ...parts], query),
  };
}

function screenFor(rest) {
  const [section = "endpoints", id, sub] = rest;
  if (section === "endpoints" && id === "new") return [endpoints.renderCreate, []];
  if (section === "endpoints" && id && sub === "edit") return [endpoint.renderEdit, [id]];
  if (section === "endpoints" && id) return [endpoint.render, [id]];
  if (section === "endpoints") return [endpoints.render, []];
  if (section === "event-types") return [eventTypes.render, []];
  if (section === "messages" && id) return [message.render, [id]];
  if (section === "messages") return [messages.render, []];
  return [null, []];
}

/** How an API error reads on screen; 401/403/404 say why the page stops. */
export function errorText(err) {
  if (err && err.status === 401) return `The token was refused (401): ${err.detail || "log in again"}.`;
  if (err && err.status === 403) return `Not allowed (403): ${err.detail || "this token may not see this"}.`;
  if (err && err.status === 404) return `Not found (404): ${err.detail || "it does not exist"}.`;
  return err && err.message ? err.message : String(err);
}

/**
 * Renders the application screen named by `rest` into `main`. A failure
 * to load is shown in place of the screen, with the API's status.
 */
let firstRender = true;

export async function renderApp(main, ctx, rest, query) {
  const section = rest[0] || "endpoints";
  const nav = h(
    "nav",
    { class: "tabs", "aria-label": "Application" },
    SECTIONS.map(([key, label]) =>
      link(ctx.href([key]), label, {
        "aria-current": key === section ? "page" : undefined,
        testid: `nav-${key}`,
      }),
    ),
  );
  const body = h("div", { class: "screen", testid: "screen" }, h("p", { class: "loading", text: "Loading…" }));
  main.replaceChildren(nav, body);
  const [screen, args] = screenFor(rest);
  if (!screen) {
    body.replaceChildren(notice("error", `There is no screen at ${rest.join("/")}.`, { testid: "screen-error" }));
    return;
  }
  try {
    const node = await screen(ctx, ...args, query);
    body.replaceChildren(...(ctx.takeFlash ? ctx.takeFlash() : []), node);
    // After a navigation, focus goes to the new screen's heading (so a
    // screen reader reads it); on first load it stays at the top of the
    // page, where the skip link is.
    const heading = body.querySelector("h1");
    if (heading && !firstRender) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  } catch (err) {
    body.replaceChildren(notice("error", errorText(err), { testid: "screen-error" }));
  }
  firstRender = false;
}
