"""Fake clock, store, transport and hardware: the one place tests get their stand-ins.

Plain Python that also runs under MicroPython, so the same fakes back the end-to-end
scenario that runs on the `micropython` binary.
"""
import json


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

    def receive(self):
        if not self.inbox:
            return None
        return self.inbox.pop(0)

    def deliver(self, text, stale=False):
        self.inbox.append((text, stale))


class FakePilot:
    def __init__(self):
        self.ev = "A"
        self.amps = None

    def state(self):
        return self.ev

    def offer(self, amps):
        self.amps = amps


class FakeRelay:
    def __init__(self):
        self.closed = False
        self.switches = 0

    def set(self, closed):
        if closed != self.closed:
            self.switches += 1
        self.closed = closed

    def get(self):
        return self.closed


class FakeMeter:
    def __init__(self, wh=0):
        self.wh = wh
        self.watts = 0.0
        self.amps = (0.0,)
        self.volts = (230.0,)

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

    def tripped(self):
        return self.trip


class FakeLock:
    def __init__(self, works=True):
        self.works = works
        self.unlocks = 0

    def unlock(self):
        self.unlocks += 1
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
