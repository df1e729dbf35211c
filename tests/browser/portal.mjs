// Drives the customer portal in headless Chromium through the url that
// app-portal-access returned: create an endpoint, send a test event and see
// its attempt, rotate the secret, resend, recover, edit, headers, disable,
// delete; then the checks in portal-checks.mjs (isolation, read-only,
// phone width, keyboard, framing). Run by the herald integration test
// `portal::*`, which checks on the receiver what the page caused; what the
// page saw is printed as FACT lines.
//
// Env: PORTAL_URL, APP_ID, RECEIVER_URL, FLAKY_EP (an endpoint whose
// message failed), CHROMIUM, SCREENSHOT_DIR, and those of portal-checks.mjs.
import assert from "node:assert/strict";
import { assertLabelled, fact, go, launch, newPage, shot } from "./lib.mjs";
import { checkFraming, checkIsolation, checkKeyboard, checkPhone, checkReadOnly } from "./portal-checks.mjs";

const { PORTAL_URL, APP_ID, RECEIVER_URL, FLAKY_EP } = process.env;
assert.ok(PORTAL_URL && APP_ID && RECEIVER_URL && FLAKY_EP, "PORTAL_URL, APP_ID, RECEIVER_URL and FLAKY_EP are required");
const base = new URL(PORTAL_URL).origin;

const browser = await launch();
try {
  const page = await newPage(browser);
  await page.goto(PORTAL_URL);
  await page.getByTestId("endpoints").or(page.getByText("No endpoints yet.")).waitFor();
  // The token left the address bar for sessionStorage; no cookie was set.
  assert.ok(!page.url().includes("key="), `the token is still in the url: ${page.url()}`);
  assert.match(page.url(), new RegExp(`#/app/${APP_ID}/endpoints$`));
  assert.match(await page.evaluate(() => sessionStorage.getItem("herald.portal.token")), /^appsk_/);
  assert.equal(await page.evaluate(() => document.cookie), "");
  assert.deepEqual((await page.context().cookies()).map((c) => c.name), [], "no cookie at all");
  await shot(page, "portal-endpoints");

  // Create an endpoint, with a subscription and a policy field.
  await page.getByTestId("add-endpoint").click();
  await page.getByTestId("endpoint-form").waitFor();
  await assertLabelled(page, "the endpoint form");
  await page.getByLabel("URL").fill(`${RECEIVER_URL}/portal-hook`);
  await page.getByLabel("Description").fill("Acme billing");
  await page.getByLabel("invoice.paid", { exact: true }).check();
  await page.getByLabel("Rate limit (messages per second)").fill("5");
  await shot(page, "portal-new-endpoint");
  await page.getByTestId("save-endpoint").click();
  await page.getByTestId("endpoint-title").filter({ hasText: `${RECEIVER_URL}/portal-hook` }).waitFor();
  await page.getByTestId("flash").filter({ hasText: "added" }).waitFor();
  const endpointId = page.url().split("/endpoints/")[1];
  assert.match(endpointId, /^ep_/);
  assert.match(await page.getByTestId("endpoint-settings").textContent(), /invoice\.paid.*5 messages\/s/s);

  await page.getByTestId("reveal-secret").click();
  await page.getByTestId("secret-value").filter({ hasText: /^whsec_[^•]+$/ }).waitFor();
  const secretBefore = await page.getByTestId("secret-value").textContent();
  await shot(page, "portal-endpoint");

  // A test event, and its attempt as it appears.
  await page.getByTestId("tab-test").click();
  await page.getByTestId("send-test").click();
  await page.getByTestId("test-attempt").filter({ hasText: "Succeeded" }).waitFor({ timeout: 25_000 });
  const testMsgId = (await page.getByTestId("test-message-link").first().getAttribute("href")).split("/messages/")[1];
  assert.match(testMsgId, /^msg_/);
  await shot(page, "portal-test-event");

  // Rotate: the page shows the new secret.
  await page.getByTestId("tab-overview").click();
  await page.getByTestId("rotate-secret").click();
  await page.getByTestId("rotate-secret-confirm").click();
  await page.getByTestId("rotated").waitFor();
  const secretAfter = await page.getByTestId("secret-value").textContent();
  assert.match(secretAfter, /^whsec_/);
  assert.notEqual(secretAfter, secretBefore, "rotation shows a new secret");
  fact({ endpointId, secretBefore, secretAfter, testMsgId });

  // The message: its payload, where it went, and a resend.
  await go(page, `#/app/${APP_ID}/messages/${testMsgId}`);
  await page.getByTestId("payload").waitFor();
  assert.deepEqual(JSON.parse(await page.getByTestId("payload").textContent()), { success: true });
  await page.getByTestId("resend-destination").click();
  await page.getByTestId("resend-done").waitFor();
  const rows = page.getByTestId("attempts-table").locator("tbody tr");
  for (let i = 0; (await rows.count()) < 2; i++) {
    assert.ok(i < 50, "the resent attempt never showed");
    await page.waitForTimeout(300);
    await page.getByTestId("refresh-attempts").click();
  }
  assert.equal(await rows.count(), 2);
  assert.match(await rows.first().textContent(), /Succeeded.*200.*manual/s, "the newest attempt is the manual resend");
  await shot(page, "portal-message");

  // The endpoint's attempts and health.
  await go(page, `#/app/${APP_ID}/endpoints/${endpointId}?tab=attempts`);
  await page.getByTestId("attempts-table").waitFor();
  assert.equal(await page.getByTestId("attempts-table").locator("tbody tr").count(), 2);
  const firstRow = await page.getByTestId("attempts-table").locator("tbody tr").last().textContent();
  assert.match(firstRow, /Succeeded.*200.*ms.*scheduled/s, `status code, duration, trigger: ${firstRow}`);
  await shot(page, "portal-attempts");
  await go(page, `#/app/${APP_ID}/endpoints/${endpointId}?tab=health`);
  await page.getByTestId("health-chart").waitFor();
  assert.equal(await page.getByTestId("success-rate").textContent(), "100 %");
  assert.equal(await page.getByTestId("health-chart").locator("rect.bar.ok").count(), 2);
  await page.getByTestId("no-failures").waitFor();
  await shot(page, "portal-health");

  // The message log and its filters.
  await go(page, `#/app/${APP_ID}/messages`);
  await page.getByTestId("messages-table").waitFor();
  await assertLabelled(page, "the message filters");
  await page.getByLabel("Event type").selectOption("invoice.paid");
  await page.getByTestId("apply-filters").click();
  await page.getByTestId("no-messages").waitFor();
  await page.getByLabel("Event type").selectOption("");
  await page.getByLabel("Endpoint").selectOption(endpointId);
  await page.getByLabel("Status").selectOption("0");
  await page.getByTestId("apply-filters").click();
  await page.getByTestId("message-status").filter({ hasText: "Succeeded" }).waitFor();
  assert.equal(await page.getByTestId("message-link").count(), 1);
  await shot(page, "portal-messages");
  await page.getByLabel("Status").selectOption("2");
  await page.getByTestId("apply-filters").click();
  await page.getByTestId("no-messages").waitFor();
  await page.getByLabel("Status").selectOption("");
  await page.getByLabel("After").fill("2999-01-01T00:00");
  await page.getByTestId("apply-filters").click();
  await page.getByTestId("no-messages").waitFor();

  // Recover what failed to the flaky endpoint (its receiver answers now).
  await go(page, `#/app/${APP_ID}/endpoints/${FLAKY_EP}?tab=attempts`);
  await page.getByTestId("attempt-status").filter({ hasText: "Failed" }).first().waitFor();
  await page.getByTestId("recover").click();
  await page.getByTestId("recover-done").filter({ hasText: "finished" }).waitFor({ timeout: 25_000 });
  for (let i = 0; (await page.getByTestId("attempt-status").filter({ hasText: "Succeeded" }).count()) === 0; i++) {
    assert.ok(i < 50, "the recovered attempt never showed");
    await page.waitForTimeout(300);
    await page.getByTestId("refresh-attempts").click();
  }

  // Edit, custom headers, disable and enable.
  await go(page, `#/app/${APP_ID}/endpoints/${endpointId}/edit`);
  await page.getByLabel("Description").fill("Acme billing (edited)");
  await page.getByLabel("Timeout (seconds)").fill("7");
  await page.getByTestId("save-endpoint").click();
  await page.getByTestId("flash").filter({ hasText: "saved" }).waitFor();
  assert.match(await page.getByTestId("endpoint-settings").textContent(), /7 s/);
  await page.getByTestId("add-header").click();
  await page.getByTestId("header-name").last().fill("X-Tenant");
  await page.getByTestId("header-value").last().fill("acme");
  await page.getByTestId("save-headers").click();
  await page.getByTestId("headers-saved").waitFor();
  await page.getByTestId("toggle-endpoint").filter({ hasText: "Disable" }).click();
  await page.getByTestId("endpoint-state").filter({ hasText: "disabled" }).waitFor();
  await page.getByTestId("toggle-endpoint").filter({ hasText: "Enable" }).click();
  await page.getByTestId("endpoint-state").filter({ hasText: "enabled" }).waitFor();

  // The catalog.
  await page.getByTestId("nav-event-types").click();
  await page.getByTestId("event-type").filter({ hasText: "invoice.paid" }).filter({ hasText: "An invoice was paid" }).waitFor();
  await shot(page, "portal-event-types");

  // Delete the flaky endpoint.
  await go(page, `#/app/${APP_ID}/endpoints/${FLAKY_EP}`);
  await page.getByTestId("delete-endpoint").click();
  await page.getByTestId("delete-endpoint-confirm").click();
  await page.getByTestId("flash").filter({ hasText: "deleted" }).waitFor();
  assert.equal(await page.getByTestId("endpoint-row").count(), 1, "one endpoint left");

  await checkKeyboard(page, { appId: APP_ID, endpointId });
  await checkPhone(page, { appId: APP_ID, endpointId, msgId: testMsgId });
  await checkIsolation(browser, page, { base, appId: APP_ID });
  await checkReadOnly(browser, { endpointId });
  await checkFraming(browser);

  // Log out: the token is revoked (the Rust test checks it on the API).
  await go(page, `#/app/${APP_ID}/endpoints`);
  await page.getByTestId("logout").click();
  await page.getByTestId("login-error").filter({ hasText: "logged out" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("herald.portal.token")), null);

  assert.deepEqual(page.errors, [], "no script errors on the page");
  console.log("portal browser test: passed");
} finally {
  await browser.close();
}
