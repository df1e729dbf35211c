// What the portal and dashboard scripts share: a browser, pages that record
// script errors and API answers, and checks every screen must pass (no
// horizontal overflow, a label on every control).
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const STEP = 15_000;

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

/**
 * A page in a fresh context (its own sessionStorage). `page.errors` holds
 * script errors; `page.answers` every /api/v1 response as { method, path, status }.
 */
export async function newPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP);
  page.errors = [];
  page.answers = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith("/api/v1/")) page.answers.push({ method: r.request().method(), path: u.pathname, status: r.status() });
  });
  return page;
}

/** Tells the Rust test what the page saw. */
export function fact(obj) {
  console.log(`FACT ${JSON.stringify(obj)}`);
}

export async function shot(page, name) {
  const dir = process.env.SCREENSHOT_DIR;
  if (dir) await page.screenshot({ path: `${dir}/${name}.png`, fullPage: true });
}

/** Nothing on the page is wider than the window. */
export async function assertNoOverflow(page, what) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `${what}: the page is ${scroll}px wide in a ${client}px window`);
}

/** Every visible input, select and textarea has a label (or aria-label). */
export async function assertLabelled(page, what) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea")]
      .filter((el) => el.type !== "hidden" && el.offsetParent !== null)
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
      .map((el) => el.outerHTML.slice(0, 120)),
  );
  assert.deepEqual(unlabelled, [], `${what}: controls without a label`);
}

/** Waits for a route's screen to finish loading. */
export async function settled(page) {
  await page.waitForFunction(() => !document.querySelector("main .loading, [data-testid=screen] > .loading"));
}

/** Moves the page to a route of its hash router and waits for the screen. */
export async function go(page, route) {
  await page.evaluate((r) => {
    location.hash = r;
  }, route);
  await settled(page);
}

export function sessionToken(page, key) {
  return page.evaluate((k) => sessionStorage.getItem(k), key);
}
