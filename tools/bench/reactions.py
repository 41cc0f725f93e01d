"""Reaction times through the simulators' control sockets: card, RemoteStartTransaction,
unplug and RCD trip to the contactor moving, and unplug while the broker hangs.

What an interval holds (tools/sim.py, tools/simfs/board_sim.py): the clock starts when the
request is written to the control socket and stops when an answer shows the contactor
model's contacts in the new state. Every answer but `rfid`'s is sent after the simulator
has passed the request to the firmware's process, waited `_SETTLE_MS` (25 ms), run one
firmware loop step and a gc.collect(): `status` and the `ev`/`fault` requests cost a whole
control round trip, settle included (`control_round_trip`, measured alongside, in the same
states). A reaction within the settle shows in the request's own answer (`in_own_answer`
counts how often): the unplug and RCD figures are then that round trip, and only what
exceeds it could be the firmware's. Card and RemoteStart figures end at the first `status`
poll showing the contacts closed: they closed up to one round trip before the clock stopped.
While charging, the board reports state and frames on the simulator's bus every 50 ms; an
answer queued behind such a report can wait for its TCP ACK (Nagle, no TCP_NODELAY on the
board's side), 25-45 ms on loopback: the tail of every figure here, the round trip's too."""
import asyncio
import time

from tools.blackhole import Blackhole
from tools.bench.rig import CARDS, T, TAG, PhaseError, closed, percentiles, plugged, stopped

REACTIONS = ("tap_to_relay_closed", "remote_start_to_relay_closed", "unplug_to_relay_open",
             "rcd_to_relay_open", "unplug_to_relay_open_broker_hung")
# s between two taps on one reader: the simulator leaves a card in the field 300 ms and takes
# the next one only once the reader has scanned an empty field 4 times (every 50 ms); a tap
# sooner would wait for that inside the timed request
READER_GAP = 0.8
# reactions to a request that the request's own answer can show: how often it did
OWN_ANSWER = ("unplug_to_relay_open", "rcd_to_relay_open", "unplug_to_relay_open_broker_hung")


def opened(s):
    return not closed(s)


def unfaulted(s):
    return s["connectors"]["1"]["status"] != "Faulted"


async def poll(sim, predicate, timeout=T):
    """Ask `status` back to back until `predicate` holds; the time of that answer."""
    await sim.until(predicate, timeout, pause=0)
    return time.monotonic()


async def measure(sim, req, predicate, own=None):
    """ms from sending `req` until an answer shows `predicate` (its own answer first); counts
    in `own[0]` the times its own answer did."""
    t0 = time.monotonic()
    s = await sim.ask(**req)
    if predicate(s):
        t1 = time.monotonic()
        if own is not None:
            own[0] += 1
    else:
        t1 = await poll(sim, predicate)
    return (t1 - t0) * 1000


async def quiet(cs, cp):
    # The start's frames (StartTransaction, StatusNotification Charging) are through and
    # reported to the simulator: its bus has no TCP_NODELAY, so an answer written right
    # behind those reports can wait for their ACK (Nagle; up to ~40 ms on loopback).
    await cs.wait_for(lambda: cp.statuses.get(1, {}).get("status") == "Charging", T)
    await asyncio.sleep(0.1)


async def reactions(lab, reps):
    """`reps` repetitions of each reaction, frozen code: ({name: percentiles}, {name: [ms]}),
    with "control_round_trip" among them. Four simulators side by side on one broker and
    Central System: two share the card/RCD repetitions, one does RemoteStart/unplug, one
    runs behind a hanging broker."""
    out = {name: [] for name in REACTIONS + ("control_round_trip",)}
    own = {name: [0] for name in OWN_ANSWER}
    last_tap = {}

    async def tap(sim, card):
        wait = last_tap.get(sim.cp_id, 0) + READER_GAP - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        last_tap[sim.cp_id] = time.monotonic()
        return await measure(sim, {"cmd": "rfid", "uid": card}, closed)

    async def baseline(sim):
        out["control_round_trip"].append(await measure(sim, {"cmd": "status"}, lambda s: True))

    async def start(stage, cp_id, port=None):
        sim = stage.sim(cp_id, port=port)
        cp = await stage.online(sim)
        await sim.ask(cmd="load", connector=1, amps=16.0)
        return sim, cp

    async def card_and_rcd(stage, cp_id, n):
        # card (Authorize answered by the Central System) -> closed; RCD trip -> open. The
        # trip latches until the EV is unplugged; two cards take turns.
        sim, cp = await start(stage, cp_id)
        for i in range(n):
            await plugged(sim, "C")
            out["tap_to_relay_closed"].append(await tap(sim, CARDS[i % 2]))
            await quiet(stage.cs, cp)
            await baseline(sim)
            out["rcd_to_relay_open"].append(
                await measure(sim, {"cmd": "fault", "connector": 1, "kind": "rcd"}, opened,
                              own["rcd_to_relay_open"]))
            await sim.ask(cmd="fault", connector=1, kind="clear")
            await stage.cs.wait_for(lambda: stopped(cp) == i + 1, T)
            await sim.ask(cmd="ev", connector=1, state="A")
            await sim.until(unfaulted)

    async def remote_and_unplug(stage, n):
        # RemoteStartTransaction -> closed; unplug -> open (and the transaction ends)
        cs = stage.cs
        sim, cp = await start(stage, "CP-RS")
        for i in range(n):
            await plugged(sim, "C")
            t0 = time.monotonic()
            call = asyncio.ensure_future(cs.remote_start(sim.cp_id, TAG, connector_id=1,
                                                         timeout=T))
            t1 = await poll(sim, closed)
            out["remote_start_to_relay_closed"].append((t1 - t0) * 1000)
            if (await call)["status"] != "Accepted":
                raise PhaseError("RemoteStartTransaction not accepted")
            await quiet(cs, cp)
            await baseline(sim)
            out["unplug_to_relay_open"].append(
                await measure(sim, {"cmd": "ev", "connector": 1, "state": "A"}, opened,
                              own["unplug_to_relay_open"]))
            await cs.wait_for(lambda: stopped(cp) == i + 1, T)

    async def hung(stage, n):
        # The broker hangs: a proxy that swallows everything. The transaction is started
        # online and outlives unplugging (StopTransactionOnEVSideDisconnect false), so the EV
        # can be unplugged and plugged in again n times with nobody there to authorise.
        hole = await Blackhole(stage.broker.port).start()
        try:
            sim, cp = await start(stage, "CP-HUNG", hole.port)
            ans = await stage.cs.change_configuration(
                sim.cp_id, "StopTransactionOnEVSideDisconnect", "false")
            if ans["status"] != "Accepted":
                raise PhaseError("StopTransactionOnEVSideDisconnect: %s" % ans)
            await plugged(sim, "C")
            await tap(sim, TAG)
            await quiet(stage.cs, cp)
            hole.swallow()
            await sim.until(lambda s: not s["online"])
            deadline = time.monotonic() + T
            while not hole.links:  # reconnecting: TCP accepted, TLS never answered
                if time.monotonic() > deadline:
                    raise PhaseError("the firmware did not reconnect to the proxy")
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            for _ in range(n):
                await plugged(sim, "C")
                await poll(sim, closed, 10)
                await asyncio.sleep(0.1)  # the state report to the simulator goes first
                out["unplug_to_relay_open_broker_hung"].append(
                    await measure(sim, {"cmd": "ev", "connector": 1, "state": "A"}, opened,
                                  own["unplug_to_relay_open_broker_hung"]))
            if (await sim.ask(cmd="status"))["online"]:
                raise PhaseError("the firmware got through the hanging proxy")
        finally:
            hole.close()

    async with lab.stage() as stage:
        await asyncio.gather(card_and_rcd(stage, "CP-RT1", reps - reps // 2),
                             card_and_rcd(stage, "CP-RT2", reps // 2),
                             remote_and_unplug(stage, reps), hung(stage, reps))
    figures = {name: percentiles(v) for name, v in out.items()}
    for name, count in own.items():
        figures[name]["in_own_answer"] = count[0]
    return figures, out
