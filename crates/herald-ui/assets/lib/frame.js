// What both pages share around their screens: the header, the main region,
// the context every screen gets (the API, the token's rights, navigation,
// a notice carried over to the next screen), and routing on the fragment.

import { h } from "./dom.js";
import { notice } from "./dom.js";
import * as router from "./router.js";

/**
 * Builds the page's frame in `root`: a header with `title`, `badges` and
 * `actions`, a navigation bar (`nav`: [key, label, href]) and the main
 * region, which it returns.
 */
export function frame(root, { title, badges = [], nav = [], actions = [] }) {
  const main = h("main", { id: "main", tabindex: -1, testid: "main" });
  const skip = h("a", { class: "skip", href: "#main", text: "Skip to content" });
  // The fragment holds the route: the skip link moves focus, not the url.
  skip.addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  const header = h(
    "header",
    { class: "top" },
    h("div", { class: "brand" }, h("span", { class: "title", testid: "page-title", text: title }), badges),
    nav.length
      ? h("nav", { class: "top-nav", "aria-label": "Main" }, nav.map(([key, label, href]) => h("a", { href, testid: `top-${key}`, text: label })))
      : null,
    h("div", { class: "top-actions" }, actions),
  );
  root.replaceChildren(skip, header, main);
  return { main, header };
}

/** Marks the top navigation link of the current section. */
export function markNav(header, key) {
  for (const a of header.querySelectorAll(".top-nav a")) {
    if (a.dataset.testid === `top-${key}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

/** The context of every screen; `api` and `perms` are the page's. */
export function context(api, perms, mode) {
  let pending = [];
  return {
    api,
    perms,
    mode,
    flash(kind, text) {
      pending.push([kind, text]);
    },
    takeFlash() {
      const out = pending.map(([kind, text]) => notice(kind, text, { testid: "flash" }));
      pending = [];
      return out;
    },
  };
}

/** Renders now and on every change of the fragment. */
export function route(render) {
  router.onChange(() => render(router.current()));
  return render(router.current());
}

/** A page that cannot go on (no token, a refused one): says why. */
export function stop(root, title, text, extra) {
  root.replaceChildren(
    h("main", { id: "main", class: "narrow" }, h("h1", { text: title }), notice("error", text, { testid: "login-error" }), extra || null),
  );
}
