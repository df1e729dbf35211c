// The portal's checks beyond its screens: another application's data is
// out of reach (by editing the route, by swapping or tampering with the
// token), a read-only token sees no control that changes anything and is
// refused when it forces one, the pages fit a phone, the main controls work
// from the keyboard, and framing is allowed only to the origins the server
// names.
//
// Env: OTHER_APP_ID, OTHER_EP, OTHER_MSG, OTHER_TOKEN, OTHER_MARKER (text
// only the other application's data contains), READONLY_URL,
// EMBED_ALLOWED, EMBED_DENIED.
import assert from "node:assert/strict";
import { assertLabelled, assertNoOverflow, go, newPage, settled, shot } from "./lib.mjs";

const env = process.env;
const TOKEN_KEY = "herald.portal.token";

/** The screen shows the API's refusal, and the API did refuse. */
async function refused(page, route, apiPath, statuses = [403]) {
  page.answers.length = 0;
  await go(page, route);
  await page.getByTestId("screen-error").filter({ hasText: /\((401|403|404)\)/ }).waitFor();
  const hit = page.answers.filter((a) => a.path.startsWith(apiPath));
  assert.ok(hit.length > 0, `${route}: no call to ${apiPath}`);
  for (const a of hit) assert.ok(statuses.includes(a.status), `${route}: ${a.method} ${a.path} answered ${a.status}`);
}

export async function checkIsolation(browser, page, { base, appId }) {
  const other = env.OTHER_APP_ID;
  // Another application's id typed into the route.
  await refused(page, `#/app/${other}/endpoints`, `/api/v1/app/${other}/`);
  await refused(page, `#/app/${other}/endpoints/${env.OTHER_EP}`, `/api/v1/app/${other}/`);
  await refused(page, `#/app/${other}/messages/${env.OTHER_MSG}`, `/api/v1/app/${other}/`);
  await refused(page, `#/app/${other}/messages`, `/api/v1/app/${other}/`);
  const text = await page.evaluate(() => document.body.innerText);
  assert.ok(!text.includes(env.OTHER_MARKER), "another application's data showed");

  // Another application's token swapped in, on this application's route:
  // refused, and this application's data does not show.
  const own = await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY);
  await go(page, `#/app/${appId}/endpoints`);
  await page.evaluate(([k, t]) => sessionStorage.setItem(k, t), [TOKEN_KEY, env.OTHER_TOKEN]);
  page.answers.length = 0;
  await page.reload();
  await page.getByTestId("screen-error").filter({ hasText: "(403)" }).waitFor();
  assert.ok(page.answers.some((a) => a.path.startsWith(`/api/v1/app/${appId}/`) && a.status === 403));
  assert.ok(!page.answers.some((a) => a.path.startsWith(`/api/v1/app/${appId}/`) && a.status < 300), "no call into this app succeeded");
  assert.ok(!(await page.evaluate(() => document.body.innerText)).includes("portal-hook"), "this app's endpoint showed");
  await page.evaluate(([k, t]) => sessionStorage.setItem(k, t), [TOKEN_KEY, own]);
  await page.reload();
  await settled(page);

  // A token edited by hand is refused outright.
  const tampered = await newPage(browser);
  await tampered.goto(`${base}/portal/#key=${own.slice(0, -3)}xyz`);
  await tampered.getByTestId("login-error").filter({ hasText: "(401)" }).waitFor();
  assert.ok(!tampered.answers.some((a) => a.status < 300), "nothing answered a tampered token");
  await tampered.context().close();
}

export async function checkReadOnly(browser, { endpointId }) {
  const page = await newPage(browser);
  await page.goto(env.READONLY_URL);
  await page.getByTestId("read-only").waitFor();
  await page.getByTestId("endpoint-link").first().waitFor();
  assert.equal(await page.getByTestId("add-endpoint").count(), 0, "no add button");
  const appId = page.url().split("/app/")[1].split("/")[0];
  await go(page, `#/app/${appId}/endpoints/${endpointId}`);
  await page.getByTestId("endpoint-settings").waitFor();
  for (const id of ["edit-endpoint", "toggle-endpoint", "delete-endpoint", "rotate-secret", "add-header", "save-headers"]) {
    assert.equal(await page.getByTestId(id).count(), 0, `${id} shows to a read-only token`);
  }
  await go(page, `#/app/${appId}/endpoints/${endpointId}?tab=attempts`);
  await page.getByTestId("attempts-table").waitFor();
  assert.equal(await page.getByTestId("resend").count(), 0, "resend shows to a read-only token");
  assert.equal(await page.getByTestId("recover").count(), 0, "recover shows to a read-only token");
  await go(page, `#/app/${appId}/endpoints/${endpointId}?tab=test`);
  assert.equal(await page.getByTestId("send-test").count(), 0, "send-test shows to a read-only token");
  await shot(page, "portal-read-only");

  // Forced through the page's own token: the server refuses each.
  const statuses = await page.evaluate(async ([app, ep]) => {
    const token = sessionStorage.getItem("herald.portal.token");
    const call = async (method, path, body) =>
      (
        await fetch(`/api/v1/app/${app}${path}`, {
          method,
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
        })
      ).status;
    return [
      await call("POST", "/endpoint/", { url: "https://example.com/forced" }),
      await call("PATCH", `/endpoint/${ep}/`, { disabled: true }),
      await call("DELETE", `/endpoint/${ep}/`),
      await call("POST", `/endpoint/${ep}/secret/rotate/`, {}),
      await call("POST", `/endpoint/${ep}/send-example/`, { eventType: "webhook.test" }),
    ];
  }, [appId, endpointId]);
  assert.deepEqual(statuses, [403, 403, 403, 403, 403], "forced changes are refused");
  await page.context().close();
}

export async function checkPhone(page, { appId, endpointId, msgId }) {
  await page.setViewportSize({ width: 390, height: 844 });
  const routes = [
    ["endpoints", `#/app/${appId}/endpoints`],
    ["endpoint", `#/app/${appId}/endpoints/${endpointId}`],
    ["attempts", `#/app/${appId}/endpoints/${endpointId}?tab=attempts`],
    ["health", `#/app/${appId}/endpoints/${endpointId}?tab=health`],
    ["test event", `#/app/${appId}/endpoints/${endpointId}?tab=test`],
    ["edit", `#/app/${appId}/endpoints/${endpointId}/edit`],
    ["new endpoint", `#/app/${appId}/endpoints/new`],
    ["messages", `#/app/${appId}/messages`],
    ["message", `#/app/${appId}/messages/${msgId}`],
    ["event catalog", `#/app/${appId}/event-types`],
  ];
  for (const [what, route] of routes) {
    await go(page, route);
    await page.waitForTimeout(150);
    await assertNoOverflow(page, `${what} at 390 px`);
    await assertLabelled(page, `${what} at 390 px`);
    if (what === "endpoint") await shot(page, "portal-phone");
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  for (const [what, route] of routes.slice(0, 3)) {
    await go(page, route);
    await assertNoOverflow(page, `${what} at 1280 px`);
  }
}

export async function checkKeyboard(page, { appId, endpointId }) {
  await go(page, `#/app/${appId}/endpoints`);
  await page.reload();
  await page.getByTestId("endpoint-link").first().waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main", "the skip link moves focus to the content");
  // Tab to the catalog's tab and open it with Enter.
  const reach = async (testid, max = 30) => {
    for (let i = 0; i < max; i++) {
      await page.keyboard.press("Tab");
      if ((await page.evaluate(() => document.activeElement.dataset.testid)) === testid) return;
    }
    assert.fail(`${testid} was not reached with Tab`);
  };
  await reach("nav-event-types");
  await page.keyboard.press("Enter");
  await page.getByTestId("event-types").waitFor();
  assert.match(page.url(), /event-types$/);
  // On an endpoint: reveal the secret and start a rotation, keys only.
  await go(page, `#/app/${appId}/endpoints/${endpointId}`);
  await page.getByTestId("reveal-secret").waitFor();
  await reach("reveal-secret");
  await page.keyboard.press("Enter");
  await page.getByTestId("secret-value").filter({ hasText: /^whsec_[^•]+$/ }).waitFor();
  await reach("rotate-secret");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), "rotate-secret-confirm", "the confirmation takes focus");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter"); // Cancel
  assert.equal(await page.evaluate(() => document.activeElement.dataset.testid), "rotate-secret", "cancel gives focus back");
  // The create form: fill and submit it with keys only (then leave it).
  await go(page, `#/app/${appId}/endpoints/new`);
  await page.getByLabel("URL").focus();
  await page.keyboard.type("https://keyboard.example.com/hook");
  await page.keyboard.press("Enter");
  await page.getByTestId("endpoint-title").filter({ hasText: "keyboard.example.com" }).waitFor();
  await page.getByTestId("delete-endpoint").focus();
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  await page.getByTestId("flash").filter({ hasText: "deleted" }).waitFor();
}

export async function checkFraming(browser) {
  const allowed = await newPage(browser);
  await allowed.goto(env.EMBED_ALLOWED);
  const frame = allowed.frameLocator("#portal");
  await frame.getByTestId("endpoint-link").first().waitFor();
  assert.equal(await frame.getByTestId("endpoint-row").count(), 1, "the framed portal works");
  await frame.getByTestId("nav-messages").click();
  await frame.getByTestId("messages-table").waitFor();
  await shot(allowed, "portal-embedded");
  await allowed.context().close();

  const denied = await newPage(browser);
  const refusals = [];
  denied.on("console", (m) => {
    if (/frame-ancestors/.test(m.text())) refusals.push(m.text());
  });
  await denied.goto(env.EMBED_DENIED);
  await denied.waitForTimeout(3000);
  assert.equal(await denied.frameLocator("#portal").getByTestId("page-title").count(), 0, "an origin not named framed the portal");
  assert.ok(refusals.length > 0, "the browser said frame-ancestors refused it");
  await denied.context().close();
}
