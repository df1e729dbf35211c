// Drives Herald with the official Svix JavaScript SDK (pinned in
// package.json), unchanged but for the server URL, through every method of
// every resource Herald serves, under Node's test runner. Deliveries are
// captured by a receiver in this process and checked with the SDK's own
// `Webhook.verify`, during a secret rotation's overlap too.
//
// HERALD_URL and HERALD_TOKEN name the server (started by the Rust test
// `sdk_js`); without them the suite skips, unless CI=true, where that fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Svix, Webhook } from "svix";

const server = process.env.HERALD_URL;
const token = process.env.HERALD_TOKEN;
const skip = !server || !token;
if (skip && process.env.CI === "true") {
  throw new Error("HERALD_URL and HERALD_TOKEN must be set under CI");
}

const captured = [];
let local;
async function startReceiver() {
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      captured.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(req.url.startsWith("/fail") ? 500 : 200, { "content-length": "0" });
      res.end();
    });
  });
  await new Promise((ok) => srv.listen(0, "127.0.0.1", ok));
  local = `http://127.0.0.1:${srv.address().port}`;
  return srv;
}

async function waitFor(pred, what, ms = 15000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const got = await pred();
    if (got) return got;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const delivered = (path, msgId) =>
  captured.filter((c) => c.path === path && c.headers["webhook-id"] === msgId);

async function rejects(promise, codes) {
  try {
    await promise;
  } catch (e) {
    assert.ok(codes.includes(e.code), `status ${e.code}, want one of ${codes}`);
    return;
  }
  assert.fail("the call succeeded");
}

test("every resource through the official JS SDK", { skip }, async (t) => {
  const receiver = await startReceiver();
  const svx = new Svix(token, { serverUrl: server });
  const hourAgo = new Date(Date.now() - 3600_000);

  let app, ep, msg, attempt;
  await t.test("application", async () => {
    app = await svx.application.create({ name: "JS app", uid: "js-app", metadata: { k: "v" } });
    assert.match(app.id, /^app_/);
    assert.equal((await svx.application.getOrCreate({ name: "JS app", uid: "js-app" })).id, app.id);
    assert.equal((await svx.application.get("js-app")).id, app.id);
    assert.equal((await svx.application.patch(app.id, { name: "Renamed" })).name, "Renamed");
    assert.equal((await svx.application.update("js-app", { name: "Put", uid: "js-app" })).name, "Put");
    const two = await svx.application.update("js-app-2", { name: "Second" });
    const page = await svx.application.list({ limit: 1 });
    assert.equal(page.data.length, 1);
    assert.equal(page.done, false);
    const rest = await svx.application.list({ limit: 1, iterator: page.iterator });
    assert.notEqual(rest.data[0].id, page.data[0].id);
    await svx.application.delete(two.id);
  });

  await t.test("event types", async () => {
    await svx.eventType.create({ name: "order.paid", description: "paid" });
    const examples = { 1: { type: "object", examples: [{ order: "o_example" }] } };
    await svx.eventType.update("order.voided", { description: "voided", schemas: examples });
    assert.equal((await svx.eventType.patch("order.voided", { deprecated: true })).deprecated, true);
    assert.ok((await svx.eventType.list()).data.some((e) => e.name === "order.paid"));
    assert.equal((await svx.eventType.get("order.paid")).deprecated, false);
    await svx.eventType.create({ name: "scratch.js", description: "x" });
    await svx.eventType.delete("scratch.js", { expunge: true });
    await rejects(svx.eventType.get("scratch.js"), [404]);
  });

  await t.test("endpoints, secrets and headers", async () => {
    ep = await svx.endpoint.create(app.id, { url: `${local}/ep`, uid: "js-ep", filterTypes: ["order.paid"] });
    assert.match(ep.id, /^ep_/);
    assert.equal((await svx.endpoint.get(app.id, "js-ep")).id, ep.id);
    assert.deepEqual((await svx.endpoint.list(app.id)).data.map((e) => e.id), [ep.id]);
    assert.equal((await svx.endpoint.patch(app.id, ep.id, { description: "p" })).description, "p");
    const put = await svx.endpoint.update(app.id, "js-ep", { url: `${local}/ep`, filterTypes: ["order.paid"] });
    assert.equal(put.id, ep.id);
    await svx.endpoint.updateHeaders(app.id, ep.id, { headers: { "X-A": "1", "X-B": "2" } });
    await svx.endpoint.patchHeaders(app.id, ep.id, { headers: { "X-C": "3" }, deleteHeaders: ["X-B"] });
    assert.deepEqual((await svx.endpoint.getHeaders(app.id, ep.id)).headers, { "x-a": "1", "x-c": "3" });
  });

  await t.test("messages and attempts", async () => {
    msg = await svx.message.create(app.id, { eventType: "order.paid", payload: { n: 1 }, eventId: "js-evt-1", tags: ["t"] });
    assert.equal((await svx.message.get(app.id, "js-evt-1")).id, msg.id);
    assert.deepEqual((await svx.message.list(app.id, { tag: "t" })).data.map((m) => m.id), [msg.id]);
    const [got] = await waitFor(() => delivered("/ep", msg.id).length && delivered("/ep", msg.id), "the delivery");
    const secret = (await svx.endpoint.getSecret(app.id, ep.id)).key;
    new Webhook(secret).verify(got.body, got.headers);
    // An empty list is truthy: wait for the attempt itself, which is
    // recorded just after the delivery arrives.
    const attempts = await waitFor(async () => {
      const { data } = await svx.messageAttempt.listByMsg(app.id, msg.id);
      return data.length > 0 && data;
    }, "attempts");
    attempt = attempts[0];
    assert.equal(attempt.responseStatusCode, 200);
    assert.deepEqual((await svx.messageAttempt.listByEndpoint(app.id, ep.id)).data.map((a) => a.id), [attempt.id]);
    assert.equal((await svx.messageAttempt.get(app.id, msg.id, attempt.id)).id, attempt.id);
    const sent = await svx.messageAttempt.listAttemptedMessages(app.id, ep.id);
    assert.deepEqual(sent.data.map((m) => [m.id, m.statusText]), [[msg.id, "success"]]);
    const dests = await svx.messageAttempt.listAttemptedDestinations(app.id, msg.id);
    assert.deepEqual(dests.data.map((d) => d.id), [ep.id]);
    const stats = await svx.endpoint.getStats(app.id, ep.id, { since: hourAgo });
    assert.equal(stats.success, 1);
    await svx.messageAttempt.resend(app.id, msg.id, ep.id);
    await waitFor(() => delivered("/ep", msg.id).length === 2, "the resend");
    await svx.messageAttempt.expungeContent(app.id, msg.id, attempt.id);
    assert.equal((await svx.messageAttempt.get(app.id, msg.id, attempt.id)).response, "");
  });

  await t.test("both secrets verify during a rotation", async () => {
    const old = (await svx.endpoint.getSecret(app.id, ep.id)).key;
    await svx.endpoint.rotateSecret(app.id, ep.id, {});
    const fresh = (await svx.endpoint.getSecret(app.id, ep.id)).key;
    assert.notEqual(fresh, old);
    const m = await svx.message.create(app.id, { eventType: "order.paid", payload: { n: 2 } });
    const [got] = await waitFor(() => delivered("/ep", m.id).length && delivered("/ep", m.id), "the rotated delivery");
    assert.equal(got.headers["webhook-signature"].split(" ").length, 2);
    new Webhook(fresh).verify(got.body, got.headers);
    new Webhook(old).verify(got.body, got.headers);
  });

  await t.test("send-example, recover, replay-missing, background tasks", async () => {
    const ex = await svx.endpoint.sendExample(app.id, ep.id, { eventType: "order.voided" });
    const [got] = await waitFor(() => delivered("/ep", ex.id).length && delivered("/ep", ex.id), "the example");
    assert.deepEqual(JSON.parse(got.body), { order: "o_example" });
    const late = await svx.endpoint.create(app.id, { url: `${local}/late`, filterTypes: ["order.paid"] });
    const replay = await svx.endpoint.replayMissing(app.id, late.id, { since: hourAgo });
    assert.equal(replay.task, "endpoint.replay");
    await waitFor(() => delivered("/late", msg.id).length, "the replayed message");
    const task = await svx.endpoint.recover(app.id, ep.id, { since: hourAgo });
    assert.equal(task.task, "endpoint.recover");
    const done = await waitFor(async () => {
      const t = await svx.backgroundTask.get(task.id);
      return t.status === "finished" && t;
    }, "recover to finish");
    assert.deepEqual(done.data, { messagesSent: 0 });
  });

  await t.test("message with an inline application; expunge", async () => {
    const m = await svx.message.create("js-inline", { eventType: "order.paid", payload: { x: 1 }, application: { name: "Inline" } });
    assert.equal((await svx.application.get("js-inline")).name, "Inline");
    await svx.message.expungeContent("js-inline", m.id);
    assert.deepEqual((await svx.message.get("js-inline", m.id, { withContent: true })).payload, { expired: true });
  });

  await t.test("app portal tokens are scoped, and log out", async () => {
    const access = await svx.authentication.appPortalAccess(app.id, {});
    const scoped = new Svix(access.token, { serverUrl: server });
    assert.equal((await scoped.application.get(app.id)).id, app.id);
    await rejects(scoped.application.list(), [403]);
    await rejects(scoped.application.get("js-inline"), [403, 404]);
    await scoped.authentication.logout();
    await rejects(scoped.application.get(app.id), [401]);
    const again = new Svix((await svx.authentication.appPortalAccess(app.id, {})).token, { serverUrl: server });
    await svx.authentication.expireAll(app.id, {});
    await rejects(again.application.get(app.id), [401]);
  });

  await t.test("errors and deletes", async () => {
    await rejects(svx.application.get("app_missing"), [404]);
    await rejects(svx.endpoint.create(app.id, { url: "not a url" }), [422]);
    await svx.endpoint.delete(app.id, ep.id);
    await svx.application.delete(app.id);
    await svx.application.delete("js-inline");
  });
  receiver.close();
});
