// Drives herald listen's page in headless Chromium (Debian's, through
// playwright-core): a request sent while the page is open appears without
// a reload, its details show, the filter hides and shows it, and replay
// re-sends it to the target. Run by the herald integration test
// `browser::the_listen_page_*`, which starts the listener and the target
// and then checks what the target received.
//
// Env: LISTEN_URL (the listener), CHROMIUM (the browser binary),
// SCREENSHOT (where to save a PNG of the page, optional).
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.env.LISTEN_URL;
assert.ok(base, "LISTEN_URL is required");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${base}/_herald/`);
  await page.getByTestId("live").filter({ hasText: /^live$/ }).waitFor({ timeout: 10_000 });
  const items = page.getByTestId("requests").locator("li");
  const before = await items.count();
  assert.equal(before, 1, "the request sent before the page opened is listed");

  // Sent now, while the page is open: it must appear on its own.
  const body = JSON.stringify({ type: "invoice.paid", data: { id: "inv_42", amount: 4200 } });
  const sent = await fetch(`${base}/webhooks/billing?attempt=1`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-from-browser-test": "yes" },
    body,
  });
  assert.equal(sent.status, 200);
  await items.nth(1).waitFor({ timeout: 10_000 });
  const newest = items.first();
  assert.match(await newest.textContent(), /POST\s*\/webhooks\/billing\?attempt=1/);
  assert.match(await newest.textContent(), /unverified/, "no signature: not verified");
  assert.match(await newest.textContent(), /→ 200/, "forwarded, the target answered 200");

  await newest.click();
  await page.getByTestId("detail-title").filter({ hasText: "/webhooks/billing" }).waitFor();
  const detailBody = await page.getByTestId("detail-body").textContent();
  assert.equal(detailBody, JSON.stringify(JSON.parse(body), null, 2), "the body is pretty-printed");
  assert.match(await page.getByTestId("detail-headers").textContent(), /x-from-browser-test\s*yes/);
  assert.match(await page.getByTestId("detail-verify").textContent(), /unverified: the webhook-id header is missing/);
  assert.match(await page.getByTestId("detail-forward").textContent(), /→ 200 in \d+ ms/);

  // The filter narrows the list and clearing it brings everything back.
  await page.getByTestId("filter").fill("inv_42");
  await page.waitForFunction(() => document.querySelectorAll("#requests li").length === 1);
  await page.getByTestId("filter").fill("no-such-thing");
  await page.waitForFunction(() => document.querySelectorAll("#requests li").length === 0);
  await page.getByTestId("filter").fill("");
  await page.waitForFunction(() => document.querySelectorAll("#requests li").length === 2);

  // Replay: re-sent to the target; the page shows the new answer.
  await page.getByTestId("replay").click();
  await page.getByTestId("message").filter({ hasText: "Replayed: the target answered 200" }).waitFor({ timeout: 10_000 });
  await page.getByTestId("detail-forward").filter({ hasText: "replayed 1×" }).waitFor();

  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
  assert.deepEqual(pageErrors, [], "no script errors on the page");
  console.log("browser test: 1 passed, 0 failed");
} finally {
  await browser.close();
}
