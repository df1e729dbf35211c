"""Drives Herald with the official Svix Python SDK, unchanged but for the
server URL. Exits non-zero (with the failing step) if any call fails or
returns something the SDK's models reject.

usage: svix_python.py SERVER_URL TOKEN RECEIVER_URL
"""
import sys
import time

from svix import Svix, SvixOptions
from svix.api import (
    ApplicationIn,
    ApplicationPatch,
    EndpointIn,
    EndpointPatch,
    EventTypeIn,
    MessageIn,
)
from svix.exceptions import HttpError, HTTPValidationError

server, token, receiver = sys.argv[1:4]
svx = Svix(token, SvixOptions(server_url=server))


def step(name):
    print("step:", name, flush=True)


step("application.create / get_or_create / get / patch / list")
app = svx.application.create(ApplicationIn(name="SDK app", uid="sdk-app", metadata={"k": "v"}))
assert app.id.startswith("app_") and app.uid == "sdk-app" and app.metadata == {"k": "v"}, app
again = svx.application.get_or_create(ApplicationIn(name="SDK app", uid="sdk-app"))
assert again.id == app.id
assert svx.application.get("sdk-app").id == app.id
patched = svx.application.patch(app.id, ApplicationPatch(name="Renamed"))
assert patched.name == "Renamed" and patched.uid == "sdk-app"
apps = svx.application.list()
assert any(a.id == app.id for a in apps.data) and apps.done is True

step("event_type.create / list / get")
svx.event_type.create(EventTypeIn(name="invoice.paid", description="An invoice was paid"))
assert any(e.name == "invoice.paid" for e in svx.event_type.list().data)
assert svx.event_type.get("invoice.paid").deprecated is False

step("endpoint.create / get / list / patch / get_secret")
ep = svx.endpoint.create(app.id, EndpointIn(url=receiver + "/sdk", uid="sdk-ep", event_types=["invoice.paid"]))
assert ep.id.startswith("ep_") and ep.description == "" and ep.event_types == ["invoice.paid"], ep
assert svx.endpoint.get(app.id, "sdk-ep").id == ep.id
assert [e.id for e in svx.endpoint.list(app.id).data] == [ep.id]
assert svx.endpoint.patch(app.id, ep.id, EndpointPatch(description="patched")).description == "patched"
secret = svx.endpoint.get_secret(app.id, ep.id).key
assert secret.startswith("whsec_"), secret

step("message.create / get / list (with_content=false by default)")
msg = svx.message.create(app.id, MessageIn(event_type="invoice.paid", payload={"amount": 42}, event_id="evt-sdk-1"))
assert msg.id.startswith("msg_") and msg.payload == {} and msg.event_id == "evt-sdk-1", msg
assert svx.message.get(app.id, "evt-sdk-1").id == msg.id
assert [m.id for m in svx.message.list(app.id).data] == [msg.id]

step("message_attempt.list_by_msg / list_by_endpoint")
deadline = time.time() + 15
attempts = []
while time.time() < deadline:
    attempts = svx.message_attempt.list_by_msg(app.id, msg.id).data
    if attempts:
        break
    time.sleep(0.1)
assert attempts and attempts[0].status == 0 and attempts[0].response_status_code == 200, attempts
by_ep = svx.message_attempt.list_by_endpoint(app.id, ep.id).data
assert [a.id for a in by_ep] == [attempts[0].id]

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

step("endpoint.delete / application.delete")
svx.endpoint.delete(app.id, ep.id)
svx.application.delete(app.id)
print("all SDK calls succeeded")
