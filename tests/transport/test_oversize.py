"""Frames larger than the charge point takes, byte for byte: umqtt.simple 1.7.0 (the release the
ESP32 firmware freezes, run here on CPython) reads a scripted MQTT packet stream through our
link. A PUBLISH of any size is consumed in bounded memory and acknowledged, the stream stays in
step, the link stays up, and a CALL among such frames gets a CALLERROR naming the limit."""
import json
import os
import sys
import tracemalloc

import pytest

from chargepoint.model.chargepoint import ChargePoint
from chargepoint.ocpp.framing import MAX_FRAME
from chargepoint.platform.clock import Clock
from chargepoint.transport.mqtt import MqttTransport
from chargepoint.transport.tls import TlsLink
from conftest import central_system, validate_outgoing
from tools.fakes import FakeBoard, FakeTicks, MemoryStore

OUT = b"CP001/out"


@pytest.fixture(scope="module")
def umqtt():
    from tools import twin

    tree = twin.source()[0]
    path = os.path.join(tree, "lib", "micropython-lib", "micropython", "umqtt.simple")
    sys.path.insert(0, path)
    try:
        from umqtt import simple
        yield simple
    finally:
        sys.path.remove(path)


def _length(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


class Wire:
    """The broker's end of one MQTT 3.1.1 connection as a socket: what the client writes is
    parsed packet by packet and answered (CONNACK, SUBACK, PUBACK, PINGRESP); `deliver`
    queues a QoS 1 PUBLISH for the client. `ahead`: PUBLISHes that reach the client before
    the PUBACK of its next PUBLISH (they arrive during its PUBACK wait)."""

    def __init__(self):
        self.to_client = bytearray()
        self.at = 0  # bytes of it the client has read
        self.written = bytearray()
        self.pid = 0
        self.published = []  # payloads the client published
        self.acked = []  # packet ids the client acknowledged
        self.ahead = []
        self.closed = False

    # the socket umqtt and our link use
    def settimeout(self, t):
        pass

    def connect(self, addr):
        pass

    def pending(self):
        return len(self.to_client) - self.at

    def read(self, n):
        if not self.pending():
            return None
        data = bytes(self.to_client[self.at:self.at + n])
        self.at += len(data)
        return data

    def readinto(self, view):
        # by offset, never resizing: the test measures the client's allocations, not ours
        k = min(len(view), self.pending())
        if not k:
            return None
        with memoryview(self.to_client) as m:
            view[:k] = m[self.at:self.at + k]
        self.at += k
        return k

    def write(self, data, n=None):
        if isinstance(data, str):  # MicroPython streams take str (umqtt writes its client id)
            data = data.encode()
        data = bytes(data if n is None else data[:n])
        self.written += data
        self._parse()
        return len(data)

    def close(self):
        self.closed = True

    # the broker
    def deliver(self, payload, topic=OUT):
        self.pid += 1
        body = (len(topic).to_bytes(2, "big") + topic + self.pid.to_bytes(2, "big") + payload)
        return b"\x32" + _length(len(body)) + body

    def _parse(self):
        while len(self.written) >= 2:
            n = shift = 0
            i = 1
            while True:
                if i >= len(self.written):
                    return
                b = self.written[i]
                n |= (b & 0x7F) << shift
                shift += 7
                i += 1
                if not b & 0x80:
                    break
            if len(self.written) < i + n:
                return
            kind, body = self.written[0], bytes(self.written[i:i + n])
            del self.written[:i + n]
            if kind == 0x10:
                self.to_client += b"\x20\x02\x00\x00"  # CONNACK, no session
            elif kind == 0x82:
                self.to_client += b"\x90\x03" + body[:2] + b"\x01"
            elif kind & 0xF0 == 0x30:
                topic_len = int.from_bytes(body[:2], "big")
                self.published.append(body[4 + topic_len:])
                for payload in self.ahead:
                    self.to_client += self.deliver(payload)
                self.ahead = []
                self.to_client += b"\x40\x02" + body[2 + topic_len:4 + topic_len]
            elif kind == 0x40:
                self.acked.append(int.from_bytes(body, "big"))
            elif kind == 0xC0:
                self.to_client += b"\xd0\x00"


class Rig:
    def __init__(self, umqtt, monkeypatch):
        self.wire = Wire()
        self.ticks = FakeTicks()

        class Sockets:
            @staticmethod
            def socket():
                return self.wire

            @staticmethod
            def getaddrinfo(host, port):
                return [(2, 1, 0, "", (host, port))]
        monkeypatch.setattr(umqtt, "socket", Sockets)

        def factory(client_id, server, port, keepalive, ssl):
            return umqtt.MQTTClient(client_id, server, port=port, keepalive=keepalive, ssl=ssl)
        self.link = TlsLink(None)  # plain TCP: the same bounded reads as over TLS
        self.t = MqttTransport("CP001", "broker.example", ssl=self.link, ticks_ms=self.ticks,
                               client_factory=factory, rand=lambda n: 0)
        self.t.step()
        assert self.t.connected

    def drain(self):
        got = []
        while True:
            msg = self.t.receive()
            if msg is None:
                return got
            if not isinstance(msg[0], str):  # the inbox hands a frame over as bytes
                msg = (msg[0].decode(),) + tuple(msg[1:])
            got.append(msg)


def call(uid, action, payload):
    return json.dumps([2, uid, action, payload]).encode()


def big_call(uid, size):
    head = b'[2,"%s","DataTransfer",{"vendorId":"acme","data":"' % uid.encode()
    return head + b"x" * (size - len(head) - 3) + b'"}]'


@pytest.mark.parametrize("size", [MAX_FRAME + 1, 100 * 1024, 200 * 1024, 256 * 1024])
def test_a_publish_of_any_size_is_taken_in_bounded_memory_and_acknowledged(umqtt, monkeypatch,
                                                                            size):
    r = Rig(umqtt, monkeypatch)
    w = r.wire
    w.to_client += w.deliver(call("a", "Heartbeat", {}))
    w.to_client += w.deliver(big_call("big", size))
    w.to_client += w.deliver(call("b", "Heartbeat", {}))
    tracemalloc.start()
    try:
        r.t.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024, peak  # nothing of the frame's size (measured: about 2 KB)
    got = r.drain()
    assert got[0] == ('[2, "a", "Heartbeat", {}]', False)
    text, stale, whole = got[1]
    assert whole == size and not stale
    assert text.startswith('[2,"big","DataTransfer",') and len(text) <= 128
    assert got[2] == ('[2, "b", "Heartbeat", {}]', False)
    assert w.acked == [1, 2, 3]  # every PUBLISH acknowledged, the big one too: never redelivered
    assert not w.pending() and r.t.connected
    assert r.t.status["oversize"] == 1 and r.t.status["failures"] == 0
    assert r.t.status["connects"] == 1


def test_a_huge_publish_during_our_puback_wait_is_taken_and_both_acks_kept(umqtt, monkeypatch):
    r = Rig(umqtt, monkeypatch)
    w = r.wire
    w.ahead = [big_call("big", 200 * 1024), call("c", "Heartbeat", {})]
    assert r.t.send('[2,"1.1","Heartbeat",{}]')
    r.t.step()
    assert w.published == [b'[2,"1.1","Heartbeat",{}]']
    assert r.t.outbox.peek() is None  # our PUBACK was found behind the big frame
    got = r.drain()
    assert [g[2] for g in got if len(g) == 3] == [200 * 1024]
    assert got[-1] == ('[2, "c", "Heartbeat", {}]', False)
    assert w.acked == [1, 2] and r.t.connected and r.t.status["failures"] == 0


def test_a_huge_frame_that_is_not_utf8_is_dropped_and_counted(umqtt, monkeypatch):
    r = Rig(umqtt, monkeypatch)
    w = r.wire
    w.to_client += w.deliver(b"\xff\xfe" * 40000)
    w.to_client += w.deliver(call("d", "Heartbeat", {}))
    r.t.step()
    assert r.drain() == [('[2, "d", "Heartbeat", {}]', False)]
    assert r.t.status["dropped"] == 1 and r.t.status["oversize"] == 1 and w.acked == [1, 2]


def test_charge_point_answers_the_calls_around_a_huge_one_and_refuses_it_by_name(umqtt,
                                                                                monkeypatch):
    r = Rig(umqtt, monkeypatch)
    w = r.wire
    cp = ChargePoint(FakeBoard(), r.t, MemoryStore(), clock=Clock(ticks_ms=r.ticks))
    cs = central_system(None, r.ticks)
    seen = 0
    answers = {}

    def turn():
        nonlocal seen
        r.ticks.advance(25)
        r.t.step()
        cp.loop()
        for raw in w.published[seen:]:
            msg = validate_outgoing(raw.decode(), {"g1": "GetConfiguration",
                                                   "g2": "GetConfiguration"})
            if msg[0] == 2:
                w.to_client += w.deliver(cs.reply(*msg[1:]).encode())
            else:
                answers[msg[1]] = msg
        seen = len(w.published)

    for _ in range(60):
        turn()
    assert cp.registration == "Accepted"
    w.to_client += w.deliver(call("g1", "GetConfiguration", {"key": ["HeartbeatInterval"]}))
    w.to_client += w.deliver(big_call("huge", 100 * 1024))
    w.to_client += w.deliver(b'[3,"nobody",{"junk":"' + b"y" * 50000 + b'"}]')
    w.to_client += w.deliver(call("g2", "GetConfiguration", {"key": ["HeartbeatInterval"]}))
    for _ in range(20):
        turn()
    assert answers["g1"][0] == 3 and answers["g2"][0] == 3
    error = answers["huge"]
    assert error[2] == "FormationViolation"
    assert "%d" % MAX_FRAME in error[3] and error[4] == {"size": 100 * 1024, "limit": MAX_FRAME}
    assert "nobody" not in answers  # not a CALL: dropped by the transport, counted
    assert r.t.status["oversize"] == 2 and r.t.status["dropped"] == 1
    assert cp.engine.stats["oversize"] == 1
    assert r.t.status["connects"] == 1 and r.t.connected
