"""What every benchmark phase stands on: the processes it starts (brokers, simulators, twins),
each stopped on the way out; the simulators through tools.simclient."""
import asyncio
import contextlib
import ctypes
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from tools import certs, twin
from tools.broker import Broker
from tools.csms import CentralSystem
from tools.simclient import Simulator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKLOADS = os.path.join(ROOT, "tools", "bench", "workloads.py")
TAG = "04A1B2C3D4E5F6"  # 7-byte UIDs, as an MFRC522 reads them
CARDS = (TAG, "04B1C2D3E4F5A6")  # both accepted by the Central System
HEAP = 110000  # -X heapsize: an ESP32's free heap with Wi-Fi up
# where the deployed placement (every module's bytecode in the heap) is measured when it does
# not fit HEAP: a board with PSRAM (its 60 s reference, GetConfiguration of every key
# included, needs more than the shorter end-to-end tests)
BIG_HEAP = 320000
T = 30.0  # seconds any single expectation may take (two cores, several processes)


def log(*args):
    print("bench:", *args, file=sys.stderr, flush=True)


class PhaseError(Exception):
    pass


# --- processes -----------------------------------------------------------------------------------

_PROCS = []  # every Popen started here, stopped on the way out whatever happens


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args, **kw):
    proc = subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)
    _PROCS.append(proc)
    return proc


def stop_all():
    for proc in _PROCS:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in _PROCS:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _PROCS.clear()


def _stat(pid):
    """The fields of /proc/<pid>/stat after the command name (field 3 on)."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid):
    """utime + stime of a process (all its threads)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid):
    """(VmRSS, VmHWM) in bytes."""
    found = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line[:5]] = int(line.split()[1]) * 1024
    return found.get("VmRSS", 0), found.get("VmHWM", 0)


def heap_total(binary, heapsize):
    """Bytes the GC can hand out with -X heapsize=heapsize (alloc + free after a collection)."""
    r = subprocess.run([binary, "-X", "heapsize=%d" % heapsize, "-c",
                        "import gc\ngc.collect()\nprint(gc.mem_alloc() + gc.mem_free())"],
                       capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, MICROPYPATH=".frozen"))
    return int(r.stdout.strip())


def percentiles(samples_ms):
    if not samples_ms:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    s = sorted(samples_ms)

    def rank(p):  # nearest rank
        return s[max(0, math.ceil(p / 100 * len(s)) - 1)]
    return {"p50": round(rank(50), 2), "p99": round(rank(99), 2), "max": round(s[-1], 2),
            "n": len(s)}


# --- the firmware in-process on the twin (tools/bench/workloads.py) ------------------------------

def fakes_folder(tmp):
    """A folder with tools/fakes.py compiled to tools/fakes.mpy (`from tools.fakes import`
    on the twin as on CPython), for the workloads' MICROPYPATH."""
    out = os.path.join(tmp, "twinlib")
    os.makedirs(os.path.join(out, "tools"), exist_ok=True)
    subprocess.run([twin.mpy_cross(), "-o", os.path.join(out, "tools", "fakes.mpy"),
                    os.path.join(ROOT, "tools", "fakes.py")], check=True)
    return out


def run_workload(args, tmp, lib, valgrind=False, heap=HEAP, timeout=300, env=None):
    """tools/bench/workloads.py on the frozen twin, "STATE" in args standing for a fresh
    flash folder, `env` added to its environment: (its JSON lines, callgrind's instruction
    count or None, the process's user+system CPU seconds)."""
    state = tempfile.mkdtemp(prefix="flash-", dir=tmp)
    cmd = [twin.ensure(), "-X", "heapsize=%d" % heap, WORKLOADS] + \
        [a if a != "STATE" else state for a in args]
    if valgrind:
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = spawn(cmd, stdout=out, stderr=err, cwd=tmp,
                     env=dict(os.environ, MICROPYPATH=".frozen:%s" % lib, **(env or {})))
        deadline = time.monotonic() + timeout
        while True:  # wait4 for this child's own rusage (others may be running meanwhile)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise PhaseError("twin %s: no end within %d s" % (" ".join(args), timeout))
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    shutil.rmtree(state, ignore_errors=True)
    if proc.returncode != 0:
        raise PhaseError("twin %s failed: %s" % (" ".join(args), (stdout + stderr)[-800:]))
    lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    instructions = None
    for line in stderr.splitlines():
        if "Collected :" in line:
            instructions = int(line.split(":")[-1])
    return lines, instructions, usage.ru_utime + usage.ru_stime


# --- brokers, Central Systems, simulators --------------------------------------------------------

class Lab:
    """One PKI, and the brokers and simulators of a run under one temporary folder."""

    def __init__(self, root):
        self.root = root
        self.pki = certs.ensure_pki(os.path.join(root, "pki"))
        self.brokers = []
        self.sims = []
        self._n = itertools.count(1)

    def folder(self, name):
        path = os.path.join(self.root, "%03d-%s" % (next(self._n), name))
        os.makedirs(path)
        return path

    def broker(self):
        b = Broker(self.folder("broker"), pki_dir=self.pki.dir)
        self.brokers.append(b)
        return b.start()

    def csms(self, broker, **kw):
        kw.setdefault("authorized", CARDS)
        cert, key = self.pki.client(certs.CSMS_CN)
        return CentralSystem(broker.host, broker.port, self.pki.ca, cert, key, **kw)

    def sim(self, port, cp_id="CP001", code="frozen", heap=HEAP, connectors=1):
        s = Sim(self, port, self.folder("sim-%s-%s" % (cp_id, code)), cp_id, code, heap,
                connectors)
        self.sims.append(s)
        return s

    @contextlib.asynccontextmanager
    async def stage(self, **csms_kw):
        """A broker of its own and a Central System on it; the simulators made with
        `stage.sim()` are stopped on the way out, and a clean exit raises PhaseError if a
        firmware log shows a traceback or MemoryError."""
        stage = Stage(self, self.broker())
        try:
            async with self.csms(stage.broker, **csms_kw) as stage.cs:
                yield stage
                stage.check()
        finally:
            await asyncio.gather(*(s.terminate() for s in stage.sims),
                                 return_exceptions=True)
            stage.broker.stop()

    def close(self):
        for s in self.sims:
            s.kill()
        for b in self.brokers:
            b.stop()


class Stage:
    """One phase's broker, its Central System (`cs`) and the simulators started for it."""

    def __init__(self, lab, broker):
        self.lab, self.broker, self.cs = lab, broker, None
        self.sims = []

    def sim(self, cp_id="CP001", port=None, **kw):
        s = self.lab.sim(port or self.broker.port, cp_id=cp_id, **kw)
        self.sims.append(s)
        return s

    async def online(self, sim, timeout=T, start=True):
        """Start `sim` (unless started) and wait until it is booted and online; its Charger."""
        cs = self.cs
        if start:
            await sim.start()
        await cs.wait_for(lambda: sim.cp_id in cs.chargers and cs.chargers[sim.cp_id].boots,
                          timeout)
        await sim.until(lambda s: s["online"], timeout)
        return cs.chargers[sim.cp_id]

    def check(self):
        for s in self.sims:
            if not s.healthy():
                raise PhaseError("%s firmware log: %s" % (s.cp_id, s.bad_log(700)))


class Sim(Simulator):
    """`python3 -m tools.sim` (quiet) for a phase: the lab's PKI, its process stopped with the
    bench's, a failed expectation a PhaseError."""

    def __init__(self, lab, port, state, cp_id, code, heap, connectors):
        cert, key = lab.pki.client(cp_id)
        super().__init__(cp_id, "127.0.0.1:%d" % port, lab.pki.ca, cert, key, state, code=code,
                         heap=heap, connectors=connectors, timeout=T, failure=PhaseError,
                         spawn=spawn)


def stopped(cp):
    """How many of a Charger's transactions have ended."""
    return sum(1 for t in cp.transactions.values() if t.stopped)


def closed(s, k="1"):
    """The contactor's state as the simulator reports it: `contact`, the contactor model's
    contacts (`relay`, the commanded state, where a simulator has no `contact`)."""
    c = s["connectors"][k]
    contact = c.get("contact")
    return c["relay"] if contact is None else bool(contact)


async def plugged(sim, state="C", k="1"):
    """Set the EV's state and wait until the firmware sees it (the pilot is debounced)."""
    await sim.ask(cmd="ev", connector=int(k), state=state)
    await sim.until(lambda s: s["connectors"][k].get("pilot_state", state) == state)
