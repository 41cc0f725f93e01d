"""The benchmark's command line and its run: the phases in order, each failure recorded and
the others kept, the report written and the JSON printed whatever happened."""
import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import tools.bench
from tools import twin
from tools.bench import bridge, cpu, crypto, fleet, heap, profiles, reactions, report, rig, \
    sizes, transports
from tools.bench.rig import BIG_HEAP, HEAP, PhaseError, log
from tools.broker import mosquitto_path

MODES = {
    "full": dict(session_s=60, bisect_lo=20000, bisect_res=2000, bisect_steps=None,
                 bisect_session_s=6, connectors=6, sessions=1000, reps=100, fleet=50,
                 fleet_s=60, fleet_mv_s=2, valgrind_n=100, inproc_n=10000,
                 local_list=1000, charging_profiles=10, download_s=10, phase_s=600,
                 transport_reps=100, transport_drains=transports.TRANSPORTS,
                 soak_sessions=2000, transport_boots=5, bridge_chargers=1000,
                 bridge_rates=(250, 500, 1000, 1500, 2000, 3000, 4000), bridge_step_s=5),
    "smoke": dict(session_s=3, bisect_lo=20000, bisect_res=2000, bisect_steps=2,
                  bisect_session_s=2, connectors=2, sessions=30, reps=5, fleet=3, fleet_s=8,
                  fleet_mv_s=2, valgrind_n=10, inproc_n=200, local_list=100,
                  charging_profiles=3, download_s=3, phase_s=180, transport_reps=10,
                  transport_drains=("mqtt",), soak_sessions=100, transport_boots=2,
                  bridge_chargers=20, bridge_rates=(40, 80), bridge_step_s=2),
}
MODES["quick"] = dict(MODES["full"], session_s=15)


def empty_result(mode):
    """Every key of the JSON, with nothing measured yet."""
    both = {"frozen": None, "deployed": None}
    none = {"p50": None, "p99": None, "max": None, "n": 0}
    return {
        "mode": mode, "mpy_bytes": None, "frozen_bytes": None,
        "heap_idle_bytes": dict(both), "heap_peak_bytes": dict(both),
        "heap_firmware_idle_bytes": None, "heap_firmware_peak_bytes": None,
        "heap_simulation_bytes": None,
        "soak_memory_errors": None, "soak_min_largest_free_block_bytes": None,
        "heap_tls_connection_bytes": None, "heap_per_transaction_bytes": None,
        "heap_growth_1000_sessions_bytes": None, "sessions_in_process": None,
        "heap_local_list_1000_bytes": None, "heap_10_charging_profiles_bytes": None,
        "heap_download_bytes": None,
        "min_heap_bytes": dict(both),
        "reaction_ms": {name: dict(none) for name in reactions.REACTIONS},
        "control_round_trip_ms": dict(none),
        "cpu_us_per_inbound_call": None, "cpu_us_per_meter_values": None,
        "valgrind_instructions": None,
        "fleet_chargers": None, "fleet_messages_per_s": None, "fleet_twin_rss_bytes": None,
        "fleet_twin_cpu_percent": None,
        "message_gap_ms": {"p50": None, "p99": None, "max": None, "n": 0},
        "boot_to_ready_ms": None, "backlog_100_drain_s": None,
        "transports": transports.empty(),
        "bridge": None, "crypto": None,
        "seconds": None, "errors": [], "warnings": [],
    }


def dump_tasks():
    """Every asyncio task's stack to stderr (kill -USR1 a bench that seems stuck)."""
    for task in asyncio.all_tasks():
        log("task %s:" % task.get_name())
        task.print_stack(limit=12, file=sys.stderr)


def machine():
    cpu_name = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu_name = next((line.split(":", 1)[1].strip() for line in f
                             if line.startswith("model name")), cpu_name)
    except OSError:
        pass
    git = ["git", "-C", rig.ROOT]
    try:
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain"], capture_output=True,
                               text=True).stdout.strip()
        source = "commit %s%s" % (head, " with uncommitted changes" if dirty else "")
    except OSError:
        source = "?"
    return {"cpu": cpu_name, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "source": source}


def twin_identity():
    """The twins' build stamps: they change when tools.twin rebuilds (lib/ edited)."""
    found = []
    for name in ("twin", "twin-stock"):
        try:
            with open(os.path.join(twin.BUILD, name, "micropython.stamp")) as f:
                found.append(f.read())
        except OSError:
            found.append(None)
    return found


def _first_line(text):
    """The line of an error worth quoting: the exception at the end of a traceback."""
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    for line in reversed(lines):
        if "Error" in line:
            return line[:200]
    return lines[-1][:200] if lines else ""


class Run:
    """One benchmark run: `res` is the JSON, `info` what else the report says."""

    def __init__(self, cfg, res, info, tmp):
        self.cfg, self.res, self.info, self.tmp = cfg, res, info, tmp
        self.lab = rig.Lab(tmp)
        self.lib = None
        self.refs = {}
        self.sessions = None
        self.reaction_samples = None

    async def phase(self, name, coro):
        """Run one phase, bounded by the mode's `phase_s`: one that fails or does not end in
        time is reported in the JSON's errors, and the others still count. A phase out of
        time is cancelled and left: the run goes on even if its clean-up hangs (its stack is
        logged, as `kill -USR1` logs every task's)."""
        t = time.monotonic()
        log("%s ..." % name)
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=self.cfg["phase_s"])
        if not done:
            self.res["errors"].append("%s: did not end within %d s" % (name, self.cfg["phase_s"]))
            log("%s did not end within %d s; where it was:" % (name, self.cfg["phase_s"]))
            task.print_stack(file=sys.stderr)
            task.cancel()
            return
        e = task.exception()
        if e is None:
            log("%s done in %.0f s" % (name, time.monotonic() - t))
            return
        # one phase failing must not lose the others' figures
        self.res["errors"].append("%s: %s: %s" % (name, type(e).__name__, e))
        log("%s FAILED after %.0f s: %s: %s" % (name, time.monotonic() - t, type(e).__name__, e))

    async def sizes(self):
        self.res["mpy_bytes"] = sizes.mpy_bytes(self.tmp)
        self.info["size_twin"] = sizes.image_bytes(stock=False)
        self.info["size_stock"] = sizes.image_bytes(stock=True)
        self.res["frozen_bytes"] = self.info["size_twin"] - self.info["size_stock"]

    async def reference(self, code):
        session_s = self.cfg["session_s"]
        r = await heap.reference(self.lab, code, HEAP, session_s, record=True)
        if not r["passed"]:
            # Does it need more heap, or is it broken? The same on a board with PSRAM.
            bigger = await heap.reference(self.lab, code, BIG_HEAP, session_s, record=True)
            if not bigger["passed"]:
                self.refs[code] = r
                raise PhaseError("reference scenario, %s: %s" % (code, r["error"]))
            self.res["warnings"].append(
                "%s code: the reference scenario fails at -X heapsize=%d (%s); its heap "
                "figures are from a run at %d" % (code, HEAP, _first_line(r["error"]),
                                                  BIG_HEAP))
            r = bigger
        self.refs[code] = r
        self.res["heap_idle_bytes"][code] = r["idle"]
        self.res["heap_peak_bytes"][code] = r["peak"]
        sim = r["simulation"]
        if code == "frozen" and sim is not None:  # the firmware's own: the simulation's apart
            self.res.update(heap_simulation_bytes=sim, heap_firmware_idle_bytes=r["idle"] - sim,
                            heap_firmware_peak_bytes=r["peak"] - sim)

    async def min_heap(self, code):
        value, probes = await heap.bisect(self.lab, code, self.cfg)
        self.info.setdefault("probes_by_code", {})[code] = probes
        self.res["min_heap_bytes"][code] = value

    async def per_transaction(self):
        t = await heap.per_transaction(self.lab, self.cfg["connectors"])
        self.res["heap_per_transaction_bytes"] = t["per_transaction"]
        self.info.update(first_tx=t["first"], tx_levels=t["levels"], tx_after=t["after_stop"])

    async def profiles(self):
        cfg = self.cfg
        p = await profiles.profiles(self.lab, cfg["local_list"], cfg["charging_profiles"],
                                    cfg["download_s"])
        self.res["heap_local_list_1000_bytes"] = p["local_list"]
        self.res["heap_10_charging_profiles_bytes"] = p["charging_profiles"]
        self.res["heap_download_bytes"] = p["download"]
        self.info["profiles"] = p
        if p["download_gave_up"] or p["download_again_gave_up"]:
            self.res["warnings"].append(
                "firmware download at -X heapsize=%d: the firmware gave up before asking for "
                "the package in %d of %d UpdateFirmware on a fresh charger and %d of %d after "
                "a %d-entry local list and %d charging profiles (most likely out of memory: the "
                "heap too fragmented for the download's 4 KB buffer)%s"
                % (HEAP, p["download_gave_up"], p["download_gave_up"] + (
                    p["download_heap"] == HEAP), p["download_again_gave_up"],
                   p["download_again_gave_up"] + (p["download_again_gave_up"] < p["attempts"]),
                   p["entries"], p["n_profiles"],
                   "" if p["download_heap"] == HEAP else "; heap_download_bytes is from a "
                   "second charger at %d" % p["download_heap"]))
        if p["unanswered"]:
            self.res["warnings"].append(
                "optional profiles at -X heapsize=%d: %d CALLs had no answer within %d s and "
                "were sent again (%s): the firmware dropped the frames (its log: no memory "
                "for them)" % (HEAP, len(p["unanswered"]), profiles.ANSWER_S,
                               ", ".join(p["unanswered"])))

    async def tls(self):
        self.res["heap_tls_connection_bytes"] = await asyncio.to_thread(
            heap.tls_heap, self.lab, self.tmp)

    async def growth(self):
        count = self.cfg["sessions"]
        self.sessions = await asyncio.to_thread(heap.sessions_in_process, self.tmp, self.lib,
                                                count)
        self.res["heap_growth_1000_sessions_bytes"] = self.sessions["growth"]
        self.res["sessions_in_process"] = count
        self.info["warm_session"] = self.sessions["warm_session"]

    async def soak(self):
        r = await asyncio.to_thread(heap.soak, self.tmp, self.lib, self.cfg["soak_sessions"])
        self.res.update(soak_memory_errors=r["memory_errors"],
                        soak_min_largest_free_block_bytes=r["min_largest"])
        self.info["soak"] = r

    async def instructions(self):
        counts, note = await asyncio.to_thread(cpu.instructions, self.tmp, self.lib,
                                               self.cfg["valgrind_n"])
        self.res["valgrind_instructions"] = counts
        self.info["valgrind_note"] = note

    async def cpu(self):
        c = await asyncio.to_thread(cpu.process_cpu_us, self.tmp, self.lib,
                                    self.cfg["inproc_n"])
        self.res["cpu_us_per_inbound_call"] = c["per_inbound_call"]
        self.res["cpu_us_per_meter_values"] = c["per_meter_values"]

    async def in_process(self):
        await self.phase("heap over %d in-process sessions" % self.cfg["sessions"],
                         self.growth())
        await self.phase("soak of %d sessions in-process" % self.cfg["soak_sessions"],
                         self.soak())
        await self.phase("valgrind", self.instructions())
        await self.phase("CPU in-process", self.cpu())

    async def reactions(self):
        figures, self.reaction_samples = await reactions.reactions(self.lab, self.cfg["reps"])
        self.res["control_round_trip_ms"] = figures.pop("control_round_trip")
        self.res["reaction_ms"] = figures

    async def transports(self):
        figures, failed = await transports.transports(
            self.lab, os.path.join(self.tmp, "mpy"), min(self.cfg["session_s"], 10),
            self.cfg["transport_reps"], self.cfg["transport_drains"], self.cfg["transport_boots"])
        self.res["transports"] = figures
        mqtt = figures["mqtt"]  # the default transport's, at the top
        self.res.update(message_gap_ms=mqtt["message_gap_ms"],
                        boot_to_ready_ms=mqtt["boot_to_ready_ms"],
                        backlog_100_drain_s=mqtt["backlog_100_drain_s"])
        if failed:
            raise PhaseError("; ".join(failed))

    async def fleet(self):
        f = await fleet.fleet(self.lab, self.cfg["fleet"], self.cfg["fleet_s"],
                              self.cfg["fleet_mv_s"])
        self.info["fleet_result"] = f
        self.res.update(fleet_chargers=f["chargers"], fleet_messages_per_s=f["messages_per_s"],
                        fleet_twin_rss_bytes=f["twin_rss_bytes"],
                        fleet_twin_cpu_percent=f["twin_cpu_percent"])
        if f["online_at_end"] < f["chargers"]:
            raise PhaseError("only %d of %d chargers online at the end"
                             % (f["online_at_end"], f["chargers"]))

    async def bridge(self):
        cfg = self.cfg
        self.res["bridge"] = await bridge.bridge(self.lab, cfg["bridge_chargers"],
                                                 cfg["bridge_rates"], cfg["bridge_step_s"])

    async def crypto(self):
        self.res["crypto"] = await asyncio.to_thread(crypto.figures, self.tmp)

    async def only(self, which):
        """--only bridge|crypto: that phase alone (its section of the report replaced)."""
        started = time.monotonic()
        try:
            if which == "crypto":
                await self.phase("public-key arithmetic", self.crypto())
            else:
                await self.phase("fleet bridge, %d chargers" % self.cfg["bridge_chargers"],
                                 self.bridge())
        finally:
            self.lab.close()
        self.res["seconds"] = round(time.monotonic() - started)

    async def all(self):
        cfg, phase = self.cfg, self.phase
        started = time.monotonic()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        try:
            await phase("code size", self.sizes())
            self.lib = rig.fakes_folder(self.tmp)
            # Heap figures, instruction counts and process CPU time do not depend on how busy
            # the machine is: these run side by side, each on its own broker and Central System.
            await asyncio.gather(
                phase("reference scenario (frozen)", self.reference("frozen")),
                phase("reference scenario (deployed)", self.reference("deployed")),
                phase("min heap (frozen)", self.min_heap("frozen")),
                phase("min heap (deployed)", self.min_heap("deployed")),
                phase("heap of the optional profiles", self.profiles()),
                phase("TLS connection heap", self.tls()),
                self.in_process())
            # ... except the slope per running transaction: side by side it read 300-448 B in
            # four runs, alone 389-396 B in five (each level the least of 5 samples over 1 s)
            await phase("heap per transaction", self.per_transaction())
            self.info["probes"] = "; ".join(
                "%s: %s" % (code, ", ".join("%d %s" % (h, "pass" if ok else "fail")
                                            for h, ok, _ in probes))
                for code, probes in sorted(self.info.get("probes_by_code", {}).items()))
            # Reaction times (wall clock) and the fleet (the whole machine): one at a time.
            await phase("reaction times (%d repetitions)" % cfg["reps"], self.reactions())
            await phase("transports side by side", self.transports())
            await phase("fleet of %d for %d s" % (cfg["fleet"], cfg["fleet_s"]), self.fleet())
            await phase("fleet bridge, %d chargers" % cfg["bridge_chargers"], self.bridge())
            await phase("public-key arithmetic", self.crypto())
        finally:
            self.lab.close()
        self.res["seconds"] = round(time.monotonic() - started)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tools.bench",
                                description=" ".join(tools.bench.__doc__.split("\n\n")[0].split()))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="15 s reference session, not 60 s")
    g.add_argument("--smoke", action="store_true", help="a fast run with every key")
    p.add_argument("--out", default=os.path.join(rig.ROOT, "docs"),
                   help="folder for BENCHMARKS.md and the plots (default docs/)")
    p.add_argument("--keep", action="store_true", help="keep the simulators' state folder")
    p.add_argument("--only", choices=("bridge", "crypto"),
                   help="run this phase alone and replace its "
                   "section (and its key of the JSON) in an existing report")
    args = p.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = MODES[mode]
    out = os.path.abspath(args.out)
    res = empty_result(mode)
    info = dict(machine(), flags=" --" + mode if mode != "full" else "", **cfg)
    run = None

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="bench-")
    status = 0
    try:
        if mosquitto_path() is None:
            log("no mosquitto: make mosquitto")
            subprocess.run(["make", "-C", rig.ROOT, "mosquitto"], check=False, stdout=sys.stderr)
        if args.only:
            if args.only == "crypto":
                twin.ensure()
            asyncio.run(Run(cfg, res, info, tmp).only(args.only))
        else:
            log("device twins (tools/twin.py) ...")
            twin.ensure()
            twin.ensure(stock=True)
            twin.mpy_cross()
            stamps = twin_identity()
            run = Run(cfg, res, info, tmp)
            asyncio.run(run.all())
            if twin_identity() != stamps:
                res["warnings"].append("the firmware changed during the run (lib/ edited, "
                                       "twin rebuilt): figures may mix two versions")
    except KeyboardInterrupt:
        res["errors"].append("interrupted")
        status = 130
    except Exception as e:  # noqa: BLE001 - the JSON line comes whatever happened
        res["errors"].append("bench: %s: %s" % (type(e).__name__, e))
        log("crashed:", type(e).__name__, e)
    finally:
        rig.stop_all()
        if args.only:  # that section alone: the rest of the report is another run's
            report.replace_section(args.only, out, res, info)
        else:
            report.write(out, res, info, *((run.refs, run.sessions, run.reaction_samples)
                                           if run else ()))
        if args.keep:
            log("state kept in", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if res["errors"] and not status:
        status = 1
    log("report: %s" % os.path.join(out, "BENCHMARKS.md"))
    if args.only:
        res = {"mode": mode, args.only: res[args.only], "seconds": res["seconds"],
               "errors": res["errors"]}
    print(json.dumps(res, separators=(",", ":")), flush=True)
    return status
