"""Simulated ESP32 board on the device twin (host only): device models wired to the simulated
`machine` as on a real board, the real drivers built on them (chargepoint.hardware.esp32),
and a loopback bus to the simulator process (tools/sim.py).

Only models are ever changed by the simulator, never a driver: the EV on each pilot, the
contactor (welded or not), the residual-current monitor, the cable-lock motor, the energy
meter (SDM630/SDM120 on Modbus, S0 pulses or a CT clamp) and the MFRC522 with a card.
Lasting physical state (the meters' registers, the lock bolts) is kept by the simulator in
the file `options["world"]`, read here before the drivers start.

Two connections to the simulator. The physical world comes on its own one, read by a
thread: a change reaches the models at once, also while the asyncio loop is blocked (by
aiorepl's raw REPL running a command, say), as the physical world does not wait for the
firmware. Each line is answered "ok" once applied:
  {"connectors":{"1":{"ev":"C","load":16.0,"rcd":false,"jam":false,"diode":true,
   "welded":false,"meter":"none"}}}
A change that reaches a connector while its contact is closed starts a stopwatch that the
contact opening stops: `open_ms` in the state (null if it has not opened since).
  {"t":"status"}  answered with the state (one JSON line, heap figures after a collection),
      read by that thread: the simulator's `status` needs no asyncio loop. It only reads
      (the charge point's view, the models, the drivers' cached values): the GIL makes that
      safe, and it never runs the charge point's loop.

Bus messages, simulator -> board:
  {"t":"world","id":n}  the world has changed (on the other connection): act on it
  {"t":"rfid","id":n,"uid":"04A1B2C3D4E5F6"}
  {"t":"block","id":n,"ms":2000,"unplug_after_ms":300,"connector":1}  the firmware's asyncio
      loop is kept busy (as by a handler stuck in a loop) for ms; unplug_after_ms into it the
      EV is unplugged (from a timer, as the physical world goes on); the ack carries
      "blocked": {"loop_ms", "open_ms" (unplug to contact open, -1 if it did not)}
board -> simulator: {"t":"ack","id":n,"state":{...}} once the firmware has acted on it;
{"t":"state",...} on changes; {"t":"frame","dir":"in"|"out","text":...};
{"t":"reboot","hard":bool} just before the firmware restarts: a soft reset then exits (the
firmware's finally blocks run, as on a board's soft reset); on a hard one the simulator kills
the process, so only what is on the flash survives, as on a board.
"""
import gc


def _live():
    """The live heap (bytes, after a collection); 0 on CPython (tests import this module)."""
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


_BEFORE = _live()  # the live heap before the simulation's modules (its share below)
import simheap  # noqa: E402  (imported already, by the simulated machine)

_BUILTINS = simheap.share()  # the simulated built-ins imported before (machine)

import _thread  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import contactor
import ev
import lock_motor
import machine
import rcd_model

REBOOT_EXIT = 75  # the simulator restarts the firmware on this exit code
_IPPROTO_TCP = 6  # Linux values (the unix port's socket module names neither)
_TCP_NODELAY = 1
_PHYSICS_MS = 100
_CARD_MS = 300  # a tap leaves the card in the field this long
_GONE_MS = 2000  # a card taken away is gone for the reader once it scanned an empty field
# as often as its driver's gone_polls, or after this, whatever the reader did
_READ_MS = 400  # an rfid request waits at most this long for the reader to take the card
_SETTLE_MS = 25  # a pilot reading is at most 20 ms old: the firmware has seen a change by then
_FRAMES = 8  # frames waiting for the simulator's log; more are counted, not kept (heap)
_FRAME_LOG = 512  # a longer frame is cut to this many characters in that log
_CHARGING = ("C", "D")
_RESET_HOLD_S = 30  # a hard reset waits this long at most for the simulator's kill


def _sdm(m, kept, phases):
    import sdm_model
    meter = sdm_model.SdmModel(m["slave"], phases, energy_kwh=kept.get("wh", 0) / 1000)
    machine.wire_bus("uart", m["uart"], meter)
    machine.wire(m["de"], meter.de)
    return meter


def _s0(m, kept):
    import s0_model
    meter = s0_model.S0Model(m["pulses_per_kwh"])
    machine.wire(m["pin"], meter)
    return meter


def _ct(m, kept):
    import ct_model
    meter = ct_model.CtModel()
    machine.wire(m["adc"], meter)
    return meter


# Meter kind (one of chargepoint.hardware.esp32.METERS) -> its model wired as the driver's
# checked options `m` say, with the world `kept` of its connector: a new kind of meter is one
# entry here. Each model has run(amps, seconds), register() and `fault` (Models).
METERS = {
    "sdm630": lambda m, kept: _sdm(m, kept, 3),
    "sdm120": lambda m, kept: _sdm(m, kept, 1),
    "s0": _s0,
    "ct": _ct,
}


def pin_map(i, meter, lock):
    """The esp32 driver's options of connector i (0-based): the first is wired as the default
    ESP32-DevKitC board; further ones get simulated GPIOs 100 + 20 i ... (one UART each). The
    meter gets every option of its kind (esp32.METERS): the wire of that name below where
    there is one, else the kind's default; its model (METERS) is built from them."""
    from chargepoint.hardware import esp32

    if i == 0:
        c = {"pilot_pwm": 25, "pilot_adc": 34, "relay": [26], "relay_feedback": 27,
             "rcd": 35, "rcd_test": 33, "lock": {"lock": 14, "unlock": 12, "feedback": 13}}
        wires = {"uart": 2, "tx": 17, "rx": 16, "de": 4, "pin": 32, "adc": 36}
    else:
        b = 100 + 20 * i
        c = {"pilot_pwm": b, "pilot_adc": b + 1, "relay": [b + 2], "relay_feedback": b + 3,
             "rcd": b + 4, "rcd_test": b + 5,
             "lock": {"lock": b + 6, "unlock": b + 7, "feedback": b + 8}}
        wires = {"uart": 10 + i, "tx": b + 9, "rx": b + 10, "de": b + 11, "pin": b + 12,
                 "adc": b + 13}
    if not lock:
        c["lock"] = None
    c["meter"] = m = {"type": meter}
    for key, default, _ in esp32.METERS[meter][0]:
        m[key] = wires.get(key, default)
    return c


class Models:
    """One connector's physical side, wired to its pins."""

    def __init__(self, c, kept):
        self.ev = ev.EV()
        machine.wire(c["pilot_pwm"], self.ev)
        machine.wire(c["pilot_adc"], self.ev)
        self.contactor = contactor.Contactor(coils=len(c["relay"]))
        for pin, coil in zip(c["relay"], self.contactor.coils):
            machine.wire(pin, coil)
        machine.wire(c["relay_feedback"], self.contactor.feedback)
        self.rcd = rcd_model.RcdModel()
        machine.wire(c["rcd"], self.rcd)
        machine.wire(c["rcd_test"], self.rcd.test)
        self.lock = None
        if c["lock"] is not None:
            self.lock = lock_motor.LockMotor(bolt=kept.get("locked", False))
            machine.wire(c["lock"]["lock"], self.lock.lock_port)
            machine.wire(c["lock"]["unlock"], self.lock.unlock_port)
            machine.wire(c["lock"]["feedback"], self.lock.feedback)
        self.load = 0.0
        self.last = None  # the world last applied
        self.changed = None  # ticks of a change that came while the contact was closed
        self.open_ms = None  # ... to the contact opening
        self.contactor.on_change = self._moved
        self.meter = METERS[c["meter"]["type"]](c["meter"], kept)

    def apply(self, w):
        if w != self.last and self.contactor.closed:
            self.changed = time.ticks_ms()
            self.open_ms = None
        self.last = w
        self.ev.state = w["ev"]
        self.ev.diode = w.get("diode", True)
        self.load = float(w["load"])
        if w["rcd"] != self.rcd.residual:
            self.rcd.trip() if w["rcd"] else self.rcd.clear()
        self.contactor.welded = w.get("welded", False)
        if self.lock is not None:
            self.lock.jam = w.get("jam", False)
        self.meter.fault = w.get("meter", "none")

    def _moved(self, closed):
        if not closed and self.changed is not None:
            self.open_ms = time.ticks_diff(time.ticks_ms(), self.changed)
            self.changed = None

    def amps(self):
        """What the EV draws now: its load, at most the offer, while the contact is closed."""
        if not self.contactor.closed or self.ev.state not in _CHARGING:
            return 0.0
        return min(self.load, self.ev.amps() or 0.0)

    def advance(self, seconds):
        self.meter.run(self.amps(), seconds)


class Board:
    def __init__(self, options, cfg, store):
        from chargepoint.hardware import esp32

        host, _, port = options["bus"].rpartition(":")
        self.bus = (host, int(port))
        n = options.get("connectors", 1)
        try:
            with open(options["world"]) as f:
                kept = json.load(f)
        except (KeyError, OSError, ValueError):
            kept = {}
        pins = [pin_map(i, options.get("meter", "sdm630"), options.get("lock", False))
                for i in range(n)]
        self.models = [Models(c, kept.get(str(i + 1), {})) for i, c in enumerate(pins)]
        import mfrc522_model
        self.reader = mfrc522_model.MFRC522Model()
        machine.wire_bus("spi", 1, self.reader)
        machine.wire(5, self.reader.cs)
        machine.wire(22, self.reader.rst)
        before = _live()
        made = simheap.objects[0]
        simheap.counting[0] = True
        try:
            self.board = esp32.build({"driver": "esp32", "connectors": n,
                                      "max_amps": options.get("max_amps", 32),
                                      "connector": pins}, cfg, store)
        finally:
            simheap.counting[0] = False
        # the firmware's: what runs on a board, less the simulated machine's objects
        drivers = _live() - before - (simheap.objects[0] - made)
        self.connectors = self.board.connectors
        self.rfid = self.board.rfid
        self.info = dict(self.board.info)
        self.info["chargePointModel"] = "ESP32 (simulated)"
        self.started = time.ticks_ms()
        self.card_until = None
        self.card_gone = None  # ticks the last card left the field
        self.scans_gone = 0  # the reader's empty scans counted then
        self.unlogged = 0  # frames left out of the simulator's log
        self.peak = 0  # largest live heap measured
        self.free = 0  # free heap at the last measurement
        self.rebooting = None
        self.writer = None
        self.cp = None
        self._reader = self._open_bus()
        # The simulation's own share of the live heap: its modules (the simulated machine,
        # the device models, this one), the models, this board and its bus, less the drivers
        # built on the models. Measured here, before the firmware's network thread runs and
        # allocates beside it. What a board would not hold; make bench reports it apart.
        self.simulation = _live() - _BEFORE - drivers
        self._builtins = simheap.share()  # what of it the built-ins' share holds already

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
            i = int(key) - 1
            m = self.models[i]
            c["pilot_state"] = c.pop("pilot")
            c["locked"] = None if m.lock is None else m.lock.bolt
            c["pilot_duty"] = m.ev.duty()
            c["meter_ok"] = self.connectors[i].meter.ok
            c["contact"] = m.contactor.closed
            c["open_ms"] = m.open_ms
            c["register_wh"] = m.meter.register()
        view["heap_free"] = self.free
        view["heap_peak"] = self.peak
        # the built-ins imported before this module and after the board was built (network,
        # ntptime, esp32) besides
        view["heap_simulation"] = self.simulation + _BUILTINS + simheap.share() - self._builtins
        view["safe_mode"] = cp.safe_mode is not None
        view["uptime_ms"] = time.ticks_diff(time.ticks_ms(), self.started)
        view["mqtt"] = getattr(cp.transport, "status", None)
        view["reader_failed"] = bool(getattr(self.rfid, "failed", False))
        view["unlogged_frames"] = self.unlogged
        return view

    async def _send(self, msg):
        self.writer.write(json.dumps(msg).encode() + b"\n")
        await self.writer.drain()

    def _world(self, sock):
        """The physical world's thread: changes applied to the models as they come, the
        state read when asked."""
        while True:
            line = sock.readline()
            if not line:
                return  # the simulator is gone: the bus task ends the process
            msg = json.loads(line)
            if msg.get("t") == "status":
                try:
                    text = json.dumps(self.state(True))
                except MemoryError:
                    text = '{"error":"MemoryError"}'  # the simulator shows what it knows
                sock.write(text)
                sock.write(b"\n")
                continue
            for key, w in msg["connectors"].items():
                self.models[int(key) - 1].apply(w)
            sock.write(b"ok\n")

    async def _apply(self, msg):
        t = msg["t"]
        if t == "world":  # applied by the world's thread already
            # the answer shows what the firmware made of it: its next readings see it
            await asyncio.sleep_ms(_SETTLE_MS)
            self.cp.loop()
        elif t == "rfid":
            if self.reader.card is not None:  # a card still there is taken away first
                self._remove_card()
            while (self.card_gone is not None
                   and self.reader.empty_scans - self.scans_gone < self.rfid.gone_polls
                   and time.ticks_diff(time.ticks_ms(), self.card_gone) < _GONE_MS):
                self.cp.loop()
                await asyncio.sleep_ms(10)
            self.reader.present(msg["uid"])
            self.card_until = time.ticks_add(time.ticks_ms(), _CARD_MS)
            start = time.ticks_ms()
            card = self.reader.card
            while card.state == 0 and time.ticks_diff(time.ticks_ms(), start) < _READ_MS:
                self.cp.loop()  # until the reader has taken the card (it scans every 50 ms)
                await asyncio.sleep_ms(10)
            self.cp.loop()

    def _block(self, msg):
        """A stuck firmware loop (busy, not sleeping: nothing of asyncio runs) while the EV
        leaves; timed on the models' side."""
        m = self.models[msg.get("connector", 1) - 1]

        def unplug(timer):
            w = dict(m.last)
            w["ev"] = "A"
            m.apply(w)
        machine.Timer(-1).init(mode=machine.Timer.ONE_SHOT, period=msg["unplug_after_ms"],
                               callback=unplug)
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < msg["ms"]:
            pass
        opened = -1 if m.open_ms is None else m.open_ms
        return {"loop_ms": time.ticks_diff(time.ticks_ms(), start), "open_ms": opened}

    def _open_bus(self):
        """The two connections to the simulator, opened (blocking) as the board is built: the
        world's (read by a thread from run() on) and the bus (an asyncio stream); returns its
        reader."""
        world = socket.socket()
        world.connect(socket.getaddrinfo(self.bus[0], self.bus[1])[0][-1])
        world.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        world.write(b'{"t":"physics"}\n')
        self._world_sock = world  # read by a thread run() starts, once the charge point is
        bus = socket.socket()
        bus.connect(socket.getaddrinfo(self.bus[0], self.bus[1])[0][-1])
        # answers must not wait behind the 50 ms state reports for a TCP acknowledgement
        bus.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        bus.setblocking(False)
        self.writer = asyncio.StreamWriter(bus, {})
        return self.writer  # MicroPython's Stream reads and writes

    async def run(self, cp):
        self.cp = cp
        frames = []

        def on_frame(direction, text):
            if len(frames) < _FRAMES:
                if len(text) > _FRAME_LOG:
                    text = "%s...(%d characters)" % (text[:_FRAME_LOG], len(text))
                frames.append((direction, text))
            else:
                self.unlogged += 1
        cp.engine.frame_listeners.append(on_frame)  # after the event log's journal
        reader = self._reader
        _thread.start_new_thread(self._world, (self._world_sock,))
        await self._send({"t": "hello", "state": self.state(True)})
        asyncio.create_task(self._report(frames))
        asyncio.create_task(self._physics())
        asyncio.create_task(self.board.run(cp))  # meters, RCD recovery, registers
        while True:
            line = await reader.readline()
            if not line:
                sys.exit(1)  # the simulator is gone: so is the power
            msg = json.loads(line)
            blocked = self._block(msg) if msg["t"] == "block" else None
            await self._apply(msg)
            state = self.state(True)
            if blocked is not None:
                state["blocked"] = blocked
            await self._send({"t": "ack", "id": msg.get("id"), "state": state})

    async def _physics(self):
        last = time.ticks_ms()
        while True:
            await asyncio.sleep_ms(_PHYSICS_MS)
            now = time.ticks_ms()
            seconds = time.ticks_diff(now, last) / 1000
            last = now
            for m in self.models:
                m.advance(seconds)
            if self.card_until is not None and time.ticks_diff(now, self.card_until) >= 0:
                self._remove_card()

    def _remove_card(self):
        self.reader.remove()
        self.card_until = None
        self.card_gone = time.ticks_ms()
        self.scans_gone = self.reader.empty_scans

    async def _report(self, frames):
        last = None
        while True:
            while frames:
                direction, text = frames.pop(0)
                await self._send({"t": "frame", "dir": direction, "text": text})
            if self.rebooting is not None:
                await self._send({"t": "reboot", "hard": self.rebooting})
                if self.rebooting:
                    # A hard reset takes RAM with it: no finally block runs, nothing more is
                    # flushed. The simulator kills this process on that message; until then
                    # the firmware stands still, as a board held in reset does.
                    time.sleep(_RESET_HOLD_S)
                raise SystemExit(REBOOT_EXIT)  # soft: as machine.soft_reset(), it unwinds
            state = self.state()
            brief = json.dumps(state["connectors"]) + str(state["online"])
            if brief != last:
                last = brief
                await self._send({"t": "state", "state": state})
            await asyncio.sleep_ms(50)


def build(options, cfg, store=None):
    return Board(options, cfg, store)
