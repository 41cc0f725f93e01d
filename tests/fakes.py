"""Fake clock, store, transport, MQTT broker and hardware: the one place tests get their stand-ins.

Plain Python that also runs under MicroPython, so the same fakes back the end-to-end
scenario that runs on the `micropython` binary.
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

    def read(self, name, default=None):
        text = self.files.get(name)
        return default if text is None else json.loads(text)

    def write(self, name, value):
        self.files[name] = json.dumps(value)
        self.writes += 1

    def remove(self, name):
        self.files.pop(name, None)

    def names(self, prefix=""):
        return sorted(n for n in self.files if n.startswith(prefix))


class LoopbackTransport:
    """Frames the charge point sends land in `sent`; `deliver` queues inbound frames."""

    def __init__(self):
        self.connected = True
        self.sent = []
        self.inbox = []

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

    def deliver(self, text, stale=False):
        self.inbox.append((text, stale))

    def stop(self):
        self.connected = False


class ScriptedCentralSystem:
    """The Central System at the far end of a LoopbackTransport: each CALL the charge point
    sent is answered at once, as an accepting Central System would. Cards in `cards` are
    Accepted and others Invalid (every card when `cards` is None); transaction ids count up
    from `first_transaction_id`; `now()` gives currentTime (an ISO 8601 string)."""

    def __init__(self, transport, now, cards=None, first_transaction_id=1):
        self.transport = transport
        self.now = now
        self.cards = cards
        self.next_transaction_id = first_transaction_id
        self.calls = {}  # action -> how many CALLs came

    def answer(self, action, payload):
        if action == "BootNotification":
            return {"status": "Accepted", "currentTime": self.now(), "interval": 300}
        if action == "Heartbeat":
            return {"currentTime": self.now()}
        if action == "Authorize":
            known = self.cards is None or payload["idTag"] in self.cards
            return {"idTagInfo": {"status": "Accepted" if known else "Invalid"}}
        if action == "StartTransaction":
            self.next_transaction_id += 1
            return {"transactionId": self.next_transaction_id - 1,
                    "idTagInfo": {"status": "Accepted"}}
        if action == "StopTransaction":
            return {"idTagInfo": {"status": "Accepted"}}
        return {}

    def handle(self, on_frame=None):
        """Take every frame the charge point sent, show each to `on_frame(text)`, queue the
        answer of each CALL as inbound. Returns how many frames there were."""
        sent = self.transport.sent
        n = 0
        while sent:
            text = sent.pop(0)
            n += 1
            if on_frame is not None:
                on_frame(text)
            if text.startswith("[2"):  # only a CALL is answered: no need to parse the rest
                msg = json.loads(text)
                self.calls[msg[2]] = self.calls.get(msg[2], 0) + 1
                self.transport.deliver(json.dumps([3, msg[1], self.answer(msg[2], msg[3])]))
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
