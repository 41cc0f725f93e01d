"""A fault campaign with figures (`make soak`; a short run is in the tests): simulated chargers
on the device twin at -X heapsize=110000, Mosquitto and the development Central System, and
faults at random moments of random sessions:

- power cuts: kill -9 of a charger's simulator, started again on the same flash (mid-session,
  idle, right after a card);
- the broker restarted, the broker hung (SIGSTOP for seconds, then SIGCONT), the Central
  System gone for a while (its MQTT client stopped: the broker keeps what comes), and long
  outages (the broker down while sessions go on, so that chargers queue transactions);
- Central System bursts: hostile frames (garbage, wrong types, huge, deep, unknown actions)
  and real requests, published straight to the charger's topic; and first, during a session,
  a stream of --hostile of them (10 000): the session must complete without a restart, and
  the heap's peak over it is reported (hostile_stream).

At the end every fault is lifted and the chargers drain their queues; then the Central
System's record is compared with what the campaign did, and it reports (one JSON object,
last line): cuts, sessions, transactions_started (the relay seen closed), delivered (at the
Central System, once each), lost (started, never delivered: must be 0), duplicated (one
session delivered as two transactions: must be 0), unfinished (delivered without their stop),
register_backwards (a meterStart below the meterStop before it on that connector, or a stop
below its start: must be never), start_stamps_backwards (a StartTransaction's timestamp
before the one delivered before it by that charger: stamps taken while the clock was unknown
are estimates, never the delivery time, never going backwards; must be never),
safe_mode_entries, hostile_frames, memory_errors (in the firmware logs: must be 0), restarts
(a firmware that crashed), seconds; of the long outages, outage_queued_max (the most
transaction messages one charger held on flash when the link came back) and
outage_transactions_max (the most transactions the chargers started in one); the record
behind them in record.json beside the chargers' state.

    python3 -m tools.soak [--cuts 500] [--chargers 3] [--seed 1] [--outage-sessions 40]
"""
import argparse
import asyncio
import datetime
import json
import os
import random
import signal
import sys
import tempfile
import time

from tools.bench.rig import TAG, Lab
from tools.csms import utc_now

HEAP = 110000
T = 30  # seconds any single expectation may take

HOSTILE = (
    "", "garbage", "[", "[2]", "[2, 5, 6, 7]", '[2, "h1", "Reset"]', '[3, "nobody", {}]',
    '[2, "h2", "NoSuchAction", {}]', '[2, "h3", "ChangeConfiguration", {"key": 5}]',
    '[2, "h4", "GetConfiguration", {"key": "HeartbeatInterval"}]',
    '[2, "h5", "RemoteStopTransaction", {"transactionId": "x"}]',
    '[2, "h6", "DataTransfer", ' + "[" * 2000 + "]" * 2000 + "]",
    '[2, "h7", "DataTransfer", {"vendorId": "' + "v" * 6000 + '"}]',
    '[2, "' + "i" * 60 + '", "ClearCache", {}]', "\u00ff\u00fe" * 10, "null", "[4]",
)


def _when(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _record(t):
    """A Central System's transaction as JSON, without its MeterValues."""
    return dict((k, v) for k, v in vars(t).items() if k != "meter_values")


class Campaign:
    def __init__(self, args):
        self.a = args
        self.rnd = random.Random(args.seed)
        self.fig = {"cuts": 0, "sessions": 0, "transactions_started": 0, "hostile_frames": 0,
                    "broker_restarts": 0, "broker_hangs": 0, "csms_outages": 0,
                    "long_outages": 0, "outage_queued_max": 0, "outage_transactions_max": 0,
                    "safe_mode_entries": 0}
        self.safe_seen = set()
        self.cuts_left = args.cuts
        self.started = []  # each session the relay was seen closed in: charger, time, register
        self.in_outage = False  # a long outage goes on: sessions go on through it

    def log(self, *parts):
        if not self.a.quiet:
            print("soak:", *parts, file=sys.stderr, flush=True)

    # -- a charger's life ---------------------------------------------------------------

    async def cut(self, sim):
        self.fig["cuts"] += 1
        self.cuts_left -= 1
        sim.power_cut()
        await asyncio.sleep(self.rnd.uniform(0, 0.5))
        await sim.start()
        s = await sim.until(lambda s: s["firmware"] == "running", T, running=False)
        if s.get("safe_mode") and sim.cp_id not in self.safe_seen:
            self.safe_seen.add(sim.cp_id)
            self.fig["safe_mode_entries"] += 1

    async def session(self, sim):
        """A card, a plug, some charging; it ends by the card, by the unplug, or by a power
        cut at a random moment (cut before the relay closed now and then)."""
        self.fig["sessions"] += 1
        await sim.ask(cmd="load", connector=1, amps=16.0)
        await sim.ask(cmd="rfid", uid=TAG)
        if self.cuts_left > 0 and self.rnd.random() < 0.08:
            await asyncio.sleep(self.rnd.uniform(0, 0.3))
            await self.cut(sim)  # right after the card
            await sim.ask(cmd="ev", connector=1, state="A")
            return
        await sim.ask(cmd="ev", connector=1, state="C")
        try:
            await sim.until(lambda s: s["connectors"]["1"]["relay"], 10)
        except Exception:  # noqa: BLE001 - refused (a card offline, a fault): no session
            await sim.ask(cmd="ev", connector=1, state="A")
            return
        self.fig["transactions_started"] += 1
        self.started.append(await self._started(sim))
        await asyncio.sleep(self.rnd.uniform(0.5, 4))
        end = self.rnd.random()
        if self.cuts_left > 0 and end < 0.35:
            await self.cut(sim)  # mid-session
            await sim.ask(cmd="ev", connector=1, state="A")
        elif end < 0.7:
            await sim.ask(cmd="rfid", uid=TAG)
            await sim.until(lambda s: not s["connectors"]["1"]["relay"], T)
            await sim.ask(cmd="ev", connector=1, state="A")
        else:
            await sim.ask(cmd="ev", connector=1, state="A")
        await sim.until(lambda s: s["connectors"]["1"]["id_tag"] is None, T)

    async def _started(self, sim):
        s = await sim.ask(cmd="status")
        c = s["connectors"]["1"]
        return {"cp": sim.cp_id, "at": utc_now(), "boots": s["boots"], "online": s["online"],
                "transaction_id": c["transaction_id"], "wh": c["energy_wh"]}

    async def charger(self, sim, stop):
        while not stop.is_set():
            r = self.rnd.random()
            if self.cuts_left > 0 and r < 0.15:
                await self.cut(sim)  # idle
            else:
                await self.session(sim)
            await asyncio.sleep(self.rnd.uniform(0.1, 1.0))
            if self.cuts_left <= 0 and not self.in_outage:
                stop.set()

    # -- the network's life ----------------------------------------------------------------

    async def chaos(self, stage, sims, stop):
        broker, cs = stage.broker, stage.cs
        outages = self.a.long_outages
        while not stop.is_set():
            await asyncio.sleep(self.rnd.uniform(3, 8))
            if stop.is_set():
                break
            r = self.rnd.random()
            if outages and r < 0.12:
                # a long outage: sessions go on, transactions queue on the chargers
                outages -= 1
                self.fig["long_outages"] += 1
                broker.stop()
                self.log("long outage: broker down")
                started = self.fig["transactions_started"]
                self.in_outage = True  # the cuts running out does not end the campaign now
                await asyncio.sleep(self.a.outage_s)
                self.in_outage = False
                # what waited on the chargers' flash when the link came back
                queued = []
                for sim in sims:
                    try:
                        queued.append((await sim.ask(cmd="status")).get("queued") or 0)
                    except Exception:  # noqa: BLE001 - a charger being cut just now
                        pass
                fig = self.fig
                fig["outage_queued_max"] = max([fig["outage_queued_max"]] + queued)
                fig["outage_transactions_max"] = max(fig["outage_transactions_max"],
                                                     fig["transactions_started"] - started)
                broker.start()
            elif r < 0.35:
                self.fig["broker_restarts"] += 1
                broker.stop()
                await asyncio.sleep(self.rnd.uniform(0.5, 3))
                broker.start()
            elif r < 0.5:
                self.fig["broker_hangs"] += 1
                pid = broker._proc.pid
                os.kill(pid, signal.SIGSTOP)
                await asyncio.sleep(self.rnd.uniform(1, 6))
                os.kill(pid, signal.SIGCONT)
            elif r < 0.65:
                self.fig["csms_outages"] += 1
                await cs.stop()
                await asyncio.sleep(self.rnd.uniform(2, 10))
                await cs.start()
            else:
                sim = self.rnd.choice(sims)
                for _ in range(self.rnd.randrange(5, 30)):
                    text = self.rnd.choice(HOSTILE)
                    if cs.connected:
                        try:
                            await asyncio.wait_for(cs._transmit(sim.cp_id, text), 5)
                            self.fig["hostile_frames"] += 1
                        except Exception:  # noqa: BLE001 - the broker went meanwhile
                            break

    # -- a hostile stream during a session ----------------------------------------------------

    async def hostile_stream(self, stage, sim):
        """`--hostile` frames from the Central System's side while a session runs, as fast as
        the broker takes them: the session completes, the firmware never restarts; the
        figures: frames sent, the heap's peak (live, after collections) during the stream."""
        cs = stage.cs
        await sim.ask(cmd="load", connector=1, amps=16.0)
        await sim.ask(cmd="rfid", uid=TAG)
        await sim.ask(cmd="ev", connector=1, state="C")
        await sim.until(lambda s: s["connectors"]["1"]["relay"], T)
        self.fig["transactions_started"] += 1
        self.fig["sessions"] += 1

        def taken(s):  # frames the firmware took: whole, or the head of one over 4 KB
            m = s["mqtt"] or {}
            return sum(m.get(k, 0) for k in ("received", "oversize", "dropped"))

        before = await sim.ask(cmd="status")
        t0 = time.monotonic()
        peak = 0
        for i in range(self.a.hostile):
            text = self.rnd.choice(HOSTILE)
            if text.startswith("[2, \"h"):  # a CALL: an id of its own each time
                text = text.replace('"h', '"s%d-' % i, 1)
            await cs._transmit(sim.cp_id, text)
            self.fig["hostile_frames"] += 1
            if i % 200 == 199:
                # at most ~400 waiting at the broker: Mosquitto drops what passes its queue
                # for a client (1000 messages by default), and so would AWS IoT's
                s = await sim.until(lambda s: taken(s) - taken(before) >= i - 400, 300)
                peak = max(peak, s["heap_peak"] or 0)
        s = await sim.until(lambda s: taken(s) - taken(before) >= self.a.hostile * 0.98, 300)
        self.fig["hostile_stream_s"] = round(time.monotonic() - t0, 1)
        peak = max(peak, s["heap_peak"] or 0)
        await sim.ask(cmd="rfid", uid=TAG)
        await sim.until(lambda s: not s["connectors"]["1"]["relay"], T)
        await sim.ask(cmd="ev", connector=1, state="A")
        s = await sim.until(lambda s: s["connectors"]["1"]["id_tag"] is None, T)
        self.fig["hostile_stream"] = {
            "frames": self.a.hostile, "heap_peak_bytes": peak, "seconds": self.fig.pop(
                "hostile_stream_s"), "refused_redelivered": s["mqtt"]["refused"]
            - before["mqtt"]["refused"], "restarts": s["restarts"], "boots": s["boots"]}

    # -- the count ---------------------------------------------------------------------------

    async def drain(self, stage, sims):
        """Every fault lifted; every charger online with nothing queued, its sessions ended."""
        if not stage.broker.running:
            stage.broker.start()
        if not stage.cs.connected:
            await stage.cs.start()
        for sim in sims:
            await sim.ask(cmd="ev", connector=1, state="A")
        deadline = time.monotonic() + self.a.drain_s
        for sim in sims:
            await sim.until(lambda s: s["online"] and s["queued"] == 0
                            and s["connectors"]["1"]["id_tag"] is None,
                            max(10, deadline - time.monotonic()))
        await asyncio.sleep(2)

    def count(self, stage, sims):
        fig = self.fig
        delivered = duplicated = unfinished = backwards = stamps_backwards = 0
        seen = {}
        twins = []  # what each duplicate was made of
        for sim in sims:
            cp = stage.cs.chargers.get(sim.cp_id)
            txs = sorted(cp.transactions.values(), key=lambda t: t.id) if cp else []
            last_stop = None
            last_start = None
            for t in txs:
                # in the order they were delivered (the queue's), each started no earlier
                # than the one before: never the delivery time, never an estimate behind
                at = _when(t.started_at)
                if last_start is not None and at < last_start:
                    stamps_backwards += 1
                last_start = at
                key = (t.connector_id, t.id_tag, t.meter_start, t.started_at)
                twin = seen.get((sim.cp_id,) + key)
                # a session under a second and a watt-hour starts as the one before it did:
                # two sessions when that one had stopped by then, else one delivered twice
                if twin is not None and not (twin.stopped and t.stopped and twin.meter_stop
                                             <= t.meter_start and _when(twin.stopped_at) <= at):
                    duplicated += 1
                    twins.append(self._explain(cp, key))
                    continue
                seen[(sim.cp_id,) + key] = t
                delivered += 1
                if not t.stopped:
                    unfinished += 1
                elif t.meter_stop < t.meter_start:
                    backwards += 1
                if last_stop is not None and t.meter_start < last_stop:
                    backwards += 1
                if t.stopped:
                    last_stop = t.meter_stop
        fig.update(delivered=delivered, duplicated=duplicated, unfinished=unfinished,
                   register_backwards=backwards, start_stamps_backwards=stamps_backwards,
                   lost=max(0, fig["transactions_started"] - delivered),
                   memory_errors=sum(s.firmware_log().count("MemoryError") for s in sims))
        if twins:
            fig["duplicates"] = twins
        return fig

    @staticmethod
    def _explain(cp, key):
        """A duplicate's transactions and the StartTransaction frames that made them (their
        message ids name the boot that sent them: "boot.n"), to tell a message delivered twice
        from two sessions that only look alike."""
        conn, tag, wh, at = key
        txs = [_record(t) for t in cp.transactions.values()
               if (t.connector_id, t.id_tag, t.meter_start, t.started_at) == key]
        frames = []
        for f in cp.frames:
            m = f.message() if f.direction == "in" and '"StartTransaction"' in f.text else None
            if m and len(m) == 4 and isinstance(m[3], dict) and m[3].get("timestamp") == at \
                    and m[3].get("meterStart") == wh:
                frames.append({"time": f.time, "id": m[1]})
        return {"cp": cp.id, "transactions": txs, "start_frames": frames}

    def _keep_record(self, root, stage, sims):
        """`record.json` beside the chargers' state: the sessions started as the campaign saw
        them and the transactions as the Central System has them, to trace any loss."""
        record = {"started": self.started, "transactions": {}}
        for sim in sims:
            cp = stage.cs.chargers.get(sim.cp_id)
            record["transactions"][sim.cp_id] = [
                _record(t) for t in (cp.transactions.values() if cp else ())]
        with open(os.path.join(root, "record.json"), "w") as f:
            json.dump(record, f, indent=1)

    async def run(self):
        t0 = time.monotonic()
        root = tempfile.mkdtemp(prefix="soak-")
        lab = Lab(root)
        try:
            async with lab.stage() as stage:
                sims = [stage.sim(cp_id="SOAK%02d" % (i + 1), heap=HEAP)
                        for i in range(self.a.chargers)]
                for sim in sims:
                    await stage.online(sim)
                    await stage.cs.change_configuration(sim.cp_id, "AllowOfflineTxForUnknownId",
                                                        "true")
                    await stage.cs.change_configuration(sim.cp_id, "MeterValueSampleInterval",
                                                        "2")
                if self.a.hostile:
                    await self.hostile_stream(stage, sims[0])
                stop = asyncio.Event()
                tasks = [asyncio.ensure_future(self.charger(sim, stop)) for sim in sims]
                chaos = asyncio.ensure_future(self.chaos(stage, sims, stop))
                try:
                    await asyncio.gather(*tasks)
                finally:
                    stop.set()
                    await asyncio.gather(chaos, return_exceptions=True)
                await self.drain(stage, sims)
                restarts = 0
                for sim in sims:
                    restarts += (await sim.ask(cmd="status"))["restarts"]
                fig = self.count(stage, sims)
                fig["restarts"] = restarts
                self._keep_record(root, stage, sims)
                stage.sims = []  # their logs show what the campaign did to them on purpose
        finally:
            lab.close()
        fig["seconds"] = round(time.monotonic() - t0, 1)
        fig["state"] = root
        return fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuts", type=int, default=500, help="power cuts in all")
    p.add_argument("--chargers", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--long-outages", type=int, default=2,
                   help="times the broker stays down for --outage-s while sessions go on")
    p.add_argument("--outage-s", type=float, default=240.0,
                   help="long enough for 100+ transactions of 3 chargers to queue")
    p.add_argument("--drain-s", type=float, default=600.0)
    p.add_argument("--hostile", type=int, default=10000,
                   help="hostile frames streamed during a session before the campaign")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    fig = asyncio.run(Campaign(args).run())
    print(json.dumps(fig))
    bad = (fig["lost"] or fig["duplicated"] or fig["register_backwards"]
           or fig["start_stamps_backwards"] or fig["memory_errors"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
