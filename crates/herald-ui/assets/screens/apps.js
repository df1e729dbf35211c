// The dashboard's applications: every one, a form to add one, and for each
// a customer-portal link (app-portal-access), as the platform would hand
// it to its customer.

import { appPath } from "../lib/api.js";
import { button, card, field, h, link, notice, table } from "../lib/dom.js";
import { time } from "../lib/format.js";
import { href } from "../lib/router.js";

/** Asks for a portal url for `app` and shows it, with a link to open it. */
export function portalLinkButton(ctx, app, out) {
  return button(
    "Portal link",
    async () => {
      out.replaceChildren();
      try {
        const access = await ctx.api.post(`/auth/app-portal-access/${encodeURIComponent(app.id)}`, {});
        const url = h("input", { type: "text", readonly: true, value: access.url, class: "mono", testid: "portal-url" });
        out.append(
          field(`Customer portal for ${app.name}`, url, "Valid for 7 days. It holds an app-scoped token: give it only to that customer.").wrap,
          link(access.url, "Open the portal", { target: "_blank", rel: "noopener noreferrer", testid: "open-portal" }),
        );
        url.select();
      } catch (e) {
        out.append(notice("error", e.message, { testid: "action-error" }));
      }
    },
    { testid: "portal-link", "aria-label": `Portal link for ${app.name}` },
  );
}

function createForm(ctx, onCreated) {
  const name = h("input", { name: "name", required: true, autocomplete: "off", testid: "app-name" });
  const uid = h("input", { name: "uid", autocomplete: "off", testid: "app-uid" });
  const status = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "inline-form", novalidate: true },
    field("Name", name).wrap,
    field("Uid (optional)", uid, "Your own id for it, usable in place of Herald's.").wrap,
    h("button", { type: "submit", class: "primary", testid: "create-app", text: "Add application" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const app = await ctx.api.post("/app", { name: name.value.trim(), uid: uid.value.trim() || undefined });
      onCreated(app);
    } catch (e) {
      status.append(notice("error", e.message, { testid: "form-error" }));
    }
  });
  return card("Add an application", form, status);
}

export async function render(ctx) {
  const out = h("div", { "aria-live": "polite", testid: "portal-link-out" });
  const list = h("div", { testid: "apps" });
  const more = h("div", { class: "actions" });
  const columns = [
    ["Name", (a) => link(href(["app", a.id, "endpoints"]), a.name, { testid: "app-link" })],
    ["Uid", (a) => (a.uid ? h("code", { text: a.uid }) : "—")],
    ["Id", (a) => h("code", { text: a.id })],
    ["Created", (a) => time(a.createdAt)],
    ["", (a) => portalLinkButton(ctx, a, out)],
  ];
  const show = async (iterator) => {
    const page = await ctx.api.get("/app", { limit: 50, iterator });
    if (!iterator) list.replaceChildren();
    list.append(
      page.data.length || iterator
        ? table(columns, page.data, { testid: "apps-table" })
        : h("p", { class: "empty", text: "No applications yet." }),
    );
    more.replaceChildren();
    if (!page.done && page.iterator) more.append(button("More applications", () => show(page.iterator)));
  };
  await show();
  return h(
    "div",
    {},
    h("h1", { text: "Applications" }),
    card(null, list, more, out),
    createForm(ctx, (app) => {
      ctx.flash("ok", `Application ${app.name} added.`);
      ctx.go(["app", app.id, "endpoints"]);
    }),
  );
}

/** The line above an application's screens in the dashboard. */
export async function appHeader(ctx, appId) {
  const app = await ctx.api.get(appPath(appId));
  const out = h("div", { "aria-live": "polite", testid: "portal-link-out" });
  return h(
    "div",
    { class: "app-head" },
    h("p", { class: "crumbs" }, link(href(["apps"]), "Applications"), " / ", h("strong", { testid: "app-title", text: app.name }), " ", h("code", { class: "dim", text: app.id })),
    h("div", { class: "actions" }, portalLinkButton(ctx, app, out)),
    out,
  );
}
