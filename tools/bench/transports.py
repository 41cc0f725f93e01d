"""The transports side by side: the same frozen charger (-X heapsize=HEAP, 1 connector) over
MQTT with mutual TLS through Mosquitto, over a WebSocket (security profile 0, ws://) and over
a WebSocket with TLS and Basic auth (profile 2, wss://), each against the development Central
System (tools.csms, tools.csms_websocket).

For each: the .mpy bytes of the code only that transport loads, the live heap idle (online,
booted, median of the samples over 2 s) and its peak through a short RFID session with
MeterValues every second, and the request -> answer time of GetConfiguration(HeartbeatInterval)
as the Central System sees it (from writing the CALL to reading the CALLRESULT)."""
import asyncio
import os
import statistics
import time

from tools import twin
from tools.bench import sizes
from tools.bench.rig import (CARDS, HEAP, T, TAG, PhaseError, closed, heap_total, log,
                             percentiles, spawn)
from tools.csms_websocket import WebSocketCentralSystem, server_tls_context
from tools.simclient import Simulator

TRANSPORTS = ("mqtt", "websocket", "websocket_tls")
# the modules only a charger on that transport imports (chargepoint.app picks them by
# config.json's "transport"); umqtt.simple comes from micropython-lib, frozen with ours
CODE = {
    "mqtt": ("chargepoint/transport/mqtt.py", "umqtt/simple.py"),
    "websocket": ("chargepoint/transport/websocket.py", "chargepoint/model/connection.py",
                  "chargepoint/links.py"),
}
CODE["websocket_tls"] = CODE["websocket"]
CONNECTORS = 2
KEY = "00112233445566778899AABBCCDDEEFF"  # the profile 2 charger's AuthorizationKey


def empty():
    none = {"p50": None, "p99": None, "max": None, "n": 0}
    return {name: {"mpy_bytes": None, "heap_idle_bytes": None, "heap_peak_bytes": None,
                   "round_trip_ms": dict(none), "message_gap_ms": dict(none),
                   "message_gap_at_cs_ms": dict(none),
                   "boot_to_ready_ms": None, "backlog_100_drain_s": None}
            for name in TRANSPORTS}


class Timeline:
    """Every frame of one charger as the Central System writes and reads it, with
    time.monotonic(): (t, direction "in"/"out", message type 2/3/4, action of a CALL)."""

    def __init__(self, cs, cp_id):
        self.frames = []
        self.cp_id = cp_id
        cs.frame_listeners.append(self._frame)

    def _frame(self, cp_id, frame):
        if cp_id == self.cp_id:
            m = frame.message() or [None, None, None]
            self.frames.append((time.monotonic(), frame.direction, m[0],
                                m[2] if m[0] == 2 else None))

    def gaps_ms(self, start=0, end=None):
        """ms from each answer the Central System wrote to the charger's next CALL, when that
        CALL is the next frame from the charger: the charger had it queued (the boot)."""
        found = []
        frames = self.frames[start:end]
        for i, (t, direction, kind, _) in enumerate(frames):
            if direction == "out" and kind == 3:
                nxt = next((f for f in frames[i + 1:] if f[1] == "in"), None)
                if nxt is not None and nxt[2] == 2:
                    found.append((nxt[0] - t) * 1000)
        return found

    def boot_windows(self, statuses):
        """For every boot: (time the BootNotification's answer was written, time the answer
        to the `statuses`-th StatusNotification after it was written)."""
        out = []
        frames = self.frames
        for i, f in enumerate(frames):
            if f[3] == "BootNotification":
                t0 = next(g[0] for g in frames[i:] if g[1] == "out" and g[2] == 3)
                out.append((t0, t0 + self.boot_to_ready_ms(statuses, i) / 1000))
        return out

    def boot_to_ready_ms(self, statuses, booted=None):
        """From the BootNotification's answer written to the answer to the `statuses`-th
        StatusNotification after it written (the first boot, or the one at frame `booted`)."""
        frames = self.frames
        if booted is None:
            booted = next(i for i, f in enumerate(frames) if f[3] == "BootNotification")
        t0 = next(f[0] for f in frames[booted:] if f[1] == "out" and f[2] == 3)
        seen = 0
        for i, f in enumerate(frames[booted:]):
            if f[3] == "StatusNotification":
                seen += 1
                if seen == statuses:
                    answer = next(g[0] for g in frames[booted + i:] if g[1] == "out" and
                                  g[2] == 3)
                    return (answer - t0) * 1000
        return None


class Tap:
    """A TCP proxy in front of the broker or the Central System that notes when bytes pass
    it, either way: the charger's socket as the wire sees it. `chunks`: (time.monotonic(),
    "down" to the charger | "up" from it, bytes). Either side ending ends both."""

    def __init__(self, port):
        self.target = port
        self.chunks = []
        self.server = None
        self.port = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _client(self, reader, writer):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        async def pipe(r, w, direction):
            try:
                while True:
                    data = await r.read(65536)
                    if not data:
                        break
                    self.chunks.append((time.monotonic(), direction, len(data)))
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
            finally:
                w.close()
        await asyncio.gather(pipe(reader, up_w, "up"), pipe(up_r, writer, "down"),
                             return_exceptions=True)

    def gaps_ms(self, start, end, smallest):
        """ms from each frame reaching the charger to the next frame it sends, when no other
        frame reached it in between, for chunks between `start` and `end`; a chunk under
        `smallest` bytes is no frame (a PUBACK or a ping in its TLS record)."""
        frames = [c for c in self.chunks if start <= c[0] <= end and c[2] >= smallest]
        return [(b[0] - a[0]) * 1000 for a, b in zip(frames, frames[1:])
                if a[1] == "down" and b[1] == "up"]


def mpy_bytes(mpy_dir):
    """{transport: .mpy bytes of CODE[transport]} from the folder sizes.mpy_bytes compiled
    lib/ into, umqtt.simple compiled here from the MicroPython source tree."""
    found = {}
    source = os.path.join(twin.source()[0], "lib", "micropython-lib", "micropython",
                          "umqtt.simple", "umqtt", "simple.py")
    umqtt = sizes.compile_one(source, os.path.join(mpy_dir, "umqtt", "simple.mpy"))
    for name, files in CODE.items():
        total = 0
        for path in files:
            if path == "umqtt/simple.py":
                total += umqtt
                continue
            package, module = os.path.split(path[:-3])
            total += os.path.getsize(os.path.join(mpy_dir, package.replace("/", "."),
                                                  module + ".mpy"))
        found[name] = total
    return found


async def _measure(sim, cs, timeline, tap, smallest, total, session_s, reps, boots):
    """Online -> the gaps of `boots` boots (a Soft reset between two), idle heap, a
    session's peak, `reps` GetConfiguration round trips."""
    await cs.wait_for(lambda: sim.cp_id in cs.chargers and cs.chargers[sim.cp_id].boots, T)
    cp = cs.chargers[sim.cp_id]
    await sim.until(lambda s: s["online"], T)
    for n in range(2, boots + 1):
        await asyncio.sleep(1)
        if (await cs.reset(sim.cp_id, "Soft", timeout=T))["status"] != "Accepted":
            raise PhaseError("Reset refused")
        await sim.until(lambda s: s["boots"] == n and s["online"], T)
    await asyncio.sleep(2)  # the boot's garbage collected, its queue drained
    gaps = []
    for start, end in timeline.boot_windows(1 + CONNECTORS):
        gaps += tap.gaps_ms(start, end + 0.005, smallest)
    boot = {"message_gap_ms": gaps, "message_gap_at_cs_ms": timeline.gaps_ms(),
            "boot_to_ready_ms": timeline.boot_to_ready_ms(1 + CONNECTORS)}
    idle = []
    for _ in range(5):
        idle.append(total - (await sim.ask(cmd="status"))["heap_free"])
        await asyncio.sleep(0.4)
    rtt = []
    for _ in range(reps):
        t0 = time.monotonic()
        conf = await cs.get_configuration(sim.cp_id, ["HeartbeatInterval"], timeout=T)
        rtt.append((time.monotonic() - t0) * 1000)
        if not conf.get("configurationKey"):
            raise PhaseError("GetConfiguration: %s" % conf)
    ans = await cs.change_configuration(sim.cp_id, "MeterValueSampleInterval", "1")
    if ans["status"] != "Accepted":
        raise PhaseError("MeterValueSampleInterval=1: %s" % ans)
    await sim.ask(cmd="load", connector=1, amps=16.0)
    await sim.ask(cmd="ev", connector=1, state="C")
    await sim.ask(cmd="rfid", uid=TAG)
    await sim.until(closed)
    await cs.wait_for(lambda: cp.transactions, T)
    peak = 0
    end = time.monotonic() + session_s
    while time.monotonic() < end:
        s = await sim.ask(cmd="status")
        peak = max(peak, total - s["heap_free"])
        await asyncio.sleep(0.5)
    await sim.ask(cmd="ev", connector=1, state="A")
    await cs.wait_for(lambda: any(t.stopped for t in cp.transactions.values()), T)
    s = await sim.ask(cmd="status")
    if s["boots"] != boots:
        raise PhaseError("the firmware restarted (%d boots, %d asked)" % (s["boots"], boots))
    return {"message_gap_ms": percentiles(boot["message_gap_ms"]),
            "message_gap_at_cs_ms": percentiles(boot["message_gap_at_cs_ms"]),
            "boot_to_ready_ms": boot["boot_to_ready_ms"],
            "heap_idle_bytes": int(statistics.median(idle)),
            "heap_peak_bytes": max(peak, s["heap_peak"]), "round_trip_ms": percentiles(rtt)}


BACKLOG = 100  # transaction messages queued during the outage
TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")


async def backlog(sim, cs, timeline, cut, restore):
    """Both connectors charging, MeterValues every second and clock-aligned every second
    (4 a second); the link cut (`cut()`) until BACKLOG transaction messages are queued on
    flash; then `restore()`: seconds from the first frame of the charger after the outage to
    the Central System's answer to the last queued message, scaled to BACKLOG messages (the
    sampling adds a few more while the queue is counted)."""
    cp = cs.chargers[sim.cp_id]
    for key in ("MeterValueSampleInterval", "ClockAlignedDataInterval"):
        ans = await cs.change_configuration(sim.cp_id, key, "1")
        if ans["status"] != "Accepted":
            raise PhaseError("%s=1: %s" % (key, ans))
    for k in range(1, CONNECTORS + 1):
        await sim.ask(cmd="load", connector=k, amps=16.0)
        await sim.ask(cmd="ev", connector=k, state="C")
        ans = await cs.remote_start(sim.cp_id, TAG, connector_id=k, timeout=T)
        if ans["status"] != "Accepted":
            raise PhaseError("RemoteStartTransaction: %s" % ans)
        await sim.until(lambda s: s["connectors"][str(k)]["transaction_id"] is not None)
    await cut()
    await sim.until(lambda s: not s["online"], T)
    s = await sim.until(lambda s: (s["queued"] or 0) >= BACKLOG, 120)
    queued = s["queued"]
    mark = len(timeline.frames)
    await restore()
    await sim.until(lambda s: s["online"] and s["queued"] == 0, 120)
    frames = timeline.frames[mark:]
    first = next(f[0] for f in frames if f[1] == "in")
    answered, n = None, 0
    for i, f in enumerate(frames):  # each queued message is answered before the next goes
        if f[1] == "in" and f[3] in TX_ACTIONS:
            n += 1
            if n == queued:
                answered = next(g[0] for g in frames[i:] if g[1] == "out" and g[2] == 3)
                break
    for k in range(1, CONNECTORS + 1):
        await sim.ask(cmd="ev", connector=k, state="A")
    await cs.wait_for(lambda: sum(1 for t in cp.transactions.values() if t.stopped) >=
                      CONNECTORS, T)
    if answered is None:
        raise PhaseError("backlog: %d of %d queued messages seen" % (n, queued))
    return round((answered - first) * BACKLOG / queued, 3)  # (a few more than BACKLOG queue)


async def _one(lab, name, session_s, reps, drain, boots):
    total = heap_total(twin.ensure(), HEAP)
    state = lab.folder("transport-" + name)
    common = dict(state=state, code="frozen", heap=HEAP, connectors=CONNECTORS, timeout=T,
                  failure=PhaseError, spawn=spawn)
    if name == "mqtt":
        async with lab.stage() as stage, Tap(stage.broker.port) as tap:
            sim = stage.sim(connectors=CONNECTORS, port=tap.port)
            timeline = Timeline(stage.cs, sim.cp_id)
            await sim.start()
            # a TLS record under 48 bytes is a PUBACK, a PINGREQ or a PINGRESP
            out = await _measure(sim, stage.cs, timeline, tap, 48, total, session_s, reps,
                                 boots)
            if drain:
                async def cut():
                    stage.broker.stop()

                async def restore():
                    stage.broker.start()
                out["backlog_100_drain_s"] = await backlog(sim, stage.cs, timeline, cut,
                                                           restore)
            return out
    pki = lab.pki
    if name == "websocket":
        cs = WebSocketCentralSystem(authorized=CARDS)
        flags = {}
    else:
        cert, key = pki.server()
        cs = WebSocketCentralSystem(ssl=server_tls_context(cert, key), keys={"CP001": KEY},
                                    authorized=CARDS)
        flags = dict(security_profile=2, auth_key=KEY, ca=pki.ca)
    async with cs, Tap(cs.port) as tap:
        host = "localhost" if cs.ssl is not None else "127.0.0.1"
        url = "%s://%s:%d/ocpp" % ("wss" if cs.ssl is not None else "ws", host, tap.port)
        sim = Simulator("CP001", transport="websocket", url=url, **flags, **common)
        timeline = Timeline(cs, sim.cp_id)
        try:
            await sim.start()
            out = await _measure(sim, cs, timeline, tap, 1, total, session_s, reps, boots)
            if drain:
                out["backlog_100_drain_s"] = await backlog(sim, cs, timeline, cs.stop, cs.start)
            return out
        finally:
            await sim.terminate()
            if not sim.healthy():
                raise PhaseError("CP001 firmware log: %s" % sim.bad_log(700))


async def transports(lab, mpy_dir, session_s, reps, drains=TRANSPORTS, boots=1):
    """{transport: figures} for TRANSPORTS, one after the other (the round trips are wall
    clock); a transport that fails keeps its None figures and raises at the end. The backlog
    (a 25 s outage) is measured for the transports in `drains`."""
    out = empty()
    for name, size in mpy_bytes(mpy_dir).items():
        out[name]["mpy_bytes"] = size
    failed = []
    for name in TRANSPORTS:
        try:
            out[name].update(await _one(lab, name, session_s, reps, name in drains, boots))
            log("transport %s: %s" % (name, out[name]))
        except Exception as e:  # noqa: BLE001 - the others' figures still count
            failed.append("%s: %s: %s" % (name, type(e).__name__, e))
    return out, failed
