"""The client of one simulated charger (`python3 -m tools.sim`): its command line, its process,
its control socket, a power cut. The tests, the bench (tools/bench) and `make sim`
(tools.devsim) drive their simulators through it.

    sim = Simulator("CP001", "127.0.0.1:8883", ca, cert, key, state_dir, heap=110000)
    # or straight to a Central System over OCPP-J (tools.sim --transport websocket):
    # Simulator("CP001", state=state_dir, transport="websocket", url="ws://127.0.0.1:9000/ocpp")
    await sim.start()                 # the process, and a control connection once it is up
    await sim.ask(cmd="ev", connector=1, state="C")
    await sim.until(lambda s: s["connectors"]["1"]["relay"])
    sim.power_cut()                   # kill -9: the firmware dies with the simulator
    sim.stop()

The simulator's stdout and stderr go to STATE/sim.log (appended over restarts); the firmware's
own output is STATE/firmware.log (tools.sim).
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

from tools.broker import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 20.0  # seconds any single expectation may take, unless the caller says otherwise
LOG = "sim.log"
BAD_LOG = ("Traceback", "MemoryError")  # what a healthy firmware never prints


def sim_args(cp_id, broker=None, ca=None, cert=None, key=None, state=None, control=None, *,
             transport=None, url=None, security_profile=None, auth_key=None, code=None,
             heap=None, connectors=None, max_amps=None, lock=False, meter=None, console=False,
             quiet=True, provision_template=None):
    """The `python3 -m tools.sim` command line; a flag left None (or False) is not given, so
    the simulator's own default holds. `broker` and `control` are "HOST:PORT" or (host, port).
    Over MQTT: broker, ca, cert, key (the claim's with provision_template). With transport="websocket": url, and as the security
    profile needs, security_profile, auth_key, ca (wss://), cert and key (profile 3)."""
    if state is None or control is None:
        raise TypeError("sim_args() needs state and control")

    def address(a):
        return a if isinstance(a, str) else "%s:%d" % tuple(a)

    args = [sys.executable, "-m", "tools.sim", "--id", cp_id]
    if transport is not None:
        args += ["--transport", transport]
    for flag, value in (("--broker", None if broker is None else address(broker)),
                        ("--url", url), ("--security-profile", security_profile),
                        ("--auth-key", auth_key), ("--ca", ca), ("--cert", cert), ("--key", key),
                        ("--provision-template", provision_template)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--state", str(state), "--control", address(control)]
    if quiet:
        args.append("--quiet")
    for flag, value in (("--code", code), ("--heap", heap), ("--connectors", connectors),
                        ("--max-amps", max_amps), ("--meter", meter)):
        if value is not None:
            args += [flag, str(value)]
    if lock:
        args.append("--lock")
    if console:
        args.append("--console")
    return args


class Control:
    """One connection to a simulator's control socket: one JSON answer line per JSON request
    line, one request at a time (a lock keeps concurrent askers' answers apart)."""

    def __init__(self, reader, writer, timeout=T, failure=AssertionError):
        self.reader, self.writer = reader, writer
        self.timeout = timeout
        self.failure = failure
        self.lock = asyncio.Lock()

    async def request(self, **req):
        """The answer to `req`, as it came (`ok` false included). ConnectionError if the
        simulator closed the socket, asyncio.TimeoutError if it said nothing in time."""
        async with self.lock:
            self.writer.write(json.dumps(req).encode() + b"\n")
            await self.writer.drain()
            line = await asyncio.wait_for(self.reader.readline(), self.timeout)
        if not line:
            raise ConnectionError("simulator closed its control socket")
        return json.loads(line)

    async def ask(self, **req):
        """The answer to `req`; `failure` (with the simulator's error) unless it is ok."""
        try:
            answer = await self.request(**req)
        except ConnectionError as e:
            raise self.failure(str(e)) from None
        if not answer.get("ok"):
            raise self.failure("simulator: %s (asked %s)" % (answer.get("error"),
                                                              json.dumps(req)))
        return answer

    async def until(self, predicate, timeout=None, running=True, pause=0.05):
        """The first status answer `predicate` holds of, asking every `pause` s. With
        running=True only answers of a running firmware count (status is answered at once
        also while it starts or has crashed, its figures null or stale then)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            s = await self.ask(cmd="status")
            if (s["firmware"] == "running" or not running) and predicate(s):
                return s
            if time.monotonic() > deadline:
                raise self.failure("not within %s s; last status %s" % (timeout, json.dumps(s)))
            await asyncio.sleep(pause)

    def close(self):
        try:
            self.writer.close()
        except Exception:  # its event loop may be gone already
            pass


class Simulator:
    """One `python3 -m tools.sim` process and a control connection to it (`ctl`).

    `args` is its command line, built here and open to change before `start`. `timeout`
    bounds every answer and expectation; `start_timeout` the wait for the control socket
    (a first start builds the twin). A failed expectation raises `failure` (AssertionError
    in tests, the bench's PhaseError, ...). `spawn(args, **popen)` starts the process
    (subprocess.Popen, or a caller's that registers it or sets its process group)."""

    def __init__(self, cp_id, broker=None, ca=None, cert=None, key=None, state=None, *,
                 control=None, timeout=T, start_timeout=None, failure=AssertionError,
                 spawn=subprocess.Popen, **flags):
        if state is None:
            raise TypeError("Simulator() needs state")
        self.cp_id = cp_id
        self.state = str(state)
        self.control = control or ("127.0.0.1", free_port())
        self.args = sim_args(cp_id, broker, ca, cert, key, self.state, self.control, **flags)
        self.timeout = timeout
        self.start_timeout = timeout if start_timeout is None else start_timeout
        self.failure = failure
        self.spawn = spawn
        self.proc = None
        self.ctl = None
        self.tolerated = ()  # firmware log lines (prefixes) a test expects and allows

    # -- the process ----------------------------------------------------------------------

    def launch(self):
        """Start the process (its output appended to STATE/sim.log); no waiting."""
        os.makedirs(self.state, exist_ok=True)
        with open(os.path.join(self.state, LOG), "ab") as out:
            self.proc = self.spawn(self.args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=out)
        return self.proc

    async def start(self):
        """Launch it (unless it runs) and connect once its control socket is up."""
        if self.returncode is not None or self.proc is None:
            self.launch()
        self.ctl = await self.connect(self.start_timeout)
        return self

    async def connect(self, timeout=None):
        """A new control connection, waiting for the socket to open (while the process lives)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_connection(*self.control)
                return Control(reader, writer, self.timeout, self.failure)
            except OSError:
                if self.proc.poll() is not None:
                    raise self.failure("simulator %s exited with %s: %s" % (
                        self.cp_id, self.proc.returncode, self.read(LOG, 2000))) from None
                if time.monotonic() > deadline:
                    raise self.failure("simulator %s: no control socket within %g s: %s" % (
                        self.cp_id, timeout, self.read(LOG, 2000))) from None
                await asyncio.sleep(0.05)

    @property
    def returncode(self):
        """The process's exit status, None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def power_cut(self):
        """kill -9: the charger loses power (its firmware dies with the simulator)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    kill = power_cut

    def stop(self):
        """SIGTERM and wait (10 s, then kill -9); the control connection dropped."""
        self._drop()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.power_cut()

    async def terminate(self):
        """`stop` for a running event loop: the wait does not block it."""
        if self.ctl:
            self.ctl.close()
        self._drop()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            deadline = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        if self.proc and self.proc.poll() is None:
            self.power_cut()

    def _drop(self):
        self.ctl = None  # its streams belong to the event loop that opened them

    # -- the control socket ---------------------------------------------------------------

    @property
    def reader(self):
        return self.ctl.reader

    @property
    def writer(self):
        return self.ctl.writer

    async def ask(self, **req):
        return await self.ctl.ask(**req)

    async def request(self, **req):
        return await self.ctl.request(**req)

    async def status(self, connector="1"):
        """One connector's part of a status answer."""
        return (await self.ask(cmd="status"))["connectors"][connector]

    async def until(self, predicate, timeout=None, running=True, pause=0.05):
        return await self.ctl.until(predicate, timeout, running, pause)

    # -- its files and processes ----------------------------------------------------------

    def read(self, name, limit=None):
        """A file of its state folder (the last `limit` characters), "" if there is none."""
        try:
            with open(os.path.join(self.state, name), errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        return text if limit is None else text[-limit:]

    def firmware_log(self):
        return self.read("firmware.log")

    def bad_log(self, limit=2000):
        """The firmware log from its first traceback or MemoryError on (lines starting with
        one of `tolerated` left out), or None if it shows neither."""
        lines = [line for line in self.firmware_log().splitlines()
                 if not line.startswith(self.tolerated)]
        for i, line in enumerate(lines):
            if any(bad in line for bad in BAD_LOG):
                return "\n".join(lines[i:])[:limit]
        return None

    def healthy(self):
        return self.bad_log() is None

    def firmware_pid(self):
        """The pid of the firmware (the `micropython` child of the simulator)."""
        for pid in _children(self.proc.pid):
            try:
                with open("/proc/%d/comm" % pid) as f:
                    if f.read().strip() == "micropython":
                        return pid
            except OSError:
                pass
        raise self.failure("no firmware process under simulator %d" % self.proc.pid)


def _children(pid):
    """Process ids whose parent is `pid`."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % entry) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return found
