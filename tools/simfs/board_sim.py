"""Simulated ESP32 board for the host simulator (never on a device).

The simulated world (EV, load, residual current, cards, the meter's register) is kept by the
simulator process (tools/sim.py); this board connects to it over a loopback "bus" of JSON
lines, shows the firmware the inputs it is told and reports the outputs it drives.
Bus messages, simulator -> board:
  {"t":"world","id":n,"connectors":{"1":{"ev":"C","load":16.0,"rcd":false,"wh":123,
   "jam":false}}}
  {"t":"rfid","id":n,"uid":"04A1B2C3D4"}
  {"t":"status","id":n}
board -> simulator: {"t":"ack","id":n,"state":{...}} after running the firmware's loop once,
so an answer reflects what the firmware did; {"t":"state",...} on changes; {"t":"frame",
"dir":"in"|"out","text":...}; {"t":"reboot","hard":bool} just before the firmware restarts.
"""
import asyncio
import gc
import json
import sys
import time

REBOOT_EXIT = 75  # the simulator restarts the firmware on this exit code
VOLTS = 230.0


class Lock:
    """A motorised cable lock (socket outlet). `jam` makes locking and unlocking fail;
    `bolt` is its physical state, which outlives the firmware (kept by the simulator)."""

    def __init__(self):
        self.bolt = False
        self.jam = False

    def lock(self):
        if not self.jam:
            self.bolt = True
        return not self.jam

    def unlock(self):
        if not self.jam:
            self.bolt = False
        return not self.jam


class Connector:
    """One connector's simulated pilot, relay, meter and residual-current monitor. One object
    plays all four parts (their method names do not clash): every class costs heap."""

    def __init__(self, max_amps, lock):
        self.pilot = self.relay = self.meter = self.rcd = self
        self.lock = Lock() if lock else None
        self.max_amps = max_amps
        self.ev = "A"  # pilot: the EV's state
        self.amps = None  # pilot: current offered, None without PWM
        self.closed = False  # relay
        self.wh = 0  # meter register
        self.trip = False  # residual current
        self.load = 0.0  # what the EV would draw

    def state(self):
        return self.ev

    def offer(self, amps):
        self.amps = amps

    def set(self, closed):
        self.closed = closed

    def get(self):
        return self.closed

    def _amps(self):
        if not self.closed or self.amps is None:
            return 0.0
        return min(self.load, self.amps)

    def energy_wh(self):
        return self.wh

    def power_w(self):
        return self._amps() * VOLTS

    def current_a(self):
        return (self._amps(),)

    def voltage_v(self):
        return (VOLTS,)

    def tripped(self):
        return self.trip


class Board:
    def __init__(self, options, cfg):
        host, _, port = options["bus"].rpartition(":")
        self.bus = (host, int(port))
        n = options.get("connectors", 1)
        lock = options.get("lock", False)
        self.connectors = [Connector(float(options.get("max_amps", 32)), lock)
                           for _ in range(n)]
        if lock:  # the locks as they were when the power went, before the firmware runs
            try:
                with open(options["locks"]) as f:
                    locks = json.load(f)
            except (OSError, ValueError):
                locks = {}
            for i, c in enumerate(self.connectors):
                c.lock.bolt, c.lock.jam = locks.get(str(i + 1), (False, False))
        self.rfid = self  # the reader: poll()
        self.cards = []
        self.info = {"chargePointVendor": "MicroOCPP-Py", "chargePointModel": "Simulator",
                     "chargePointSerialNumber": cfg["id"], "meterType": "Simulated"}
        self.started = time.ticks_ms()
        self.peak = 0  # largest live heap measured
        self.free = 0  # free heap at the last measurement
        self.rebooting = None
        self.writer = None
        self.cp = None

    def poll(self):
        return self.cards.pop(0) if self.cards else None

    def reboot(self, hard):
        self.rebooting = hard  # the bus task says goodbye and ends the process

    def state(self, measure=False):
        """The view the simulator shows. measure=True (answers to requests, not the 50 ms
        change reports) first collects, for live heap figures: what is held, not garbage."""
        cp = self.cp
        if measure:
            gc.collect()
            self.peak = max(self.peak, gc.mem_alloc())
            self.free = gc.mem_free()
        view = cp.view()
        for key, c in view["connectors"].items():
            c["pilot_state"] = c.pop("pilot")
            lock = self.connectors[int(key) - 1].lock
            c["locked"] = None if lock is None else lock.bolt
        view["heap_free"] = self.free
        view["heap_peak"] = self.peak
        view["uptime_ms"] = time.ticks_diff(time.ticks_ms(), self.started)
        view["mqtt"] = getattr(cp.transport, "status", None)
        return view

    async def _send(self, msg):
        self.writer.write(json.dumps(msg).encode() + b"\n")
        await self.writer.drain()

    def _apply(self, msg):
        t = msg["t"]
        if t == "world":
            for key, w in msg["connectors"].items():
                c = self.connectors[int(key) - 1]
                c.ev = w["ev"]
                c.load = float(w["load"])
                c.trip = w["rcd"]
                c.wh = int(w["wh"])
                if c.lock is not None:
                    c.lock.jam = w["jam"]
        elif t == "rfid":
            self.cards.append(msg["uid"])

    async def run(self, cp):
        self.cp = cp
        frames = []
        cp.engine.on_frame = lambda direction, text: frames.append((direction, text))
        reader, self.writer = await asyncio.open_connection(*self.bus)
        await self._send({"t": "hello", "state": self.state(True)})
        asyncio.create_task(self._report(frames))
        while True:
            line = await reader.readline()
            if not line:
                sys.exit(1)  # the simulator is gone: so is the power
            msg = json.loads(line)
            self._apply(msg)
            cp.loop()  # act on the new inputs now, so the answer shows the outcome
            await self._send({"t": "ack", "id": msg.get("id"), "state": self.state(True)})

    async def _report(self, frames):
        last = None
        while True:
            while frames:
                direction, text = frames.pop(0)
                await self._send({"t": "frame", "dir": direction, "text": text})
            if self.rebooting is not None:
                await self._send({"t": "reboot", "hard": self.rebooting})
                raise SystemExit(REBOOT_EXIT)
            state = self.state()
            brief = json.dumps(state["connectors"]) + str(state["online"])
            if brief != last:
                last = brief
                await self._send({"t": "state", "state": state})
            await asyncio.sleep_ms(50)


def build(options, cfg):
    return Board(options, cfg)
