"""The device code on the device twin (32-bit MicroPython v1.28.0, tools/twin.py): it compiles,
and a whole session with a power cut runs on an ESP32-sized heap in both code placements,
every frame checked against the official schemas."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, validate_outgoing
from test_e2e import HEAP as E2E_HEAP
from tools import twin

HEAP = 110000  # what an ESP32 without PSRAM has free with Wi-Fi up


def device_sources():
    yield os.path.join(ROOT, "boot.py")
    yield os.path.join(ROOT, "main.py")
    for dirpath, _, files in os.walk(os.path.join(ROOT, "lib")):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(dirpath, f)


@pytest.fixture(scope="session")
def mpy_cross():
    return twin.mpy_cross()


@pytest.fixture(scope="session")
def mpy_lib(tmp_path_factory, mpy_cross):
    """lib/ compiled to .mpy, as it is deployed (source compiled on the device would cost
    the heap the firmware needs), and the fakes the scenario drives it with."""
    out = tmp_path_factory.mktemp("mpylib")
    lib = os.path.join(ROOT, "lib")
    for src in list(device_sources())[2:] + [os.path.join(ROOT, "tools", "fakes.py")]:
        rel = os.path.relpath(src, lib) if src.startswith(lib) else os.path.basename(src)
        dst = out / (rel[:-3] + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([mpy_cross, "-o", str(dst), src], check=True)
    return str(out)


@pytest.mark.parametrize("src", list(device_sources()), ids=lambda p: os.path.relpath(p, ROOT))
def test_device_code_compiles_with_mpy_cross(src, mpy_cross):
    r = subprocess.run([mpy_cross, "-o", os.devnull, src], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("code", ["frozen", "deployed"])
def test_session_and_power_loss_under_micropython(mpy_lib, tmp_path, code):
    state = tmp_path / "flash"
    if code == "frozen":  # our code from the image; only the fakes from the filesystem
        fakes = tmp_path / "fakes"
        fakes.mkdir()
        os.link(os.path.join(mpy_lib, "fakes.mpy"), fakes / "fakes.mpy")
        binary, path = twin.ensure(), ".frozen:%s" % fakes
    else:
        binary, path = twin.ensure(stock=True), ".frozen:%s" % mpy_lib
    # deployed: every profile's bytecode in the heap needs a board with PSRAM (README)
    heap = HEAP if code == "frozen" else E2E_HEAP["deployed"]
    r = subprocess.run([binary, "-X", "heapsize=%d" % heap,
                        os.path.join(ROOT, "tests", "mpy", "scenario.py"), str(state)],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=path))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    frames = [validate_outgoing(json.dumps(x["frame"]), {}) for x in lines if "frame" in x]
    checks = {x["check"]: x for x in lines if "check" in x}
    assert checks["charging"]["relay"] and checks["charging"]["status"] == "Charging"
    assert not checks["stopped"]["relay"] and checks["stopped"]["status"] == "Finishing"
    assert checks["unplugged"]["status"] == "Available"
    assert checks["second session"]["relay"]
    assert checks["after power loss"] == {"check": "after power loss", "status": "Available",
                                          "relay": False, "tx": None}
    calls = [(f[2], f[3]) for f in frames if f[0] == 2]
    actions = [a for a, _ in calls]
    assert actions[0] == "BootNotification"
    assert actions.count("StartTransaction") == 2 and actions.count("StopTransaction") == 2
    assert actions.count("BootNotification") == 2
    stops = [p for a, p in calls if a == "StopTransaction"]
    assert stops[0]["reason"] == "Local" and stops[0]["meterStop"] == 750
    assert stops[0]["transactionId"] == 101
    assert stops[1]["reason"] == "PowerLoss" and stops[1]["meterStop"] == 1150
    assert stops[1]["transactionId"] == 102
    meter = [p for a, p in calls if a == "MeterValues"]
    assert [m["transactionId"] for m in meter] == [101, 101, 101, 102]
    statuses = [p["status"] for a, p in calls if a == "StatusNotification" and p["connectorId"]]
    assert statuses[:6] == ["Available", "Preparing", "SuspendedEV", "Charging", "Finishing",
                            "Available"]
    print("MicroPython heap, %s code: peak %d B allocated, %d B live after collect"
          % (code, checks["heap"]["peak"], checks["heap"]["live"]))


@pytest.mark.parametrize("kind", ["error", "memory"])
def test_a_dying_main_loop_leaves_relays_open_and_pwm_off(mpy_lib, tmp_path, kind):
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    os.link(os.path.join(mpy_lib, "fakes.mpy"), fakes / "fakes.mpy")
    r = subprocess.run([twin.ensure(), "-X", "heapsize=%d" % HEAP,
                        os.path.join(ROOT, "tests", "mpy", "app_exit.py"), kind],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                       env=dict(os.environ, MICROPYPATH=".frozen:%s" % fakes))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result["live"] == [[True, True], [16.0, 16.0]]  # charging when the loop died
    assert result == {"ended": "MemoryError" if kind == "memory" else "RuntimeError",
                      "polls": 10, "live": result["live"],
                      "relays": [False, False], "pilots": [None, None]}


OUTBOUND = """
import gc, json
from chargepoint.transport.mqtt import MqttTransport
t = MqttTransport("CP001", "localhost")
t.connected = True
text = json.dumps([3, "x", {"k": "\\u00e9" * 10 + "a" * 3000}])
gc.collect()
before = gc.mem_alloc()
ok = t.send(text)
gc.collect()
took = gc.mem_alloc() - before
frame = t.outbox.peek()
print(json.dumps([ok, took, len(frame), len(text.encode()), bytes(frame) == text.encode()]))
"""


def on_twin(tmp_path, code):
    """`code` run on the frozen twin at HEAP: its last line of output, as JSON."""
    script = tmp_path / "script.py"
    script.write_text(code)
    r = subprocess.run([twin.ensure(), "-X", "heapsize=%d" % HEAP, str(script)],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                       env=dict(os.environ, MICROPYPATH=".frozen"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_an_outbound_mqtt_frame_is_not_copied(tmp_path):
    """The engine's frame (a str) is queued without a copy: a 3 KB answer costs the outbox a
    few words, not another 3 KB in one piece (MicroPython's str.encode() shares the str's
    bytes, as both are immutable)."""
    ok, took, n, utf8, same = on_twin(tmp_path, OUTBOUND)
    assert ok and same and n == utf8 > 3000  # its bytes (10 of its characters take two)
    assert took < 200


INBOUND = """\
import gc, json
from chargepoint.transport.mailbox import Inbox
from chargepoint.ocpp.engine import Engine


class Link:
    connected = True
    replays = True

    def __init__(self):
        self.sent = []

    def can_send(self):
        return True

    def send(self, text):
        self.sent.append(text)
        return True


class Clock:
    def ticks_ms(self):
        return 0

    def since(self, t):
        return 0


inbox = Inbox(24, 4096)  # at boot
link = Link()
engine = Engine(link, Clock(), lambda: None)
shown = []
engine.frame_listeners.append(lambda d, t: shown.append(len(t)))
got = []
engine.route("SendLocalList", lambda p, stale: got.append(len(p["localAuthorizationList"]))
             or {"status": "Accepted"})
entries = [{"idTag": "TAG%017d" % i, "idTagInfo": {"status": "Accepted"}} for i in range(55)]
frame = json.dumps([2, "sll-1", "SendLocalList", {"listVersion": 2, "updateType": "Full",
                                                    "localAuthorizationList": entries}]).encode()
entries = None
gc.collect()
# The heap cut into pieces of about 1 KB: every other block of a heap filled with them freed
keep = []
try:
    while True:
        keep.append(bytearray(1000))
except MemoryError:
    pass
for i in range(0, len(keep), 2):
    keep[i] = None
gc.collect()
try:
    bytearray(len(frame))
    whole = True
except MemoryError:
    whole = False
view = inbox.reserve(len(frame))  # the link reads the payload straight into it
view[:] = frame
inbox.put(view)
data, stale = inbox.get()
engine.feed(data, stale)
ok = inbox.get() is None
print(json.dumps([len(frame), whole, got, link.sent, shown, ok, engine.stats["bad"]]))
"""


def test_an_inbound_frame_of_4_kb_is_taken_in_a_heap_with_no_4_kb_block(tmp_path):
    """The inbox's buffer, allocated at boot, holds the frame (the link reads it straight in)
    and the engine parses it where it lies: a SendLocalList of 4 KB goes through, and is
    answered, in a heap cut into pieces of 1 KB, where copying it out (the str the inbox
    held before) found no room."""
    size, whole, got, sent, shown, emptied, bad = on_twin(tmp_path, INBOUND)
    assert 4000 < size <= 4096 and not whole  # no block of the frame's size anywhere
    assert got == [55] and bad == 0
    assert [json.loads(f) for f in sent] == [[3, "sll-1", {"status": "Accepted"}]]
    assert shown[0] == 480 + len("...(%d bytes)" % size)  # its listeners see its head
    assert emptied
