"""Fake clock, store, transport, Central System, MQTT broker and hardware: the one place the
tests and the bench (tools/bench) get their stand-ins.

Plain Python that also runs under MicroPython, so the same fakes back the scenarios that run
on the `micropython` binary: compiled to .mpy, imported as `fakes` by the twin scenarios of
tests/mpy and as `tools.fakes` by the bench's workloads and under CPython.
"""
import errno
import json


PUBLISH_QOS1 = 0x32


class FakeTicks:
    """A monotonic millisecond counter that only moves when the test says so."""

    def __init__(self, start=1000):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, ms):
        self.now += ms


class MemoryStore:
    """The FileStore contract in RAM; values go through JSON as they would on flash.
    `files` survives a simulated power cut: hand it to the next MemoryStore."""

    def __init__(self, files=None):
        self.files = {} if files is None else files
        self.writes = 0
        self.damaged = []  # as FileStore's: (name, why) for the charge point to report
        self.failed = None
        self.full = False  # every write refused, as by a full flash (ENOSPC)
        self._ok = True

    def read(self, name, default=None):
        text = self.files.get(name)
        return default if text is None else json.loads(text)

    def write(self, name, value):
        if self.full:
            if self._ok:  # the first refusal after a write that went through
                self.failed = (name, "OSError: 28")
            self._ok = False
            return False
        self.files[name] = json.dumps(value)
        self.writes += 1
        self._ok = True
        return True

    def append(self, name, value):
        """Logs of records (FileStore.append, scan, rewrite): one JSON per line."""
        if not self.write(name + ".line", value):
            return False
        self.files[name] = self.files.get(name, "") + self.files.pop(name + ".line") + "\n"
        return True

    def rewrite(self, name, values):
        if self.full:
            return self.write(name, None)
        self.files[name] = "".join(json.dumps(v) + "\n" for v in values)
        self.writes += 1
        return True

    def size(self, name):
        return len(self.files.get(name, ""))

    def scan(self, name, offset=0, report=False):
        text = self.files.get(name, "")
        while offset < len(text):
            end = text.index("\n", offset) + 1
            value = json.loads(text[offset:end])
            offset = end
            yield value, offset

    def remove(self, name):
        self.files.pop(name, None)

    def discard(self, name, why):
        if self.files.pop(name, None) is not None:
            self.damaged.append((name, why))

    def report(self, name, why):
        self.damaged.append((name, why))

    def names(self, prefix=""):
        return sorted(n for n in self.files if n.startswith(prefix))


class LoopbackTransport:
    """Frames the charge point sends land in `sent`; `deliver` queues inbound frames."""
    replays = True  # as MQTT's persistent session

    def __init__(self):
        self.connected = True
        self.sent = []
        self.inbox = []
        self.status = {}  # a real transport's counters (connects, failures, last_error...)

    def send(self, text):
        if not self.connected:
            return False
        self.sent.append(text)
        return True

    def can_send(self):
        return self.connected

    def receive(self):
        if not self.inbox:
            return None
        return self.inbox.pop(0)

    def done(self):
        pass  # (a transport's inbox frees the frame's room here)

    def deliver(self, text, stale=False):
        self.inbox.append((text, stale))

    def stop(self):
        self.connected = False


class ScriptedCentralSystem:
    """The Central System at the far end of the charge point's link, scripted: each CALL the
    charge point sends is answered at once, as an accepting Central System would. Cards in
    `authorized` are Accepted, with `parents[card]` as their parentIdTag, and others Invalid
    (every card Accepted when `authorized` is None); transaction ids count up from
    `first_transaction_id`; `now()` gives currentTime (an ISO 8601 string).

    `answers[action]` overrides the answer to an action: a payload, a function of the request
    payload, a (code, description) tuple for a CALLERROR, or None to leave the call unanswered.
    `counts` counts the CALLs of each action; `calls` lists every (action, payload) when
    `keep_calls` (off on the twin: a long run would fill its heap).

    `handle` answers over a LoopbackTransport; `reply` gives the answer frame for a test that
    carries frames itself (through a fake broker, say)."""

    def __init__(self, transport, now, authorized=None, first_transaction_id=1,
                 keep_calls=False):
        self.transport = transport
        self.now = now
        self.authorized = authorized
        self.parents = {}  # idTag -> parentIdTag given in its idTagInfo
        self.next_transaction_id = first_transaction_id
        self.answers = {}
        self.counts = {}  # action -> how many CALLs came
        self.keep_calls = keep_calls
        self.calls = []  # (action, payload) in the order received, when keep_calls

    def answer(self, action, payload):
        """The answer to one CALL: a payload, a (code, description) tuple or None."""
        if action in self.answers:
            a = self.answers[action]
            return a(payload) if callable(a) else a
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": self.now(), "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": self.now()}
        if action == "Authorize":
            return {"idTagInfo": self._info(payload["idTag"])}
        if action == "StartTransaction":
            self.next_transaction_id += 1
            return {"transactionId": self.next_transaction_id - 1,
                    "idTagInfo": self._info(payload["idTag"])}
        if action == "StopTransaction":
            return {"idTagInfo": {"status": "Accepted"}} if "idTag" in payload else {}
        if action == "DataTransfer":
            return {"status": "Accepted"}
        return {}

    def _info(self, tag):
        known = self.authorized is None or tag in self.authorized
        info = {"status": "Accepted" if known else "Invalid"}
        if tag in self.parents:
            info["parentIdTag"] = self.parents[tag]
        return info

    def reply(self, uid, action, payload):
        """Count one CALL of the charge point's; the frame that answers it (a CALLRESULT or a
        CALLERROR), or None to leave it unanswered."""
        self._count(action, payload)
        a = self.answer(action, payload)
        if a is None:
            return None
        if isinstance(a, tuple):
            return json.dumps([4, uid, a[0], a[1], {}])
        return json.dumps([3, uid, a])

    def _count(self, action, payload):
        self.counts[action] = self.counts.get(action, 0) + 1
        if self.keep_calls:
            self.calls.append((action, payload))

    def handle(self, on_frame=None, answering=True):
        """Take every frame the charge point sent, show each to `on_frame(text)`, count each
        CALL and, when `answering`, queue its answer as inbound. Returns how many frames
        there were."""
        sent = self.transport.sent
        n = 0
        while sent:
            text = sent.pop(0)
            n += 1
            if on_frame is not None:
                on_frame(text)
            if text.startswith("[2"):  # only a CALL is answered: no need to parse the rest
                msg = json.loads(text)
                if not answering:
                    self._count(msg[2], msg[3])
                    continue
                frame = self.reply(msg[1], msg[2], msg[3])
                if frame is not None:
                    self.transport.deliver(frame)
        return n


class FakePilot:
    def __init__(self):
        self.ev = "A"
        self.amps = None
        self.diode_fault = False

    def state(self):
        return self.ev

    def offer(self, amps):
        self.amps = amps


class FakeRelay:
    def __init__(self):
        self.closed = False
        self.switches = 0
        self.stuck = False  # welded: reports so once it was told to open

    def set(self, closed):
        if closed != self.closed:
            self.switches += 1
        self.closed = closed

    def get(self):
        return self.closed

    def welded(self):
        return self.stuck


class FakeMeter:
    def __init__(self, wh=0):
        self.wh = wh
        self.watts = 0.0
        self.amps = (0.0,)
        self.volts = (230.0,)
        self.ok = True

    def energy_wh(self):
        return self.wh

    def power_w(self):
        return self.watts

    def current_a(self):
        return self.amps

    def voltage_v(self):
        return self.volts


class FakeRcd:
    def __init__(self):
        self.trip = False
        self.testable = False  # a test output: self_test() runs before each session
        self.test_passes = True
        self.tests = 0

    def tripped(self):
        return self.trip

    def self_test(self):
        self.tests += 1
        return self.test_passes


class FakeLock:
    """A motorised cable lock; `works = False` jams it (locking and unlocking fail)."""

    def __init__(self, works=True):
        self.works = works
        self.locked = False
        self.locks = 0
        self.unlocks = 0

    def lock(self):
        self.locks += 1
        if self.works:
            self.locked = True
        return self.works

    def unlock(self):
        self.unlocks += 1
        if self.works:
            self.locked = False
        return self.works


class FakeConnector:
    def __init__(self, lock=None, max_amps=16.0):
        self.pilot = FakePilot()
        self.relay = FakeRelay()
        self.meter = FakeMeter()
        self.rcd = FakeRcd()
        self.lock = lock
        self.max_amps = max_amps


class FakeRfid:
    def __init__(self):
        self.cards = []
        self.failed = False

    def present(self, uid):
        self.cards.append(uid)

    def poll(self):
        return self.cards.pop(0) if self.cards else None


class FakeBoard:
    def __init__(self, connectors=1, lock=False):
        self.connectors = [FakeConnector(FakeLock() if lock else None) for _ in range(connectors)]
        self.rfid = FakeRfid()
        self.info = {"chargePointVendor": "OpenEVSE-Py", "chargePointModel": "Sim-1",
                     "chargePointSerialNumber": "SN0001", "firmwareVersion": "0.1.0"}


class FakeNet:
    """The broker as seen through umqtt.simple's MQTTClient API."""

    def __init__(self, ticks):
        self.ticks = ticks
        self.connects = []  # ticks of every CONNECT
        self.refuse = 0  # refuse this many CONNECTs
        self.session_present = False
        self.subscriptions = []
        self.pending = []  # (topic, payload) the broker will deliver
        self.ahead = 0  # this many pending frames reach us before the next PUBACK
        self.unacked = []  # delivered, never acknowledged: sent again on the next CONNECT
        self.published = []
        self.publish_ticks = []
        self.fail_publish = 0
        self.answer_pings = True
        self.pings = 0
        self.check_calls = 0
        self.clients = []

    def factory(self, client_id, server, port, keepalive, ssl):
        client = FakeClient(self, client_id, keepalive, ssl)
        self.clients.append(client)
        return client


class FakeClient:
    """umqtt.simple's behaviour on a scripted packet stream: `publish` at QoS 1 reads
    packets until its PUBACK, handing PUBLISHes to the callback and acknowledging each one
    after the callback returns (an exception from the callback skips the PUBACK)."""

    def __init__(self, net, client_id, keepalive, ssl):
        self.net = net
        self.client_id = client_id
        self.keepalive = keepalive
        self.ssl = ssl
        self.cb = None
        self.pingresp = False
        self.closed = False
        self.sock = self
        self.pid = 0
        self.stream = []  # packets on their way to us: ("pub", topic, msg) / ("puback", pid)
        self._rest = b""  # the unread remainder of the PUBACK wait_msg returned

    def _rx(self):
        self.ssl.rx += 1  # bytes arrived on the TLS socket

    def set_callback(self, f):
        self.cb = f

    def connect(self, clean_session=True):
        assert clean_session is False
        self.net.connects.append(self.net.ticks())
        if self.net.refuse:
            self.net.refuse -= 1
            raise OSError(errno.ECONNREFUSED, "refused")
        self.net.pending[:0] = self.net.unacked  # the persistent session delivers them again
        self.net.unacked = []
        self._rx()
        return self.net.session_present

    def subscribe(self, topic, qos=0):
        self.net.subscriptions.append((topic, qos))
        self._rx()

    def publish(self, topic, msg, retain=False, qos=0):
        if self.net.fail_publish:
            self.net.fail_publish -= 1
            raise OSError(errno.ECONNRESET, "reset mid-publish")
        self.net.published.append((topic, msg, qos))
        self.net.publish_ticks.append(self.net.ticks())
        self.pid += 1
        ahead, self.net.ahead = self.net.pending[:self.net.ahead], 0
        del self.net.pending[:len(ahead)]
        self.stream += [("pub",) + f for f in ahead] + [("puback", self.pid)]
        while True:
            if self.wait_msg() == 0x40 and self.read(1) == b"\x02":
                got = self.read(2)
                if got[0] << 8 | got[1] == self.pid:
                    return

    def read(self, n):
        data, self._rest = self._rest[:n], self._rest[n:]
        return data

    def flush(self):  # TlsLink's socket: nothing is gathered here
        pass

    def wait(self, ms):  # TlsLink's socket: the scripted stream is always ready
        pass

    def wait_msg(self):
        if not self.stream:
            return None
        packet = self.stream.pop(0)
        self._rx()
        if packet[0] == "puback":
            self._rest = b"\x02" + bytes([packet[1] >> 8, packet[1] & 255])
            return 0x40
        frame = packet[1:]
        self.net.unacked.append(frame)
        self.cb(*frame)  # raising here leaves it unacknowledged
        self.net.unacked.remove(frame)
        return PUBLISH_QOS1

    def ping(self):
        self.net.pings += 1
        self.pingresp = self.net.answer_pings

    def check_msg(self):
        self.net.check_calls += 1
        if self.pingresp:
            self.pingresp = False
            self._rx()
            return None
        if not self.stream and self.net.pending:
            self.stream.append(("pub",) + self.net.pending.pop(0))
        return self.wait_msg()

    def disconnect(self):
        self.close()

    def close(self):
        self.closed = True
        for packet in self.stream:  # what was on its way is sent again after a reconnect
            if packet[0] == "pub":
                self.net.unacked.append(packet[1:])
        self.stream = []
