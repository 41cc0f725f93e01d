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
from chargepoint.model.features import FEATURES  # noqa: E402
from chargepoint.ocpp.timestamps import iso  # noqa: E402
from chargepoint.platform.clock import Clock  # noqa: E402
from chargepoint.platform.log import Log  # noqa: E402
from tools.fakes import (FakeBoard, FakeTicks, LoopbackTransport, MemoryStore,  # noqa: E402
                         ScriptedCentralSystem)

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


AUTHORIZED = ("04A1B2C3D4", "CAFE0001")  # the cards the tests' Central System accepts


def central_system(transport, ticks, **kw):
    """The tests' scripted Central System (tools.fakes.ScriptedCentralSystem): the cards of
    AUTHORIZED accepted, transaction ids from 101, its clock T0 at ticks 0, every CALL kept."""
    kw.setdefault("authorized", set(AUTHORIZED))
    kw.setdefault("first_transaction_id", 101)
    return ScriptedCentralSystem(transport, lambda: iso(T0 + ticks() // 1000), keep_calls=True,
                                 **kw)


class Rig:
    """A charge point on fake hardware, a loopback transport and a fake clock."""

    def __init__(self, connectors=1, files=None, lock=False, board=None, online=True,
                 services=None, features=FEATURES, transport=None, safe_mode=None):
        self.features = features
        self.safe_mode = safe_mode
        self.ticks = FakeTicks()
        # the platform's services by name, or a function of the boot's clock giving them
        self.services = {} if services is None else services
        self.board = board or FakeBoard(connectors, lock)
        self.transport = transport or LoopbackTransport()
        self.transport.connected = online
        self.files = {} if files is None else files
        self.cs = central_system(self.transport, self.ticks)
        self.frames = []  # every frame sent, parsed, in order
        self.inbound = {}  # uid -> action of CALLs we delivered
        self.reboots = []
        self.auto = True
        self.boot()

    def boot(self):
        self.store = MemoryStore(self.files)
        self.transport.sent.clear()
        self.transport.inbox.clear()
        clock = Clock(ticks_ms=self.ticks)
        services = self.services(clock) if callable(self.services) else self.services
        self.cp = ChargePoint(self.board, self.transport, self.store, clock,
                              reboot=self.reboots.append, services=services,
                              features=self.features, safe_mode=self.safe_mode)
        return self.cp

    def attach(self, **made):
        """Boot again with these services added, each made from the new boot's clock by
        made[name](clock) (the event log needs it); registered at once. Returns the services."""
        given = dict(self.services) if not callable(self.services) else {}

        def services(clock):
            for name, make in made.items():
                given[name] = make(clock)
            return given
        self.services = services
        self.boot()
        self.step()
        return given

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
        return self.cs.handle(self._sent, answering=self.auto) > 0

    def _sent(self, text):
        self.frames.append(validate_outgoing(text, self.inbound))

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


# -- the event log and an uploader, for GetDiagnostics and GetLog ------------------------------

class Uploader:
    """upload(url, path) as chargepoint.platform.http has it; fails `fails` times first."""

    def __init__(self):
        self.fails = 0
        self.error = OSError(111, "ECONNREFUSED")
        self.calls = []  # (url, body)
        self.log = None  # when set, `files` is what its files held at the last call
        self.files = None

    def __call__(self, url, path):
        with open(path, "rb") as f:
            self.calls.append((url, f.read()))
        if self.log is not None:
            self.files = [open(p, "rb").read() for p in self.log.paths()]
        if self.fails:
            self.fails -= 1
            raise self.error
        return 201


def attach(rig, folder, run_in_thread=lambda fn: fn(), max_bytes=16384):
    """The rig's charge point booted again with an event log in `folder` and a fake uploader."""
    up = Uploader()
    s = rig.attach(log=lambda clock: Log(str(folder), clock, max_bytes=max_bytes),
                   upload=lambda clock: up, run_in_thread=lambda clock: run_in_thread)
    return s["log"], up
