// Walks the operator dashboard in headless Chromium: log in with the admin
// token, pick an application and use its screens, hand out a portal link,
// read the server's health, add an operational webhook endpoint; at phone
// width and from the keyboard too. Run by the herald integration test
// `dashboard::*`, which checks what arrived at the operational endpoint.
//
// Env: BASE (the server), ADMIN_TOKEN, ACME_ID, BROKEN_URL (an endpoint
// whose deliveries fail), RECEIVER_URL, CHROMIUM, SCREENSHOT_DIR.
import assert from "node:assert/strict";
import { assertLabelled, assertNoOverflow, fact, go, launch, newPage, shot } from "./lib.mjs";

const { BASE, ADMIN_TOKEN, ACME_ID, BROKEN_URL, RECEIVER_URL } = process.env;
assert.ok(BASE && ADMIN_TOKEN && ACME_ID && BROKEN_URL && RECEIVER_URL, "BASE, ADMIN_TOKEN, ACME_ID, BROKEN_URL and RECEIVER_URL are required");

const browser = await launch();
try {
  const page = await newPage(browser);
  await page.goto(`${BASE}/ui/`);
  await page.getByTestId("login").waitFor();
  await assertLabelled(page, "the login form");
  await page.getByLabel("Admin token").fill("not-the-token");
  await page.getByTestId("login-submit").click();
  await page.getByTestId("login-error").filter({ hasText: "(401)" }).waitFor();
  await page.getByLabel("Admin token").fill(ADMIN_TOKEN);
  await page.keyboard.press("Enter");

  // Every application; pick one and use the same screens as the portal.
  await page.getByTestId("apps-table").waitFor();
  const names = await page.getByTestId("app-link").allTextContents();
  assert.deepEqual(names.sort(), ["Acme", "Other"]);
  assert.deepEqual((await page.context().cookies()).map((c) => c.name), [], "no cookie");
  await shot(page, "dashboard-apps");
  await page.getByTestId("app-link").filter({ hasText: "Acme" }).click();
  await page.getByTestId("app-title").filter({ hasText: "Acme" }).waitFor();
  await page.getByTestId("endpoint-link").first().waitFor();
  assert.match(page.url(), new RegExp(`#/app/${ACME_ID}/endpoints$`));
  await page.getByTestId("portal-link").click();
  const portalUrl = await page.getByTestId("portal-url").inputValue();
  assert.match(portalUrl, new RegExp(`^${BASE}/portal/#key=appsk_`));
  await page.getByTestId("nav-messages").click();
  await page.getByTestId("messages-table").waitFor();
  await shot(page, "dashboard-app-messages");

  // The metrics parser, on text with a series missing: absent is not zero.
  const parsed = await page.evaluate(async () => {
    const src = document.querySelector("script[type=module]").src.replace("dashboard.js", "lib/metrics.js");
    const m = await import(src);
    const before = m.parse('# TYPE a counter\nherald_attempts_total{outcome="success"} 10\nherald_attempts_total{outcome="failure"} 1\nherald_circuits_open 0\n');
    const after = m.parse('herald_attempts_total{outcome="success"} 30\nherald_attempts_total{outcome="failure"} 1\nherald_circuits_open 2\n');
    return {
      open: m.value(after, "herald_circuits_open"),
      missing: m.value(after, "herald_backlog_deliveries") === undefined,
      rate: m.rate(before, after, 4, "herald_attempts_total", { outcome: "success" }),
      both: m.value(after, "herald_attempts_total"),
    };
  });
  assert.deepEqual(parsed, { open: 2, missing: true, rate: 5, both: 31 });

  // Server health: series that exist are numbers, those not yet reported say so.
  await page.getByTestId("top-server").click();
  await page.getByTestId("server-figures").waitFor();
  for (const id of ["in-flight", "circuits-open"]) {
    assert.match(await page.getByTestId(id).textContent(), /^\d+$/, id);
  }
  for (const id of ["backlog", "endpoints-failing"]) {
    assert.match(await page.getByTestId(id).textContent(), /^(\d+|not reported)$/, id);
  }
  await page.getByTestId("deliveries-per-second").filter({ hasText: /^\d+(\.\d)?$/ }).waitFor({ timeout: 12_000 });
  await page.getByTestId("failures-per-second").filter({ hasText: /^\d+(\.\d)?$/ }).waitFor();
  assert.match(await page.getByTestId("api-health").textContent(), /API: ok, database: ok/);
  await page.getByTestId("failing-endpoint").filter({ hasText: BROKEN_URL }).waitFor();
  assert.equal(await page.getByTestId("failing-endpoint").count(), 1, "only the broken endpoint is failing");
  await shot(page, "dashboard-server");

  // Operational webhooks: add one, and see its secret.
  await page.getByTestId("top-operational").click();
  await page.getByTestId("no-op-endpoints").waitFor();
  await assertLabelled(page, "the operational form");
  await page.getByLabel("URL").fill(`${RECEIVER_URL}/ops`);
  await page.getByLabel("Description").fill("SRE pager");
  await page.getByLabel("endpoint.created", { exact: true }).check();
  await page.getByTestId("op-create").click();
  await page.getByTestId("op-endpoint-url").filter({ hasText: `${RECEIVER_URL}/ops` }).waitFor();
  await page.getByTestId("op-reveal").click();
  await page.getByTestId("op-secret").filter({ hasText: /^whsec_[^•]+$/ }).waitFor();
  const opSecret = await page.getByTestId("op-secret").textContent();
  await shot(page, "dashboard-operational");

  // An endpoint added from the dashboard is told to the operational one.
  await go(page, `#/app/${ACME_ID}/endpoints/new`);
  await page.getByLabel("URL").fill(`${RECEIVER_URL}/from-dashboard`);
  await page.getByTestId("save-endpoint").click();
  await page.getByTestId("endpoint-title").filter({ hasText: "from-dashboard" }).waitFor();
  fact({ opSecret, createdEndpointId: page.url().split("/endpoints/")[1] });

  // Phone width, and the keyboard.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const route of ["#/apps", "#/server", "#/operational", `#/app/${ACME_ID}/endpoints`]) {
    await go(page, route);
    await page.waitForTimeout(200);
    await assertNoOverflow(page, `${route} at 390 px`);
    await assertLabelled(page, `${route} at 390 px`);
  }
  await shot(page, "dashboard-phone");
  await page.setViewportSize({ width: 1280, height: 800 });
  await go(page, "#/apps");
  await page.getByTestId("top-server").focus();
  await page.keyboard.press("Enter");
  await page.getByTestId("server-figures").waitFor();
  assert.match(page.url(), /#\/server$/);

  await page.getByTestId("logout").click();
  await page.getByTestId("login").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("herald.admin.token")), null);
  assert.deepEqual(page.errors, [], "no script errors on the page");
  console.log("dashboard browser test: passed");
} finally {
  await browser.close();
}
