// The customer portal. It is opened with the url that app-portal-access
// returns, `/portal/#key=appsk_…`: the token is taken from the fragment,
// kept in sessionStorage (no cookie is ever set) and removed from the
// address bar; every call carries it as a bearer header. The token is
// scoped to one application on the server, so the page can show nothing
// else, whatever its url says.

import { Api, appPath } from "./lib/api.js";
import { button, h } from "./lib/dom.js";
import { context, frame, route, stop } from "./lib/frame.js";
import { Permissions } from "./lib/permissions.js";
import * as router from "./lib/router.js";
import * as session from "./lib/session.js";
import { appContext, errorText, renderApp } from "./screens/app-shell.js";

const TOKEN = "herald.portal.token";

async function start() {
  const root = document.getElementById("root");
  session.takeFromUrl(TOKEN);
  const token = session.load(TOKEN);
  if (!token) {
    stop(root, "Webhooks", "This page needs an access link. Open it again from the application that sent you here.");
    return;
  }
  const api = new Api(token);
  let me;
  let app;
  try {
    me = await api.get("/auth/me");
    if (me.kind !== "app") throw new Error("This is not an application's access key; the operator dashboard is at /ui/.");
    app = await api.get(appPath(me.appId));
  } catch (err) {
    session.forget(TOKEN);
    stop(root, "Webhooks", errorText(err));
    return;
  }
  const perms = new Permissions(me);
  const logout = button("Log out", async () => {
    try {
      await api.post("/auth/logout");
    } finally {
      session.forget(TOKEN);
      stop(root, "Webhooks", "You are logged out. Open the access link again to come back.");
    }
  }, { testid: "logout" });
  const badges = perms.readOnly ? [h("span", { class: "badge dim", testid: "read-only", text: "read-only" })] : [];
  const { main } = frame(root, { title: `Webhooks · ${app.name}`, badges, actions: [logout] });
  const base = context(api, perms, "portal");
  await route(({ parts, query }) => {
    if (parts[0] !== "app" || !parts[1]) {
      router.replace(["app", me.appId, "endpoints"]);
      return renderApp(main, appContext(base, me.appId), ["endpoints"], new URLSearchParams());
    }
    return renderApp(main, appContext(base, parts[1]), parts.slice(2), query);
  });
}

start();
