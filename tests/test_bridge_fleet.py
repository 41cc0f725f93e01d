"""The fleet bridge scaled out and under faults: two instances (--shard 0/2, 1/2) and 20
chargers (two on the firmware twin, 18 light MQTT chargers) with one instance killed -9
mid-traffic and restarted; the Central System down mid-session. Nothing acknowledged is lost
(every frame the broker's spy saw reaches the Central System) and no charger ever has two
WebSockets at once (sampled every 10 ms, and from the Central System's session records)."""
import asyncio
import os

import pytest

from bridge_world import (T, bridge_world, cs_frames, in_shard,  # noqa: F401
                          make_bridge_world, open_sessions)
from test_e2e import TAG, online
from tools.csms_websocket import WebSocketCentralSystem

pytestmark = pytest.mark.usefixtures("twins")

TWINS = ("CP001", "CP002")
LIGHTS = tuple("CP-L%02d" % i for i in range(1, 19))
# As the issue asks: 30 s, three times the back-off's cap (BRIDGE_OUTAGE_S to change it).
OUTAGE_S = float(os.environ.get("BRIDGE_OUTAGE_S", 30))


class Sampler:
    """Counts, every `period` s, the chargers with more than one open WebSocket."""

    def __init__(self, cs, ids, period=0.01):
        self.cs, self.ids, self.period = cs, ids, period
        self.samples = 0
        self.duplicates = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self):
        while True:
            for cp_id in self.ids:
                if len(open_sessions(self.cs, cp_id)) > 1:
                    self.duplicates.append(cp_id)
            self.samples += 1
            await asyncio.sleep(self.period)

    async def stop(self):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def overlapping(cs, cp_id):
    """Sessions of `cp_id` that opened before the one before them closed."""
    sessions = cs.chargers[cp_id].sessions
    return [(a, b) for a, b in zip(sessions, sessions[1:]) if a.closed is None or
            b.opened < a.closed]


async def every_frame_delivered(world, cs, ids, timeout=T):
    """Wait until each frame the spy saw on <id>/in is among the Central System's; returns the
    number of duplicates (redelivered after the kill: at least once, never lost)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        missing = {cp_id: set(world.on_wire(cp_id, "in")) - set(cs_frames(cs, cp_id, "in"))
                   for cp_id in ids}
        missing = {k: v for k, v in missing.items() if v}
        if not missing:
            return sum(len(cs_frames(cs, i, "in")) - len(set(cs_frames(cs, i, "in")))
                       for i in ids)
        assert loop.time() < deadline, "frames lost: %r" % missing
        await asyncio.sleep(0.1)


async def traffic(charger, stop, period=0.1):
    n = 0
    while not stop.is_set():
        n += 1
        await charger.publish('[2,"%s-%d","Heartbeat",{}]' % (charger.cp_id, n))
        await asyncio.sleep(period)


def test_two_instances_twenty_chargers_one_killed_nothing_lost_never_two_websockets(
        bridge_world):
    world = bridge_world
    ids = TWINS + LIGHTS

    async def scenario():
        async with WebSocketCentralSystem() as cs:
            bridges = [world.bridge(cs.url, index, 2) for index in (0, 1)]
            await asyncio.gather(*(b.start() for b in bridges))
            sampler = Sampler(cs, ids)
            sims = [world.sim(cp_id) for cp_id in TWINS]
            await asyncio.gather(*(online(s, cs, s.cp_id) for s in sims))
            lights = [await world.light(cp_id).connect() for cp_id in LIGHTS]
            stop = asyncio.Event()
            drivers = [asyncio.ensure_future(traffic(c, stop)) for c in lights]
            await cs.wait_for(lambda: all(len(open_sessions(cs, i)) == 1 for i in ids), T)
            await asyncio.sleep(1)
            # the instance with more chargers goes, mid-traffic; the twins act meanwhile
            victim = max((0, 1), key=lambda k: len(in_shard(ids, k, 2)))
            bridges[victim].kill()
            await asyncio.gather(*(s.ask(cmd="rfid", uid=TAG) for s in sims))
            await asyncio.sleep(1)
            await bridges[victim].start()
            await cs.wait_for(lambda: all(len(open_sessions(cs, i)) == 1 for i in ids), T)
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*drivers)
            duplicates = await every_frame_delivered(world, cs, ids)
            await sampler.stop()
            assert sampler.duplicates == [] and sampler.samples > 100
            assert all(not overlapping(cs, i) for i in ids)
            assert all(len(open_sessions(cs, i)) == 1 for i in ids)
            for cp_id in in_shard(ids, 1 - victim, 2):  # the survivor's links never blinked
                assert len(cs.chargers[cp_id].sessions) == 1, cp_id
            print("%d samples; %d frames delivered twice (written before the kill, "
                  "unacknowledged, so sent again)" % (sampler.samples, duplicates))
    world.run(scenario)


def test_central_system_down_mid_session_frames_held_then_delivered(bridge_world):
    world = bridge_world

    async def scenario():
        cs = WebSocketCentralSystem()
        await cs.start()
        try:
            bridge = await world.bridge(cs.url).start()
            sim = world.sim()
            cp = await online(sim, cs)
            await cs.change_configuration("CP001", "MeterValueSampleInterval", "1")
            # The outage outlasts the firmware's 30 s wait for an answer: its own rules then
            # send the transaction's messages again after this interval (60 s by default)
            await cs.change_configuration("CP001", "TransactionMessageRetryInterval", "2")
            await sim.ask(cmd="load", connector=1, amps=16.0)
            await sim.ask(cmd="rfid", uid=TAG)
            await sim.ask(cmd="ev", connector=1, state="C")
            await cs.wait_for(lambda: cp.transactions and len(
                list(cp.transactions.values())[0].meter_values) >= 2, T)
            await cs.stop()
            loop = asyncio.get_running_loop()
            down_until = loop.time() + OUTAGE_S
            held = 0
            while loop.time() < down_until:
                held = max(held, (await bridge.metrics())["bridge_frames_held"])
                await asyncio.sleep(0.2)
            assert held >= 1  # MeterValues kept, unacknowledged
            before = len(cs_frames(cs, "CP001", "in"))
            await cs.start()  # same port, records kept
            await cs.wait_for(lambda: len(cs_frames(cs, "CP001", "in")) >= before + held, T)
            await sim.ask(cmd="rfid", uid=TAG)
            tx = await cs.wait_for(lambda: [t for t in cp.transactions.values() if t.stopped], T)
            assert tx[0].reason == "Local"
            await every_frame_delivered(world, cs, ("CP001",))
            metrics = await bridge.metrics()
            assert metrics["bridge_frames_dropped_total"] == 0
            assert metrics["bridge_websocket_reconnects_total"] >= 1
            s = await sim.ask(cmd="status")
            assert s["boots"] == 1 and s["online"]  # the charger never noticed
        finally:
            await cs.stop()
    world.run(scenario)
