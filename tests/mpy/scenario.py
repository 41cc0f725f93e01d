"""End-to-end charging session run on the real MicroPython binary against the fake hardware.

Usage: micropython -X heapsize=N scenario.py STATE_DIR   (MICROPYPATH: lib and tests)
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
from fakes import FakeBoard, FakeTicks, LoopbackTransport

T0 = 1795262400
TAG = "04A1B2C3D4"
state_dir = sys.argv[1]
ticks = FakeTicks()
board = FakeBoard(1)
transport = LoopbackTransport()
txid = [100]
peak = [0]


def answer(action, payload):
    now = iso(T0 + ticks.now // 1000)
    if action == "BootNotification":
        return {"status": "Accepted", "currentTime": now, "interval": 300}
    if action == "Heartbeat":
        return {"currentTime": now}
    if action == "Authorize":
        return {"idTagInfo": {"status": "Accepted" if payload["idTag"] == TAG else "Invalid"}}
    if action == "StartTransaction":
        txid[0] += 1
        return {"transactionId": txid[0], "idTagInfo": {"status": "Accepted"}}
    if action == "StopTransaction":
        return {"idTagInfo": {"status": "Accepted"}}
    return {}


def boot():
    return ChargePoint(board, transport, FileStore(state_dir), clock=Clock(ticks_ms=ticks),
                       reboot=lambda hard: None)


def step(cp, ms=0):
    ticks.advance(ms)
    for _ in range(20):
        cp.loop()
        used = gc.mem_alloc()
        if used > peak[0]:
            peak[0] = used
        if not transport.sent:
            continue
        while transport.sent:
            text = transport.sent.pop(0)
            print(json.dumps({"frame": json.loads(text)}))
            msg = json.loads(text)
            if msg[0] == 2:
                transport.deliver(json.dumps([3, msg[1], answer(msg[2], msg[3])]))


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
