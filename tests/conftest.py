"""Shared test set-up: device code importable on CPython, and a rig that drives a charge point
against fakes while checking every frame it sends against the official OCPP 1.6 schemas."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tests", "shim"),
                os.path.join(ROOT, "tests"), ROOT]

import jsonschema  # noqa: E402
import ocpp.v16  # noqa: E402

from chargepoint.model.chargepoint import ChargePoint  # noqa: E402
from chargepoint.ocpp.timestamps import iso  # noqa: E402
from chargepoint.platform.clock import Clock  # noqa: E402
from fakes import FakeBoard, FakeTicks, LoopbackTransport, MemoryStore  # noqa: E402

@pytest.fixture(scope="session")
def twins():
    """The device twins (tools/twin.py), built before a test starts a simulator: a first
    build takes about a minute, longer than a simulator may take to come up."""
    from tools import twin
    return twin.ensure(), twin.ensure(stock=True)


try:  # fixtures of the broker stand-in, when present
    from broker_fixtures import *  # noqa: F401,F403,E402
except ImportError:
    pass

SCHEMAS = os.path.join(os.path.dirname(ocpp.v16.__file__), "schemas")
_schema_cache = {}

T0 = 1795262400  # 2026-11-21T12:00:00Z, the Central System's idea of "now" at t=0


def schema(name):
    if name not in _schema_cache:
        with open(os.path.join(SCHEMAS, name + ".json")) as f:
            _schema_cache[name] = json.load(f)
    return _schema_cache[name]


def validate_outgoing(frame, inbound_actions):
    """Check one frame the charge point sent against the official schemas."""
    msg = json.loads(frame)
    assert isinstance(msg, list) and msg[0] in (2, 3, 4), frame
    assert isinstance(msg[1], str) and 0 < len(msg[1]) <= 36, frame
    if msg[0] == 2:
        assert len(msg) == 4, frame
        jsonschema.validate(msg[3], schema(msg[2]))
        for key in ("timestamp",):
            if key in msg[3]:
                assert msg[3][key].startswith("20"), frame  # never 1970/2000 markers
    elif msg[0] == 3:
        assert len(msg) == 3, frame
        action = inbound_actions.get(msg[1])
        if action:
            jsonschema.validate(msg[2], schema(action + "Response"))
    else:
        assert len(msg) == 5 and isinstance(msg[2], str) and isinstance(msg[4], dict), frame
        assert msg[2] in ("NotImplemented", "NotSupported", "InternalError", "ProtocolError",
                          "SecurityError", "FormationViolation", "PropertyConstraintViolation",
                          "OccurenceConstraintViolation", "TypeConstraintViolation",
                          "GenericError"), frame
    return msg


class CentralSystem:
    """Scripted answers to the charge point's calls. Set `answers[action]` to a payload, a
    function of the request payload, a (code, description) tuple for a CALLERROR, or None to
    leave the call unanswered."""

    def __init__(self, rig):
        self.rig = rig
        self.authorized = {"04A1B2C3D4", "CAFE0001"}
        self.parents = {}  # idTag -> parentIdTag given in its idTagInfo
        self.next_tx = 100
        self.answers = {}
        self.calls = []  # (action, payload) in order received

    def answer(self, action, payload):
        if action in self.answers:
            a = self.answers[action]
            return a(payload) if callable(a) else a
        now = iso(T0 + self.rig.ticks.now // 1000)
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": now, "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action == "Authorize":
            return {"idTagInfo": self._info(payload["idTag"])}
        if action == "StartTransaction":
            self.next_tx += 1
            return {"transactionId": self.next_tx, "idTagInfo": self._info(payload["idTag"])}
        if action == "StopTransaction":
            return {"idTagInfo": {"status": "Accepted"}} if "idTag" in payload else {}
        if action == "DataTransfer":
            return {"status": "Accepted"}
        return {}

    def _info(self, tag):
        info = {"status": "Accepted" if tag in self.authorized else "Invalid"}
        if tag in self.parents:
            info["parentIdTag"] = self.parents[tag]
        return info


class Rig:
    """A charge point on fake hardware, a loopback transport and a fake clock."""

    def __init__(self, connectors=1, files=None, lock=False, board=None, online=True):
        self.ticks = FakeTicks()
        self.board = board or FakeBoard(connectors, lock)
        self.transport = LoopbackTransport()
        self.transport.connected = online
        self.files = {} if files is None else files
        self.cs = CentralSystem(self)
        self.frames = []  # every frame sent, parsed, in order
        self.inbound = {}  # uid -> action of CALLs we delivered
        self.reboots = []
        self.auto = True
        self.boot()

    def boot(self):
        self.store = MemoryStore(self.files)
        self.transport.sent.clear()
        self.transport.inbox.clear()
        self.cp = ChargePoint(self.board, self.transport, self.store,
                              clock=Clock(ticks_ms=self.ticks), reboot=self.reboots.append)
        return self.cp

    def power_cut(self):
        """Everything in RAM is lost; the flash (files) and the meter's register stay."""
        for hw in self.board.connectors:
            hw.relay.closed = False
            hw.pilot.amps = None
        return self.boot()

    def step(self, ms=0, loops=20):
        if ms:
            self.ticks.advance(ms)
        quiet = 0
        for _ in range(loops):
            self.cp.loop()
            quiet = 0 if self._drain() else quiet + 1
            if quiet == 2:
                break

    def run(self, seconds, tick_ms=1000):
        for _ in range(int(seconds * 1000 // tick_ms)):
            self.step(tick_ms)

    def _drain(self):
        out = self.transport.sent
        if not out:
            return False
        while out:
            text = out.pop(0)
            msg = validate_outgoing(text, self.inbound)
            self.frames.append(msg)
            if msg[0] == 2:
                self.cs.calls.append((msg[2], msg[3]))
                if self.auto:
                    payload = self.cs.answer(msg[2], msg[3])
                    if isinstance(payload, tuple):  # (code, description): a CALLERROR
                        self.transport.deliver(json.dumps([4, msg[1], payload[0],
                                                           payload[1], {}]))
                    elif payload is not None:
                        self.transport.deliver(json.dumps([3, msg[1], payload]))
        return True

    def send(self, action, payload, uid=None, stale=False):
        """The Central System sends a CALL; returns the charge point's answer frame."""
        uid = uid or "cs-%d" % (len(self.inbound) + 1)
        self.inbound[uid] = action
        self.transport.deliver(json.dumps([2, uid, action, payload]), stale)
        n = len(self.frames)
        self.step()
        for msg in self.frames[n:]:
            if msg[0] in (3, 4) and msg[1] == uid:
                return msg
        raise AssertionError("no answer to %s" % uid)

    def calls(self, action=None):
        return [(a, p) for a, p in self.cs.calls if action is None or a == action]

    def payloads(self, action):
        return [p for a, p in self.cs.calls if a == action]

    def statuses(self, cid=1):
        return [p["status"] for a, p in self.cs.calls
                if a == "StatusNotification" and p["connectorId"] == cid]

    def conn(self, cid=1):
        return self.cp.connectors[cid - 1]

    def hw(self, cid=1):
        return self.board.connectors[cid - 1]

    def ev(self, state, cid=1):
        self.hw(cid).pilot.ev = state
        self.step()

    def tap(self, uid):
        self.board.rfid.present(uid)
        self.step()


@pytest.fixture
def rig():
    r = Rig()
    r.step()
    return r
