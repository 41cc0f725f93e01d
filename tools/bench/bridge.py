"""The fleet bridge (tools/bridge) under load: light MQTT chargers (tools/lightcharger.py) ->
Mosquitto -> one or two bridge processes -> a minimal OCPP-J sink on websockets that answers
every CALL at once, all on loopback. Offered rates go up step by step; the sustained rate is
the highest step at which every frame arrived both ways (0 loss), the offered rate was met
(95 %) and the p99 latency stayed under a second (nothing piling up). Latency: from just
before the charger's PUBLISH to the sink's receipt of the WebSocket message (both in this
process: one monotonic clock). CPU and RSS are the bridge processes' own, over the steps."""
import asyncio
import json
import os
import time

from websockets.asyncio.server import serve

from tools.bench.rig import PhaseError, cpu_seconds, log, memory, percentiles, spawn
from tools.bridge.process import BridgeProcess
from tools.lightcharger import LightCharger, tls_context

CONNECT_BATCH = 50  # TLS handshakes at once
MET = 0.95  # share of the offered rate that must have gone out for a step to count
P99_LIMIT_MS = 1000.0
DRAIN_S = 10.0  # how long after a step its last frames may take


class Sink:
    """The Central System stand-in: accepts every id with ocpp1.6, records the latency of each
    CALL (its payload's `data` is the charger's send time) and answers it."""

    def __init__(self):
        self.latencies_ms = []
        self.received = 0
        self.connections = set()
        self._server = None
        self.port = None

    async def start(self):
        self._server = await serve(self._serve, "127.0.0.1", 0, subprotocols=["ocpp1.6"],
                                   compression=None, ping_interval=None, max_queue=None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, ws):
        self.connections.add(ws)
        try:
            async for text in ws:
                now = time.monotonic()
                message = json.loads(text)
                self.latencies_ms.append((now - float(message[3]["data"])) * 1000)
                self.received += 1
                await ws.send('[3,"%s",{"status":"Accepted"}]' % message[1])
        finally:
            self.connections.discard(ws)

    async def stop(self):
        self._server.close()
        await self._server.wait_closed()


def _frame(cp_id, n):
    return ('[2,"%s-%d","DataTransfer",{"vendorId":"bench","data":"%.6f"}]'
            % (cp_id, n, time.monotonic()))


async def _drive(chargers, rate, seconds):
    """Each charger publishes on its own schedule so that together they offer `rate` frames a
    second for `seconds`; returns how many went out."""
    interval = len(chargers) / rate
    sent = [0]
    end = time.monotonic() + seconds

    async def one(k, charger):
        at = time.monotonic() + interval * k / len(chargers)
        while at < end:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            sent[0] += 1
            await charger.publish(_frame(charger.cp_id, sent[0]), timeout=60)
            at += interval

    await asyncio.gather(*(one(k, c) for k, c in enumerate(chargers)))
    return sent[0]


async def _connect_all(chargers):
    for k in range(0, len(chargers), CONNECT_BATCH):
        await asyncio.gather(*(c.connect(30) for c in chargers[k:k + CONNECT_BATCH]))


async def run(lab, n_chargers, instances, rates, step_s):
    """One configuration: `instances` bridges (shards) and `n_chargers` chargers; the figures."""
    broker = lab.broker()
    sink = Sink()
    await sink.start()
    folder = lab.folder("bridge-x%d" % instances)
    bridges = []
    chargers = []
    try:
        for index in range(instances):
            cert, key = lab.pki.client("bridge-%d" % index)
            bridge = BridgeProcess(os.path.join(folder, "bridge-%d.log" % index),
                                   "127.0.0.1:%d" % broker.port, lab.pki.ca, cert, key,
                                   "ws://127.0.0.1:%d/ocpp" % sink.port, spawn=spawn,
                                   shard="%d/%d" % (index, instances),
                                   # Mosquitto has no per-connection publish limit (AWS: 100/s)
                                   extra=["--publish-rate", "100000", "--log-level", "WARNING"])
            bridges.append(await bridge.start())
        for i in range(n_chargers):
            cp_id = "CP-B%05d" % (i + 1)
            cert, key = lab.pki.client(cp_id)
            chargers.append(LightCharger(cp_id, "127.0.0.1", broker.port,
                                         tls_context(lab.pki.ca, cert, key)))
        t = time.monotonic()
        await _connect_all(chargers)
        log("bridge x%d: %d chargers connected in %.1f s" % (instances, n_chargers,
                                                            time.monotonic() - t))
        # every charger's WebSocket opened by a first frame, then the steps
        for k in range(0, n_chargers, CONNECT_BATCH):
            await asyncio.gather(*(c.publish(_frame(c.cp_id, 0)) for c in
                                   chargers[k:k + CONNECT_BATCH]))
        await _settle(sink, chargers)
        websockets = len(sink.connections)
        steps, best = [], None
        for rate in rates:
            step = await _step(sink, chargers, bridges, rate, step_s)
            steps.append(step)
            log("bridge x%d: %s" % (instances, step))
            if not step["sustained"]:
                break
            best = step
        rss = [memory(b.pid) for b in bridges]
        with open(broker.log_path, errors="replace") as f:
            # Mosquitto drops QoS 1 messages beyond max_queued_messages (1000) per session:
            # a bridge that falls that far behind loses frames there, not in the bridge
            broker_drops = sum(1 for line in f if "are being dropped for client" in line)
        return {"instances": instances, "chargers": n_chargers, "websockets": websockets,
                "broker_drop_notices": broker_drops,
                "sustained_frames_per_s": best and best["achieved_per_s"],
                "latency_ms": best and best["latency_ms"],
                "cpu_percent": best and best["cpu_percent"],
                "rss_bytes": sum(r[0] for r in rss), "rss_peak_bytes": sum(r[1] for r in rss),
                "steps": steps}
    finally:
        await asyncio.gather(*(c.abort() for c in chargers), return_exceptions=True)
        for bridge in bridges:
            await bridge.stop()
        await sink.stop()
        broker.stop()


async def _settle(sink, chargers, timeout=DRAIN_S):
    """Wait until every frame sent so far has been answered back to its charger."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(len(c.received) >= c.published for c in chargers):
            return True
        await asyncio.sleep(0.05)
    return False


async def _step(sink, chargers, bridges, rate, seconds):
    received0, answered0 = sink.received, sum(len(c.received) for c in chargers)
    latencies0 = len(sink.latencies_ms)
    cpu0, wall0 = sum(cpu_seconds(b.pid) for b in bridges), time.monotonic()
    sent = await _drive(chargers, rate, seconds)
    wall = time.monotonic() - wall0
    drained = await _settle(sink, chargers)
    cpu = sum(cpu_seconds(b.pid) for b in bridges) - cpu0
    received = sink.received - received0
    answered = sum(len(c.received) for c in chargers) - answered0
    latency = percentiles(sink.latencies_ms[latencies0:])
    achieved = sent / wall
    return {"offered_per_s": rate, "achieved_per_s": round(achieved, 1), "sent": sent,
            "lost_to_csms": sent - received, "lost_to_charger": sent - answered,
            "latency_ms": latency, "cpu_percent": round(cpu / (time.monotonic() - wall0) * 100, 1),
            "sustained": bool(drained and received == sent and answered == sent
                              and achieved >= MET * rate and latency["p99"] is not None
                              and latency["p99"] < P99_LIMIT_MS)}


async def bridge(lab, n_chargers, rates, step_s):
    """One instance, then two, with the same chargers and steps."""
    out = {}
    for instances in (1, 2):
        out["x%d" % instances] = await run(lab, n_chargers, instances, rates, step_s)
    failed = [k for k, r in out.items() if r["sustained_frames_per_s"] is None]
    if failed:
        raise PhaseError("bridge %s: not even the first step (%d/s) was sustained"
                         % (", ".join(failed), rates[0]))
    return out
