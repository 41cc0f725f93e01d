"""End-to-end charging session run on the real MicroPython binary against the fake hardware.

Usage: micropython -X heapsize=N scenario.py STATE_DIR   (MICROPYPATH: lib, and tools/fakes.py
(compiled or not) as fakes)
Prints one JSON line per frame the charge point sends ({"frame": [...]}) plus checkpoints
({"check": name, ...}); pytest validates the frames against the official OCPP schemas.
"""
import gc
import json
import sys

from chargepoint.model.chargepoint import ChargePoint
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.clock import Clock
from chargepoint.platform.store import FileStore
from fakes import FakeBoard, FakeTicks, LoopbackTransport, ScriptedCentralSystem

T0 = 1795262400
TAG = "04A1B2C3D4"
state_dir = sys.argv[1]
ticks = FakeTicks()
board = FakeBoard(1)
transport = LoopbackTransport()
central = ScriptedCentralSystem(transport, lambda: iso(T0 + ticks.now // 1000),
                                authorized=(TAG,), first_transaction_id=101)
peak = [0]


def boot():
    return ChargePoint(board, transport, FileStore(state_dir), clock=Clock(ticks_ms=ticks),
                       reboot=lambda hard: None)


def show(text):
    print(json.dumps({"frame": json.loads(text)}))


def step(cp, ms=0):
    ticks.advance(ms)
    for _ in range(20):
        cp.loop()
        used = gc.mem_alloc()
        if used > peak[0]:
            peak[0] = used
        central.handle(show)


def check(name, **facts):
    facts["check"] = name
    print(json.dumps(facts))


def connector(cp):
    c = cp.connectors[0]
    return {"status": c.status, "relay": board.connectors[0].relay.closed,
            "tx": c.tx["id"] if c.tx else None}


hw = board.connectors[0]
cp = boot()
step(cp)
check("booted", **connector(cp))
board.rfid.present(TAG)
step(cp)
hw.pilot.ev = "B"
step(cp)
hw.pilot.ev = "C"
step(cp)
check("charging", **connector(cp))
for _ in range(3):
    hw.meter.wh += 250
    hw.meter.watts = 7360.0
    step(cp, 60000)
board.rfid.present(TAG)
step(cp)
check("stopped", **connector(cp))
hw.pilot.ev = "A"
step(cp)
check("unplugged", **connector(cp))

# Power loss in the middle of a second session.
board.rfid.present(TAG)
hw.pilot.ev = "C"
step(cp)
step(cp)
hw.meter.wh += 400
step(cp, 61000)
check("second session", **connector(cp))
del cp
gc.collect()
hw.relay.closed = False
hw.pilot.ev = "A"
cp = boot()
step(cp)
check("after power loss", **connector(cp))
gc.collect()
check("heap", peak=peak[0], live=gc.mem_alloc(), free=gc.mem_free())
