"""Heap phases: the reference scenario (idle and peak), the smallest heap it passes in, heap
per running transaction, growth over many sessions, and a bare TLS MQTT connection's share."""
import asyncio
import base64
import json
import os
import statistics
import shutil
import subprocess
import tempfile
import time

from tools import twin
from tools.bench.rig import (HEAP, T, TAG, WORKLOADS, PhaseError, heap_total, log,
                             run_workload, stopped)


async def reference(lab, code, heap, session_s, record=False):
    """Boot; RFID session with MeterValues every second for `session_s`, the broker restarted
    half-way and GetConfiguration of every key; remote start/stop. Returns a dict: passed,
    error, idle/peak (live heap after gc.collect, bytes), samples [(s, used)], events."""
    result = {"code": code, "heap": heap, "passed": False, "error": None, "idle": None,
              "peak": None, "samples": [], "events": [], "total": None, "simulation": None}
    total = result["total"] = heap_total(twin.ensure(stock=code == "deployed"), heap)
    t0 = time.monotonic()

    def event(name):
        result["events"].append((round(time.monotonic() - t0, 2), name))

    ending = asyncio.Event()

    async def sampler(sim):
        ctl = await sim.connect()
        try:
            while not ending.is_set():
                try:
                    s = await ctl.ask(cmd="status")
                    if s["heap_free"] is not None:  # null until the firmware runs
                        result["samples"].append((round(time.monotonic() - t0, 2),
                                                  total - s["heap_free"]))
                        result["simulation"] = s.get("heap_simulation")
                except (PhaseError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.5)
        finally:
            ctl.close()

    async def watchdog(sim):
        while True:
            await asyncio.sleep(0.5)
            if not sim.healthy():
                raise PhaseError("firmware failed: %s" % sim.bad_log(700))

    async def scenario(stage, sim):
        cs, broker = stage.cs, stage.broker
        cp = await stage.online(sim, start=False)
        event("online")
        if record:  # the idle figure; bisection probes skip it
            await asyncio.sleep(3)
        idle_from = time.monotonic() - t0 - 2.0
        ans = await cs.change_configuration(sim.cp_id, "MeterValueSampleInterval", "1")
        if ans["status"] != "Accepted":
            raise PhaseError("MeterValueSampleInterval=1: %s" % ans)
        event("RFID session")
        await sim.ask(cmd="load", connector=1, amps=16.0)
        await sim.ask(cmd="rfid", uid=TAG)
        await sim.ask(cmd="ev", connector=1, state="C")
        await sim.until(lambda s: s["connectors"]["1"]["relay"])
        await cs.wait_for(lambda: cp.transactions, T)
        await asyncio.sleep(session_s / 2)
        event("broker restart")
        broker.stop()
        await sim.until(lambda s: not s["online"])
        await asyncio.sleep(1.5)
        broker.start()
        await sim.until(lambda s: s["online"], 45)
        await cs.wait_for(lambda: cs.connected, T)
        back = time.monotonic()
        event("GetConfiguration (all)")
        conf = await cs.get_configuration(sim.cp_id, timeout=T)
        if len(conf.get("configurationKey", [])) < 20:
            raise PhaseError("GetConfiguration: %s" % conf)
        # Commands in the first 2 s after a reconnect are the broker's backlog to the
        # firmware (stale rule: RemoteStart/Stop answered Rejected); an operator waits too.
        await asyncio.sleep(max(session_s / 2, 3.0 - (time.monotonic() - back)))
        event("stop (card)")
        await sim.ask(cmd="rfid", uid=TAG)
        await sim.until(lambda s: not s["connectors"]["1"]["relay"])
        await sim.ask(cmd="ev", connector=1, state="A")
        await cs.wait_for(lambda: stopped(cp) == 1, 60)
        event("remote start")
        ans = await cs.remote_start(sim.cp_id, TAG, connector_id=1, timeout=T)
        if ans["status"] != "Accepted":
            raise PhaseError("RemoteStartTransaction: %s" % ans)
        await sim.ask(cmd="ev", connector=1, state="C")
        s = await sim.until(lambda s: s["connectors"]["1"]["transaction_id"] is not None)
        await asyncio.sleep(1)
        event("remote stop")
        ans = await cs.remote_stop(sim.cp_id, s["connectors"]["1"]["transaction_id"], timeout=T)
        if ans["status"] != "Accepted":
            raise PhaseError("RemoteStopTransaction: %s" % ans)
        await cs.wait_for(lambda: stopped(cp) == 2, T)
        await sim.ask(cmd="ev", connector=1, state="A")
        await cs.wait_for(lambda: cp.statuses.get(1, {}).get("status") == "Available", T)
        s = await sim.ask(cmd="status")
        if s["boots"] != 1:
            raise PhaseError("the firmware restarted (%d boots)" % s["boots"])
        event("end")
        idle = [u for t, u in result["samples"] if idle_from <= t <= idle_from + 2.0]
        result["idle"] = int(statistics.median(idle)) if idle else total - s["heap_free"]
        result["peak"] = max([s["heap_peak"]] + [u for _, u in result["samples"]])

    try:
        async with lab.stage() as stage:
            sim = stage.sim(code=code, heap=heap)
            await sim.start()
            tasks = [asyncio.ensure_future(scenario(stage, sim)),
                     asyncio.ensure_future(watchdog(sim))]
            side = asyncio.ensure_future(sampler(sim))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED,
                                             timeout=session_s + 240)
                if not done:
                    raise PhaseError("scenario did not finish")
                for task in done:
                    task.result()
            finally:
                # Bounded, and the sampler told to end besides its cancellation: a gather of
                # these waited for ever in 3 of 5 smoke runs (the stack: this line) when a
                # firmware died at once; Python 3.11's asyncio.wait_for (the sampler's status
                # questions) swallows a cancellation that comes as its answer does
                ending.set()
                for task in tasks + [side]:
                    task.cancel()
                await asyncio.wait(tasks + [side], timeout=10)
        result["passed"] = True
    except Exception as e:  # noqa: BLE001 - any failure is this probe's verdict
        result["error"] = "%s: %s" % (type(e).__name__, e)
    if not record:
        result["samples"] = []
    log("reference %s heap=%d session=%ss: %s%s" % (
        code, heap, session_s, "passed" if result["passed"] else "FAILED",
        "" if result["passed"] else " (%s)" % (result["error"] or "")[:300]))
    return result


async def bisect(lab, code, cfg):
    """Smallest -X heapsize at which the shortened reference scenario passes, to
    cfg["bisect_res"] bytes: (bytes or None when no probe passed, [(heap, passed, error)]).
    Searches [bisect_lo, HEAP]; when nothing there passes (and the step budget is not
    limited, as in --smoke), goes up from HEAP by half again until it passes, then bisects."""
    probes = []
    budget = [cfg["bisect_steps"]]

    async def passes(heap):
        r = await reference(lab, code, heap, cfg["bisect_session_s"])
        probes.append((heap, r["passed"], r["error"]))
        return r["passed"]

    def spend():
        if budget[0] is None:
            return True
        budget[0] -= 1
        return budget[0] >= 0

    async def search(lo, hi, best):
        while hi - lo > cfg["bisect_res"] and spend():
            mid = (lo + hi) // 2
            if await passes(mid):
                hi = best = mid
            else:
                lo = mid
        return lo, best

    lo, best = await search(cfg["bisect_lo"], HEAP, None)
    if best is None and cfg["bisect_steps"] is None:
        heap = HEAP
        for _ in range(4):
            if await passes(heap):
                _, best = await search(lo, heap, heap)
                break
            lo, heap = heap, heap * 3 // 2
    return best, probes


async def per_transaction(lab, n):
    """Live heap with 0..n transactions running on an n-connector charger (remote starts,
    MeterValueSampleInterval 0): marginal bytes per running transaction, first one apart."""
    heap = 2 * HEAP  # room for n connectors' drivers; live heap does not depend on it
    total = heap_total(twin.ensure(), heap)
    async with lab.stage() as stage:
        cs = stage.cs
        sim = stage.sim(cp_id="CP-TX", connectors=n, heap=heap)
        cp = await stage.online(sim)
        await cs.change_configuration(sim.cp_id, "MeterValueSampleInterval", "0")

        async def level():
            await asyncio.sleep(1.0)
            used = []
            for _ in range(5):
                s = await sim.until(lambda s: s["heap_free"] is not None)  # running
                used.append(total - s["heap_free"])
                await asyncio.sleep(0.2)
            return min(used)

        levels = [await level()]
        for k in range(1, n + 1):
            ans = await cs.remote_start(sim.cp_id, TAG, connector_id=k, timeout=T)
            if ans["status"] != "Accepted":
                raise PhaseError("RemoteStartTransaction on %d: %s" % (k, ans))
            await sim.ask(cmd="ev", connector=k, state="C")
            await sim.until(lambda s: s["connectors"][str(k)]["transaction_id"] is not None)
            await cs.wait_for(lambda: len(cp.transactions) == k, T)
            levels.append(await level())
        for k in range(1, n + 1):
            await sim.ask(cmd="ev", connector=k, state="A")
        await cs.wait_for(lambda: stopped(cp) == n, T)
        after = await level()
    xs = list(range(1, n + 1))
    ys = levels[1:]
    if len(xs) >= 2:
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    else:
        slope = ys[0] - levels[0]
    return {"per_transaction": int(round(slope)), "first": levels[1] - levels[0],
            "levels": levels, "after_stop": after}


def sessions_in_process(tmp, lib, count):
    """Live heap over `count` RFID sessions driven in-process on the frozen twin."""
    lines, _, _ = run_workload(["sessions", str(count), "STATE"], tmp, lib)
    points = [(x["session"], x["alloc"]) for x in lines if "session" in x]
    done = [x for x in lines if "done" in x][0]
    if done["starts"] != count or done["stops"] != count:
        raise PhaseError("in-process sessions: %s" % done)
    bad = [x for x in lines if "session" in x and x["status"] != "Available"]
    if bad:
        raise PhaseError("in-process session ended %s" % bad[0])
    warm = max(1, count // 10)  # caches (auth, answered ids) fill in the first sessions
    base = [a for s, a in points if s >= warm][0]
    return {"growth": points[-1][1] - base, "warm_session": warm, "points": points,
            "peak": done["peak"]}


def soak(tmp, lib, count):
    """`count` sessions in-process on the frozen twin at HEAP with a 1000-entry local list, 10
    charging profiles, bursts of inbound CALLs and 4 firmware downloads (a package of the
    twin's own image, from an HTTP server here): MemoryErrors, the smallest largest free
    block seen, the downloads."""
    import http.server
    import threading

    from tools import fwpack

    with open(twin.ensure(), "rb") as f:
        package = fwpack.package("image", "twin", "0.2.0", f.read())

    class Serve(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", str(len(package)))
            self.end_headers()
            self.wfile.write(package)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    flash = tempfile.mkdtemp(prefix="ota-", dir=tmp)
    try:
        lines, _, _ = run_workload(
            ["soak", str(count), "STATE", "http://127.0.0.1:%d/fw.pkg" % server.server_port],
            tmp, lib, timeout=600, env={"CP_TWIN_FLASH": flash})
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(flash, ignore_errors=True)
    done = [x for x in lines if "done" in x][0]
    summary = [x for x in lines if "memory_errors" in x][0]
    fetched = [x for x in lines if "downloaded" in x]
    if done["starts"] != count or done["stops"] != count or summary["local_list"] != 1000 \
            or summary["downloads"] != 4 or summary["download_errors"] \
            or [x["downloaded"] for x in fetched] != ["0.2.0"] * 4:
        raise PhaseError("soak: %s %s %s" % (done, summary, fetched))
    return {"memory_errors": summary["memory_errors"], "min_largest": summary["min_largest"],
            "points": [(x["session"], x["alloc"], x["largest"]) for x in lines
                       if "session" in x], "peak": done["peak"],
            "downloads": summary["downloads"], "package_bytes": len(package)}


def _der(pem_path, tmp):
    """The first PEM block of a file, as a DER file next to the others in tmp."""
    with open(pem_path) as f:
        body = f.read().split("-----")[2]
    out = os.path.join(tmp, os.path.basename(pem_path) + ".der")
    with open(out, "wb") as f:
        f.write(base64.b64decode("".join(body.split())))
    return out


def tls_heap(lab, tmp):
    """Live heap a bare mutual-TLS MQTT connection holds on the stock twin (umqtt.simple)."""
    broker = lab.broker()
    try:
        ders = [_der(path, tmp) for path in (lab.pki.ca,) + lab.pki.client("CP-TLS")]
        r = subprocess.run([twin.ensure(stock=True), "-X", "heapsize=%d" % HEAP, WORKLOADS,
                            "tls", "127.0.0.1", str(broker.port)] + ders + ["CP-TLS"],
                           capture_output=True, text=True, timeout=60, cwd=tmp,
                           env=dict(os.environ, MICROPYPATH=".frozen"))
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        if r.returncode != 0 or not lines:
            raise PhaseError("TLS probe failed: %s" % (r.stdout + r.stderr)[-600:])
        return lines[-1]["tls_mqtt"]
    finally:
        broker.stop()
