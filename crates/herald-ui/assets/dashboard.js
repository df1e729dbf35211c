// The operator dashboard at /ui/: logs in with the admin token (typed into
// a form, kept in this tab's sessionStorage, never a cookie), then shows
// every application with the same screens the portal has, the server's
// health and the operational webhooks. Like the portal it calls only the
// public API; the page itself may not be framed.

import { Api } from "./lib/api.js";
import { button, field, h, notice } from "./lib/dom.js";
import { context, frame, markNav, route } from "./lib/frame.js";
import { Permissions } from "./lib/permissions.js";
import * as router from "./lib/router.js";
import * as session from "./lib/session.js";
import { appContext, errorText, renderApp } from "./screens/app-shell.js";
import * as apps from "./screens/apps.js";
import * as operational from "./screens/operational.js";
import * as serverHealth from "./screens/server-health.js";

const TOKEN = "herald.admin.token";
const root = document.getElementById("root");

function loginForm(message) {
  const token = h("input", { type: "password", name: "token", required: true, autocomplete: "current-password", testid: "admin-token" });
  const status = h("div", { "aria-live": "polite" }, message ? notice("error", message, { testid: "login-error" }) : null);
  const form = h(
    "form",
    { class: "login", novalidate: true, testid: "login" },
    h("h1", { text: "Herald dashboard" }),
    field("Admin token", token, "The server's --admin-token (or the one it generated into its data directory).").wrap,
    h("button", { type: "submit", class: "primary", testid: "login-submit", text: "Log in" }),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const api = new Api(token.value.trim());
    try {
      const me = await api.get("/auth/me");
      if (me.kind !== "admin") throw new Error("That is an application's token; the dashboard needs the admin token.");
      session.save(TOKEN, token.value.trim());
      start();
    } catch (e) {
      status.replaceChildren(notice("error", errorText(e), { testid: "login-error" }));
      token.focus();
    }
  });
  root.replaceChildren(h("main", { id: "main", class: "narrow" }, form));
  token.focus();
}

async function start() {
  const token = session.load(TOKEN);
  if (!token) return loginForm();
  const api = new Api(token);
  let me;
  try {
    me = await api.get("/auth/me");
    if (me.kind !== "admin") throw new Error("not the admin token");
  } catch (e) {
    session.forget(TOKEN);
    return loginForm(errorText(e));
  }
  const logout = button("Log out", async () => {
    session.forget(TOKEN);
    loginForm();
  }, { testid: "logout" });
  const { main, header } = frame(root, {
    title: "Herald",
    nav: [
      ["apps", "Applications", router.href(["apps"])],
      ["server", "Server health", router.href(["server"])],
      ["operational", "Operational webhooks", router.href(["operational"])],
    ],
    actions: [logout],
  });
  const base = context(api, new Permissions(me), "dashboard");
  base.go = router.go;

  const show = async (screen, ...args) => {
    main.replaceChildren(h("p", { class: "loading", text: "Loading…" }));
    try {
      const node = await screen(base, ...args);
      main.replaceChildren(...base.takeFlash(), node);
      const heading = main.querySelector("h1");
      if (heading) {
        heading.tabIndex = -1;
        heading.focus({ preventScroll: true });
      }
    } catch (e) {
      main.replaceChildren(notice("error", errorText(e), { testid: "screen-error" }));
    }
  };

  await route(async ({ parts, query }) => {
    const [section = "apps", appId] = parts;
    markNav(header, section === "app" ? "apps" : section);
    if (section === "server") return show(serverHealth.render);
    if (section === "operational") return show(operational.render, query);
    if (section === "app" && appId) {
      const head = h("div", {});
      const screens = h("div", {});
      main.replaceChildren(...base.takeFlash(), head, screens);
      apps.appHeader(base, appId).then((node) => head.replaceChildren(node), (e) => head.replaceChildren(notice("error", errorText(e), { testid: "screen-error" })));
      const ctx = appContext(base, appId);
      ctx.takeFlash = () => [];
      return renderApp(screens, ctx, parts.slice(2), query);
    }
    if (section !== "apps") router.replace(["apps"]);
    return show(apps.render);
  });
}

start();
