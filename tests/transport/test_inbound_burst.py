"""A burst from the Central System through the real transport and engine (fake broker, fake
clock): every well-framed CALL is answered, none twice-executed, nothing acknowledged is lost."""
import json

from chargepoint.model.chargepoint import ChargePoint
from chargepoint.platform.clock import Clock
from chargepoint.transport.mqtt import MqttTransport
from chargepoint.transport.tls import TlsLink
from conftest import central_system, validate_outgoing
from tools.fakes import FakeBoard, FakeNet, FakeTicks, MemoryStore

OUT = b"CP001/out"


class Rig:
    def __init__(self):
        self.ticks = FakeTicks()
        self.net = FakeNet(self.ticks)
        self.t = MqttTransport("CP001", "broker.example", ssl=TlsLink(None), ticks_ms=self.ticks,
                               client_factory=self.net.factory, rand=lambda n: 0)
        self.board = FakeBoard()
        self.cp = ChargePoint(self.board, self.t, MemoryStore(), clock=Clock(ticks_ms=self.ticks))
        self.cs = central_system(None, self.ticks)
        self.seen = 0
        self.answers = {}  # uid -> [answer frames], for the Central System's CALLs
        self.inbound = {}  # uid -> action
        self.inbox_peak = 0

    def turn(self, ms=5):
        self.ticks.advance(ms)
        self.t.step()
        self.inbox_peak = max(self.inbox_peak, len(self.t.inbox))
        self.cp.loop()
        for _, raw, _ in self.net.published[self.seen:]:
            msg = validate_outgoing(raw.decode(), self.inbound)
            if msg[0] == 2:  # the charge point's own CALL: answer it
                self.net.pending.append((OUT, self.cs.reply(*msg[1:]).encode()))
            else:
                self.answers.setdefault(msg[1], []).append(msg)
        self.seen = len(self.net.published)


def call(uid, action, payload):
    return json.dumps([2, uid, action, payload]).encode()


def test_burst_of_frames_during_a_puback_wait_answers_every_call_once():
    r = Rig()
    for _ in range(100):
        r.turn()
    assert r.cp.registration == "Accepted"
    calls = [
        ("b1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}),
        ("b2", "GetConfiguration", {"key": ["HeartbeatInterval"]}),
        ("b3", "RemoteStartTransaction", {"idTag": "CAFE0001", "connectorId": 1}),
        ("b4", "DataTransfer", {"vendorId": "nobody"}),
        ("b5", "NoSuchAction", {}),
        ("b6", "ChangeAvailability", {"connectorId": 1}),  # a required field missing
        ("b7", "GetConfiguration", {}),  # every key: a long answer
        ("b8", "ClearCache", {}),
    ]
    garbage = [b"{", b"\xff\xfe", b"", b'[2, 7, "Heartbeat", {}]', b'"text"', b"{}",
               b"[5,\"x\"]", b"[3,\"nobody-asked\",{}]", b"[" * 3000]
    burst = []
    for i in range(6):
        for uid, action, payload in calls:
            uid = "%s-%d" % (uid, i)
            r.inbound[uid] = action
            burst.append(call(uid, action, payload))
        burst.append(garbage[i % len(garbage)])
        burst.append(garbage[(i + 6) % len(garbage)])  # each kind, some twice
    burst[20:20] = [burst[2], burst[2]]  # the RemoteStart again, twice: not executed again
    burst.append(burst[9])
    assert len(burst) >= 50
    r.cp.send_heartbeat()
    r.cp.loop()  # our Heartbeat is in the outbox: the whole burst arrives in its PUBACK wait
    r.net.pending += [(OUT, f) for f in burst]
    r.net.ahead = len(burst)
    for _ in range(2000):
        r.turn()
        if len(r.answers) == len(r.inbound) and not r.net.pending and not r.net.unacked:
            break
    assert r.t.status["refused"] > 0  # the inbox was full on the way: refused, not dropped
    assert set(r.answers) == set(r.inbound)
    for uid, answers in r.answers.items():
        assert all(a == answers[0] for a in answers), uid  # a duplicate: the same answer
    started = [a[0][2] for u, a in r.answers.items() if u.startswith("b3-")]
    assert started == [{"status": "Accepted"}] + [{"status": "Rejected"}] * 5
    assert len(r.answers["b3-0"]) == 3
    assert r.answers["b5-0"][0][2] == "NotImplemented"
    assert r.answers["b6-0"][0][0] == 4
    assert r.t.status["dropped"] == 2  # the non-UTF-8 frames, acknowledged and ignored
    assert r.inbox_peak <= r.t.inbox.limit and r.t.inbox.bytes == 0
    assert r.cp.connectors[0].auth[0] == "CAFE0001"
