"""The link to a Central System over a WebSocket (chargepoint.model.connection): the security
profile keys, a profile change and its fall-back (whitepaper A05), the AuthorizationKey."""
import pytest

from chargepoint.model.features import FEATURES
from chargepoint.model.connection import Connection, valid_key
from conftest import Rig
from tools.fakes import LoopbackTransport

KEY = "00112233445566778899AABBCCDDEEFF"


class LinkedTransport(LoopbackTransport):
    """The loopback transport with the WebSocket transport's controls."""

    def __init__(self):
        super().__init__()
        self.status = {"connects": 1, "failures": 0, "last_error": None}
        self.configured = []  # (url, ssl, password) in order
        self.reconnects = 0
        self.ping_s = None

    def configure(self, url=None, ssl=None, password=None, fallback=None):
        self.configured.append((url, ssl, password))

    def reconnect(self):
        self.reconnects += 1

    def set_ping_interval(self, seconds):
        self.ping_s = seconds


class Links:
    """app.py's "links": what each profile needs and how it connects."""

    def __init__(self, profile=1, key=KEY, ca=True, cert=False):
        self.profile, self.key, self.ping_interval = profile, key, 60
        self.ca, self.cert = ca, cert

    def ready(self, profile, key):
        if profile in (1, 2) and not key:
            return "no AuthorizationKey"
        if profile >= 2 and not self.ca:
            return "no Central System root certificate"
        if profile == 3 and not self.cert:
            return "no charge point certificate"
        return None

    def settings(self, profile, key):
        return ("wss" if profile >= 2 else "ws", "tls-%d" % profile if profile >= 2 else False,
                key.encode() if profile in (1, 2) else False, None)


def rig(links=None, files=None):
    r = Rig(services={"links": links or Links()}, features=FEATURES + (Connection,),
            files=files, transport=LinkedTransport())
    r.step()
    return r


def change(r, key, value):
    return r.send("ChangeConfiguration", {"key": key, "value": value})[2]["status"]


def test_the_transport_starts_with_the_profile_in_force():
    r = rig()
    assert r.transport.configured[-1] == ("ws", False, KEY.encode())
    assert r.transport.ping_s == 60


@pytest.mark.parametrize("value,status", [("1", "Rejected"), ("0", "Rejected"),
                                          ("4", "Rejected"), ("-1", "Rejected"),
                                          ("x", "Rejected")])
def test_a_profile_not_above_the_current_one_is_rejected(value, status):
    r = rig()
    assert change(r, "SecurityProfile", value) == status
    assert r.transport.reconnects == 0


def test_a_profile_without_what_it_needs_is_rejected():
    assert change(rig(Links(ca=False)), "SecurityProfile", "2") == "Rejected"
    assert change(rig(Links(profile=2)), "SecurityProfile", "3") == "Rejected"  # no cert
    assert change(rig(Links(profile=0, key="")), "SecurityProfile", "1") == "Rejected"


def test_an_upgrade_reconnects_and_is_kept_once_it_has_connected():
    files = {}
    r = rig(files=files)
    assert change(r, "SecurityProfile", "2") == "Accepted"
    assert r.transport.configured[-1] == ("wss", "tls-2", KEY.encode())
    assert r.transport.reconnects == 1
    conf = r.send("GetConfiguration", {"key": ["SecurityProfile"]})[2]
    assert conf["configurationKey"][0]["value"] == "1"  # not before it has connected
    r.transport.status["connects"] += 1
    r.step()
    conf = r.send("GetConfiguration", {"key": ["SecurityProfile"]})[2]
    assert conf["configurationKey"][0]["value"] == "2"
    r.power_cut()  # kept on flash
    r.step()
    assert r.cp.config.get("SecurityProfile") == 2


def test_an_upgrade_that_does_not_connect_in_time_falls_back_and_says_so():
    r = rig()
    change(r, "SecurityProfileFallbackSeconds", "30")
    assert change(r, "SecurityProfile", "2") == "Accepted"
    r.transport.connected = False  # the new profile does not get through
    r.step(29000)
    assert r.transport.reconnects == 1
    r.step(1000)
    assert r.transport.reconnects == 2
    assert r.transport.configured[-1] == ("ws", False, KEY.encode())  # back to profile 1
    assert r.cp.config.get("SecurityProfile") == 1
    r.transport.connected = True
    r.transport.status["connects"] += 1
    r.step()
    events = [(p["type"], p.get("techInfo")) for p in r.payloads("SecurityEventNotification")]
    assert ("SecurityProfileFallback", "profile 2 did not connect, 1 kept") in events
    assert change(r, "SecurityProfile", "2") == "Accepted"  # it may be tried again


def test_the_authorization_key_is_write_only_checked_and_reconnects():
    r = rig()
    conf = r.send("GetConfiguration", {})[2]
    assert "AuthorizationKey" not in [k["key"] for k in conf["configurationKey"]]
    assert r.send("GetConfiguration", {"key": ["AuthorizationKey"]})[2] == {
        "configurationKey": [], "unknownKey": ["AuthorizationKey"]}
    assert change(r, "AuthorizationKey", "short") == "Rejected"
    assert change(r, "AuthorizationKey", "zz" * 16) == "Rejected"  # 32 characters, not hex
    new = "FFEEDDCCBBAA99887766554433221100"
    assert change(r, "AuthorizationKey", new) == "Accepted"
    assert r.transport.configured[-1] == ("ws", False, new.encode())
    assert r.transport.reconnects == 1
    events = [(p["type"], p.get("techInfo")) for p in r.payloads("SecurityEventNotification")]
    assert ("ReconfigurationOfSecurityParameters", "ChangeConfiguration AuthorizationKey") in \
        events
    assert not [f for f in r.frames if new in str(f[2:])]  # only in the CALL it came with


def test_the_authorization_key_reaches_no_log(tmp_path):
    from conftest import attach

    r = rig()
    log, _ = attach(r, tmp_path)
    new = "FFEEDDCCBBAA99887766554433221100"
    change(r, "AuthorizationKey", new)
    log.flush()
    text = b"".join(open(p, "rb").read() for p in log.paths())
    assert b"AuthorizationKey" in text and new.encode() not in text


def test_ping_interval_follows_its_key_and_refuses_a_negative_one():
    r = rig()
    assert change(r, "WebSocketPingInterval", "-5") == "Rejected"
    assert change(r, "WebSocketPingInterval", "0") == "Accepted"
    assert r.transport.ping_s == 0


@pytest.mark.parametrize("key,ok", [(KEY, True), ("ab" * 20, True), ("ab" * 21, False),
                                    ("a" * 33, False), ("mysecretpassword", True),
                                    ("x" * 15, False), ("x" * 21, False)])
def test_valid_authorization_keys(key, ok):
    assert valid_key(key) is ok
