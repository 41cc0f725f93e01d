"""Twin probe for tests/model/test_loop_alloc.py: bytes the charge point's loop allocates.

micropython loop_alloc.py STEP_MS  (MICROPYPATH=.frozen:<repo root>, cwd a scratch folder)
A 2-connector charge point on fakes, booted and idle; then 10 000 loops STEP_MS apart on the
fake clock with the collector off: prints {"loops", "ms", "allocated_bytes"}.
"""
import gc
import json
import os
import sys

from chargepoint.model.chargepoint import ChargePoint
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.clock import Clock
from chargepoint.platform.log import Log
from chargepoint.platform.store import FileStore
from tools.fakes import FakeBoard, FakeTicks, LoopbackTransport, ScriptedCentralSystem

step = int(sys.argv[1])
ticks = FakeTicks()
transport = LoopbackTransport()
transport.status = {}
try:
    os.mkdir("data")
except OSError:
    pass
clock = Clock(ticks_ms=ticks)
cs = ScriptedCentralSystem(transport, lambda: iso(1795262400 + ticks.now // 1000))
log = Log("data", clock)
cp = ChargePoint(FakeBoard(2), transport, FileStore("data"), clock,
                 services={"log": log, "upload": print, "folder": "data"})
for _ in range(500):  # boot: BootNotification, statuses, the first heartbeat
    ticks.advance(20)
    cp.loop()
    cs.handle()
n = 10000
gc.collect()
gc.disable()
before = gc.mem_alloc()
for _ in range(n):
    ticks.advance(step)
    cp.loop()
after = gc.mem_alloc()
gc.enable()
print(json.dumps({"loops": n, "ms": n * step, "allocated_bytes": after - before}))
