"""`make sim` (tools.devsim): one command brings up broker, Central System and a simulated
charger; commands on stdin drive a charging session; `quit` or Ctrl-C stops everything,
leaving nothing behind."""
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
TIMEOUT = 60.0

pytestmark = [pytest.mark.skipif(
    not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")),
    reason="needs mosquitto"), pytest.mark.usefixtures("twins")]


def descendants(pid):
    """Every live process under `pid`, from /proc (no psutil)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid):
    """True unless the process is gone or a zombie waiting for its reaper."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


class Output:
    """The devsim's stdout, line by line, read in a thread so every wait has a deadline."""

    def __init__(self, stream):
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, predicate, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if predicate(line):
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("not seen within %ss; output:\n%s"
                                     % (timeout, "\n".join(self.lines[-60:])))
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("output ended; output:\n%s" % "\n".join(self.lines[-60:]))
            self.lines.append(line)
            if predicate(line):
                return line


def start_devsim(tmp_path, **popen):
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PATH=os.pathsep.join([VENV_BIN, os.environ.get("PATH", ""), "/usr/sbin"]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.devsim", "--state", str(tmp_path / "state"), "--port", "0"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, bufsize=1, **popen)
    return proc, Output(proc.stdout)


def assert_stopped_cleanly(proc, out, family):
    """Exit status 0, "* stopped" said, no traceback, and every process it started gone."""
    assert proc.wait(TIMEOUT) == 0, "\n".join(out.lines[-40:])
    out.until(lambda l: l == "* stopped", timeout=5)
    assert not any("Traceback" in l for l in out.lines), "\n".join(out.lines)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [(pid, comm(pid)) for pid in family if alive(pid)]
    assert not left, left


def test_devsim_charging_session_and_clean_quit(tmp_path):
    started = time.monotonic()
    proc, out = start_devsim(tmp_path)
    try:
        def send(command):
            proc.stdin.write(command + "\n")
            proc.stdin.flush()

        out.until(lambda l: l.startswith("* ready"))
        online = [i for i, l in enumerate(out.lines) if l.startswith("* charger CP001 online")]
        ready = [i for i, l in enumerate(out.lines) if l.startswith("* ready")]
        assert online and online[0] < ready[0], "\n".join(out.lines)  # ready means online
        out.until(lambda l: l.startswith("[CP001 #1]") and "online" in l and "OFFLINE" not in l)
        send("tap")
        send("charge")
        out.until(lambda l: l.startswith("[CP001 #1] Charging") and "relay CLOSED" in l)
        assert any('"StartTransaction"' in l and "CP001 -> CSMS" in l for l in out.lines), \
            "\n".join(out.lines)
        family = descendants(proc.pid)
        names = {comm(pid) for pid in family}
        assert "mosquitto" in names and "micropython" in names, names
        send("bogus")
        out.until(lambda l: "unknown command" in l)
        send("tap")  # the same card ends the session
        out.until(lambda l: '"StopTransaction"' in l)
        send("quit")
        assert_stopped_cleanly(proc, out, family)
        assert subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout == b""
        print("devsim session: %.1f s" % (time.monotonic() - started))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_devsim_ctrl_c_stops_everything(tmp_path):
    """A terminal's Ctrl-C reaches the whole foreground process group at once."""
    proc, out = start_devsim(tmp_path, start_new_session=True)
    try:
        out.until(lambda l: l.startswith("* ready"))
        family = descendants(proc.pid)
        assert {"mosquitto", "micropython"} <= {comm(pid) for pid in family}
        os.killpg(proc.pid, signal.SIGINT)
        assert_stopped_cleanly(proc, out, family)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_devsim_names_the_last_line_of_a_crashed_firmware(tmp_path, capsys):
    """A firmware that cannot start: `make sim` stops waiting for it to come online and says
    what it last printed, once, not at every poll."""
    import asyncio

    from tools import devsim

    answer = {"ok": True, "online": False, "firmware": "crashed", "restarts": 2,
              "last_line": "MemoryError: memory allocation failed, allocating 414 bytes",
              "connectors": {"1": dict.fromkeys(("status", "relay", "pilot_amps", "energy_wh",
                                                 "transaction_id"))}}

    class Control:  # the simulator's control connection (tools.simclient.Control)
        async def request(self, **req):
            return answer

    rig = devsim.DevSim(devsim.parse_args(["--state", str(tmp_path)]))
    rig.control = Control()

    async def scenario():
        rig.stopping = asyncio.Event()
        await asyncio.wait_for(rig._until_online(), 2)  # at once, not after ONLINE_TIMEOUT
        try:
            await asyncio.wait_for(rig.poll(), 3 * devsim.POLL_INTERVAL)
        except asyncio.TimeoutError:
            pass
    asyncio.run(scenario())
    out = capsys.readouterr().out
    said = ("! charger CP001: firmware crashed (restarted 2 times); it last printed: "
            "MemoryError: memory allocation failed, allocating 414 bytes")
    assert out.count(said) == 1, out
    assert "[CP001 #1] ? | relay open | pilot off | 0 Wh | no tx | OFFLINE | firmware crashed" \
        in out, out


@pytest.mark.parametrize("profile", [0, 1, 2, 3])
def test_devsim_over_websocket_gives_the_charger_what_its_security_profile_needs(tmp_path,
                                                                                 profile):
    """`make sim TRANSPORT=websocket`: no broker; the Central System listens for the charger,
    and the simulator's flags (tools.sim's parser reads them back) let a charger in under
    that profile. (The charger here is a plain WebSocket client: the firmware's side is
    tested end to end elsewhere.)"""
    import asyncio
    import base64
    import json
    import ssl

    from websockets.asyncio.client import connect

    from tools import devsim, simclient
    from tools import sim as tools_sim
    from tools.csms_websocket import authorization_password

    def rig():
        return devsim.DevSim(devsim.parse_args([
            "--state", str(tmp_path), "--transport", "websocket", "--security-profile",
            str(profile), "--port", "0"]))

    async def scenario(front):
        front.stopping = asyncio.Event()
        link = await front._start_websocket()
        try:
            assert front.broker is None
            args = simclient.sim_args(front.cp, state=tmp_path / "CP001",
                                      control=("127.0.0.1", 1), **link)
            a = tools_sim.parse_args(args[3:])
            assert (a.transport, a.url, a.security_profile) == (
                "websocket", front.cs.url, profile)
            assert a.url.startswith("wss://" if profile >= 2 else "ws://")
            headers, tls = {}, None
            if a.auth_key:
                token = a.id.encode() + b":" + authorization_password(a.auth_key)
                headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
            if a.ca:
                tls = ssl.create_default_context(cafile=a.ca)
                if a.cert:
                    tls.load_cert_chain(a.cert, a.key)
            async with connect(a.url + "/" + a.id, subprotocols=["ocpp1.6"], ssl=tls,
                               additional_headers=headers) as ws:
                await ws.send(json.dumps([2, "1", "BootNotification", {
                    "chargePointVendor": "Acme", "chargePointModel": "AC22"}]))
                assert json.loads(await ws.recv())[2]["status"] == "Accepted"
            assert front.cs.chargers["CP001"].certificate_cn == ("CP001" if profile == 3
                                                                  else None)
            return a.auth_key
        finally:
            await front.cs.stop()

    key = asyncio.run(asyncio.wait_for(scenario(rig()), 30))
    assert (key is not None) == (profile in (1, 2))
    if key:  # the charger keeps the key it was given at first boot: so does make sim
        assert asyncio.run(asyncio.wait_for(scenario(rig()), 30)) == key
