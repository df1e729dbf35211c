"""Drives Herald with the official Svix Python SDK, unchanged but for the
server URL, through every method of every resource Herald serves. Exits
non-zero (with the failing step) if any call fails or returns something the
SDK's models reject. Deliveries are captured by a receiver in this process
and checked with the SDK's own `Webhook.verify`, during a secret rotation's
overlap too (both secrets verify).

usage: svix_python.py SERVER_URL TOKEN RECEIVER_URL
"""
import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix import Svix, SvixOptions
from svix.api import (
    AppPortalAccessIn,
    ApplicationIn,
    ApplicationPatch,
    ApplicationTokenExpireIn,
    EndpointHeadersIn,
    EndpointHeadersPatchIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    EndpointUpsertIn,
    EventExampleIn,
    EventTypeIn,
    EventTypePatch,
    EventTypeUpsertIn,
    MessageIn,
    RecoverIn,
    ReplayIn,
)
from svix.api.application import ApplicationListOptions
from svix.api.endpoint import EndpointGetStatsOptions, EndpointListOptions
from svix.api.event_type import EventTypeDeleteOptions
from svix.api.message import MessageCreateOptions, MessageGetOptions, MessageListOptions
from svix.api.message_attempt import (
    MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByMsgOptions,
)
from svix.exceptions import HttpError, HTTPValidationError
from svix.webhooks import Webhook, WebhookVerificationError

server, token, receiver = sys.argv[1:4]
svx = Svix(token, SvixOptions(server_url=server))


def step(name):
    print("step:", name, flush=True)


# ---- a receiver that keeps every request, to verify signatures ----
captured = []
captured_lock = threading.Condition()


class Capture(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with captured_lock:
            captured.append((self.path, dict(self.headers.items()), body))
            captured_lock.notify_all()
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


capture = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
threading.Thread(target=capture.serve_forever, daemon=True).start()
local = "http://127.0.0.1:%d" % capture.server_address[1]


def wait_for(pred, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def deliveries(path, msg_id=None):
    with captured_lock:
        return [
            c for c in captured
            if c[0] == path and (msg_id is None or c[1].get("webhook-id") == msg_id)
        ]


step("application.create / get_or_create / get / upsert / patch / list")
app = svx.application.create(ApplicationIn(name="SDK app", uid="sdk-app", metadata={"k": "v"}))
assert app.id.startswith("app_") and app.uid == "sdk-app" and app.metadata == {"k": "v"}, app
again = svx.application.get_or_create(ApplicationIn(name="SDK app", uid="sdk-app"))
assert again.id == app.id
assert svx.application.get("sdk-app").id == app.id
patched = svx.application.patch(app.id, ApplicationPatch(name="Renamed"))
assert patched.name == "Renamed" and patched.uid == "sdk-app"
upserted = svx.application.upsert("sdk-app", ApplicationIn(name="Upserted", uid="sdk-app"))
assert upserted.id == app.id and upserted.name == "Upserted", upserted
created = svx.application.upsert("sdk-app-2", ApplicationIn(name="Second"))
assert created.uid == "sdk-app-2" and created.id != app.id, created
page = svx.application.list(ApplicationListOptions(limit=1))
assert len(page.data) == 1 and page.done is False and page.iterator, page
rest = svx.application.list(ApplicationListOptions(limit=1, iterator=page.iterator))
assert len(rest.data) == 1 and rest.data[0].id != page.data[0].id and rest.done is True, rest
svx.application.delete("sdk-app-2")

step("event_type.create / list / get / upsert / patch / delete")
svx.event_type.create(EventTypeIn(name="invoice.paid", description="An invoice was paid"))
svx.event_type.create(EventTypeIn(name="job.done", description="A job finished"))
assert any(e.name == "invoice.paid" for e in svx.event_type.list().data)
assert svx.event_type.get("invoice.paid").deprecated is False
example = {"1": {"type": "object", "examples": [{"invoice": "inv_example"}]}}
up = svx.event_type.upsert("invoice.voided", EventTypeUpsertIn(description="voided", schemas=example))
assert up.name == "invoice.voided", up
assert svx.event_type.patch("invoice.voided", EventTypePatch(deprecated=True)).deprecated is True
svx.event_type.create(EventTypeIn(name="scratch.type", description="to delete"))
svx.event_type.delete("scratch.type", EventTypeDeleteOptions(expunge=True))
try:
    svx.event_type.get("scratch.type")
    raise AssertionError("an expunged event type is still there")
except HttpError as e:
    assert e.status_code == 404, e

step("endpoint.create / get / list / upsert / patch / get_secret")
ep = svx.endpoint.create(app.id, EndpointIn(url=receiver + "/sdk", uid="sdk-ep", event_types=["invoice.paid"]))
assert ep.id.startswith("ep_") and ep.description == "" and ep.event_types == ["invoice.paid"], ep
assert svx.endpoint.get(app.id, "sdk-ep").id == ep.id
assert [e.id for e in svx.endpoint.list(app.id).data] == [ep.id]
assert svx.endpoint.patch(app.id, ep.id, EndpointPatch(description="patched")).description == "patched"
same = svx.endpoint.upsert(app.id, "sdk-ep", EndpointUpsertIn(url=receiver + "/sdk", description="put", event_types=["invoice.paid"]))
assert same.id == ep.id and same.description == "put", same
secret = svx.endpoint.get_secret(app.id, ep.id).key
assert secret.startswith("whsec_"), secret

step("endpoint headers: set / patch / get")
svx.endpoint.set_headers(app.id, ep.id, EndpointHeadersIn(headers={"X-Team": "billing", "X-Drop": "1"}))
svx.endpoint.patch_headers(app.id, ep.id, EndpointHeadersPatchIn(headers={"X-Extra": "yes"}, delete_headers=["X-Drop"]))
hdrs = svx.endpoint.get_headers(app.id, ep.id)
assert hdrs.headers == {"x-team": "billing", "x-extra": "yes"} and hdrs.sensitive == [], hdrs

step("message.create / get / list (with_content=false by default)")
msg = svx.message.create(app.id, MessageIn(event_type="invoice.paid", payload={"amount": 42}, event_id="evt-sdk-1", tags=["t1"]))
assert msg.id.startswith("msg_") and msg.payload == {} and msg.event_id == "evt-sdk-1", msg
assert svx.message.get(app.id, "evt-sdk-1").id == msg.id
assert [m.id for m in svx.message.list(app.id).data] == [msg.id]
assert [m.id for m in svx.message.list(app.id, MessageListOptions(tag="t1", event_types=["invoice.paid"])).data] == [msg.id]
assert svx.message.list(app.id, MessageListOptions(tag="other")).data == []

step("message_attempt.list_by_msg / list_by_endpoint / get / attempted lists")
attempts = wait_for(lambda: svx.message_attempt.list_by_msg(app.id, msg.id).data, "the first attempt")
assert attempts[0].status == 0 and attempts[0].response_status_code == 200, attempts
by_ep = svx.message_attempt.list_by_endpoint(app.id, ep.id).data
assert [a.id for a in by_ep] == [attempts[0].id]
one = svx.message_attempt.get(app.id, msg.id, attempts[0].id)
assert one.id == attempts[0].id and one.msg_id == msg.id, one
sent = svx.message_attempt.list_attempted_messages(app.id, ep.id)
assert [(m.id, m.status_text) for m in sent.data] == [(msg.id, "success")], sent
assert svx.message_attempt.list_attempted_messages(app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(status=2)).data == []
dests = svx.message_attempt.list_attempted_destinations(app.id, msg.id)
assert [(d.id, d.status_text) for d in dests.data] == [(ep.id, "success")], dests
stats = svx.endpoint.get_stats(app.id, ep.id)
assert (stats.success, stats.pending, stats.sending, stats.fail) == (1, 0, 0, 0), stats
since = datetime.now(timezone.utc) - timedelta(days=1)
assert svx.endpoint.get_stats(app.id, ep.id, EndpointGetStatsOptions(since=since)).success == 1

step("message_attempt.resend (202 {}) / expunge_content")
svx.message_attempt.resend(app.id, msg.id, ep.id)
wait_for(lambda: len(svx.message_attempt.list_by_msg(app.id, msg.id).data) == 2, "the resent attempt")
triggers = sorted(int(a.trigger_type) for a in svx.message_attempt.list_by_msg(app.id, msg.id).data)
assert triggers == [0, 1], f"the first attempt is scheduled (0), the resent one manual (1): {triggers}"
svx.message_attempt.expunge_content(app.id, msg.id, attempts[0].id)
assert svx.message_attempt.get(app.id, msg.id, attempts[0].id).response == ""

step("signatures verify with Webhook.verify, and both secrets verify during a rotation")
sig = svx.endpoint.create(app.id, EndpointIn(url=local + "/sig", event_types=["invoice.paid"]))
old = svx.endpoint.get_secret(app.id, sig.id).key
m1 = svx.message.create(app.id, MessageIn(event_type="invoice.paid", payload={"n": 1}))
path, headers, body = wait_for(lambda: deliveries("/sig", m1.id), "the first signed delivery")[0]
Webhook(old).verify(body, headers)
assert json.loads(body) == {"n": 1}
new = svx.endpoint.rotate_secret(app.id, sig.id, EndpointSecretRotateIn()).key
assert new.startswith("whsec_") and new != old, new
assert svx.endpoint.get_secret(app.id, sig.id).key == new
m2 = svx.message.create(app.id, MessageIn(event_type="invoice.paid", payload={"n": 2}))
path, headers, body = wait_for(lambda: deliveries("/sig", m2.id), "the delivery after the rotation")[0]
assert len(headers["webhook-signature"].split(" ")) == 2, headers["webhook-signature"]
Webhook(new).verify(body, headers)
Webhook(old).verify(body, headers)
# A rotation with no grace period: only the newest and the first (still in
# its 24 h overlap) sign; the one it replaced does not.
newest = svx.endpoint.rotate_secret(app.id, sig.id, EndpointSecretRotateIn(grace_period_seconds=0)).key
m3 = svx.message.create(app.id, MessageIn(event_type="invoice.paid", payload={"n": 3}))
path, headers, body = wait_for(lambda: deliveries("/sig", m3.id), "the delivery after the second rotation")[0]
Webhook(newest).verify(body, headers)
Webhook(old).verify(body, headers)
try:
    Webhook(new).verify(body, headers)
    raise AssertionError("a secret rotated out with no grace period still signs")
except WebhookVerificationError:
    pass

step("endpoint.send_example")
ex = svx.endpoint.send_example(app.id, sig.id, EventExampleIn(event_type="invoice.voided"))
path, headers, body = wait_for(lambda: deliveries("/sig", ex.id), "the example")[0]
assert json.loads(body) == {"invoice": "inv_example"}, body
Webhook(newest).verify(body, headers)

step("endpoint.recover / replay_missing as background tasks")
failing = svx.endpoint.create(app.id, EndpointIn(url=local + "/fail", event_types=["job.done"]))
fm = svx.message.create(app.id, MessageIn(event_type="job.done", payload={"job": 1}))
# The server runs with HERALD_TIME_SCALE, so the whole schedule runs out in seconds.
wait_for(
    lambda: [m for m in svx.message_attempt.list_attempted_messages(app.id, failing.id).data if m.status_text == "fail"],
    "the delivery to fail for good",
)
assert svx.endpoint.get_stats(app.id, failing.id).fail == 1
svx.endpoint.patch(app.id, failing.id, EndpointPatch(url=local + "/recovered"))
task = svx.endpoint.recover(app.id, failing.id, RecoverIn(since=datetime.now(timezone.utc) - timedelta(hours=1)))
assert task.id.startswith("qtask_") and task.task == "endpoint.recover", task
path, headers, body = wait_for(lambda: deliveries("/recovered", fm.id), "the recovered message")[0]
assert json.loads(body) == {"job": 1}
done = wait_for(lambda: (lambda t: t if t.status == "finished" else None)(svx.background_task.get(task.id)), "recover to finish")
assert done.data == {"messagesSent": 1}, done
wait_for(lambda: svx.endpoint.get_stats(app.id, failing.id).success == 1, "the stats to count the recovered delivery")
late = svx.endpoint.create(app.id, EndpointIn(url=local + "/late", event_types=["job.done"]))
replay = svx.endpoint.replay_missing(app.id, late.id, ReplayIn(since=datetime.now(timezone.utc) - timedelta(hours=1)))
assert replay.task == "endpoint.replay", replay
path, headers, body = wait_for(lambda: deliveries("/late", fm.id), "the replayed message")[0]
Webhook(svx.endpoint.get_secret(app.id, late.id).key).verify(body, headers)
done = wait_for(lambda: (lambda t: t if t.status == "finished" else None)(svx.background_task.get(replay.id)), "replay to finish")
assert done.data == {"messagesSent": 1}, done

step("message.create with application (created on the fly) / expunge_content")
inline = svx.message.create("sdk-inline", MessageIn(event_type="invoice.paid", payload={"x": 1}, application=ApplicationIn(name="Inline")), MessageCreateOptions(with_content=True))
assert inline.payload == {"x": 1}, inline
assert svx.application.get("sdk-inline").name == "Inline"
svx.message.expunge_content("sdk-inline", inline.id)
assert svx.message.get("sdk-inline", inline.id, MessageGetOptions(with_content=True)).payload == {"expired": True}

step("authentication.app_portal_access / logout / expire_all, and the token's scope")
access = svx.authentication.app_portal_access(app.id, AppPortalAccessIn())
assert access.url.startswith("http") and access.token, access
scoped = Svix(access.token, SvixOptions(server_url=server))
assert scoped.application.get(app.id).id == app.id
assert [e.id for e in scoped.endpoint.list(app.id).data]
try:
    scoped.application.list()
    raise AssertionError("an app token listed every application")
except HttpError as e:
    assert e.status_code == 403, e
try:
    scoped.application.get("sdk-inline")
    raise AssertionError("an app token read another application")
except HttpError as e:
    assert e.status_code in (403, 404), e
scoped.authentication.logout()
try:
    scoped.application.get(app.id)
    raise AssertionError("a logged-out token still works")
except HttpError as e:
    assert e.status_code == 401, e
second = Svix(svx.authentication.app_portal_access(app.id, AppPortalAccessIn()).token, SvixOptions(server_url=server))
assert second.application.get(app.id).id == app.id
svx.authentication.expire_all(app.id, ApplicationTokenExpireIn())
try:
    second.application.get(app.id)
    raise AssertionError("an expired token still works")
except HttpError as e:
    assert e.status_code == 401, e

step("errors map to the SDK's exceptions")
try:
    svx.application.get("app_missing")
    raise AssertionError("no error for a missing application")
except HttpError as e:
    assert e.status_code == 404, e
try:
    svx.endpoint.create(app.id, EndpointIn(url="not a url"))
    raise AssertionError("no error for a bad URL")
except HTTPValidationError:
    pass
try:
    svx.endpoint.list(app.id, EndpointListOptions(iterator="garbage"))
    raise AssertionError("no error for a garbage iterator")
except HTTPValidationError:
    pass

step("endpoint.delete / application.delete")
svx.endpoint.delete(app.id, ep.id)
svx.application.delete(app.id)
svx.application.delete("sdk-inline")
capture.shutdown()
print("all SDK calls succeeded")
