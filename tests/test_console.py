"""The firmware's console on the simulator's pseudo-terminal (tools.sim --console), driven by
the real mpremote as an operator would drive a board's USB serial port: debugging never stops
charging, and the safety path does not wait for a command typed at the REPL (issue 10)."""
import asyncio
import os
import subprocess
import sys
import termios
import time
import tty

import pytest

from conftest import ROOT
from test_e2e import T, online, run, start_charging, world  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("twins")
MPREMOTE = [sys.executable, "-m", "mpremote"]


async def mpremote(console, *args, started=None):
    """`mpremote connect CONSOLE ARGS...`: its stdout (it must succeed). With `started`, that
    line of its output is awaited first and `started` (a coroutine function) is run then."""
    proc = await asyncio.create_subprocess_exec(
        *MPREMOTE, "connect", console, *args, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out = b""
    result = None
    if started is not None:
        line = await asyncio.wait_for(proc.stdout.readline(), T)
        out += line
        result = await started()
    rest, err = await asyncio.wait_for(proc.communicate(), T)
    out += rest
    assert proc.returncode == 0, (out + err).decode(errors="replace")
    return out.decode(), result


def meter_values(cp):
    return [f for f in cp.frames if f.direction == "in" and '"MeterValues"' in f.text]


async def charging(make_sim, cs):
    sim = make_sim(console=True)
    cp = await online(sim, cs)
    assert (await cs.change_configuration("CP001", "MeterValueSampleInterval", "1"))[
        "status"] == "Accepted"
    await start_charging(sim, cs, cp, 16.0)
    s = await sim.until(lambda s: s["connectors"]["1"]["relay"])
    return sim, cp, s


def test_mpremote_commands_during_a_session_do_not_stop_it(world):  # noqa: F811
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim, cp, s = await charging(make_sim, cs)
            console = s["console"]
            assert console.startswith("/dev/pts/")
            tx = s["connectors"]["1"]["transaction_id"]
            out, _ = await mpremote(console, "exec",
                                    "print(cp.view()['connectors']['1']['status'])")
            assert out.strip() == "Charging"
            out, _ = await mpremote(console, "eval", "transport.status['state']")
            assert out.strip() == "connected"  # eval prints the value
            out, _ = await mpremote(console, "fs", "ls")
            for name in ("boot.py", "main.py", "config.json", "cert.pem", "data/"):
                assert name in out, out
            out, _ = await mpremote(console, "fs", "cat", ":config.json")
            assert '"id": "CP001"' in out
            # mpremote asked for a soft reset each time: the charger went on regardless
            seen = len(meter_values(cp))
            await cs.wait_for(lambda: len(meter_values(cp)) >= seen + 2, T)
            s = await sim.ask(cmd="status")
            c = s["connectors"]["1"]
            assert s["boots"] == 1 and c["relay"] and c["contact"]
            assert c["transaction_id"] == tx and c["status"] == "Charging"
    run(scenario())


def test_unplug_during_an_mpremote_exec_opens_the_relay_at_once(world):  # noqa: F811
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim, cp, s = await charging(make_sim, cs)

            async def unplug():  # the raw REPL is running the command: the loop is blocked
                t0 = time.monotonic()
                answer = await sim.ask(cmd="ev", connector=1, state="A")
                return answer, time.monotonic() - t0
            out, (answer, waited) = await mpremote(
                s["console"], "exec", "import time\nprint('sleeping')\ntime.sleep(2)\n"
                "print('awake')", started=unplug)
            c = answer["connectors"]["1"]
            print("unplug to contact open during `mpremote exec` sleeping 2 s: %d ms (answer "
                  "after %.2f s)" % (c["open_ms"], waited))
            assert "sleeping" in out and "awake" in out
            assert waited > 1.0  # the firmware's loop only answered once the command ended
            assert 0 <= c["open_ms"] < 100
            assert not c["relay"] and not c["contact"]
            stopped = await cs.wait_for(
                lambda: [t for t in cp.transactions.values() if t.stopped], T)
            assert stopped[0].reason == "EVDisconnected"
    run(scenario())


class Terminal:
    """A person at the console: a raw terminal on the pseudo-terminal, as mpremote repl or
    picocom opens it."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        termios.tcflush(self.fd, termios.TCIFLUSH)  # what was shown before we came
        self.seen = b""

    def type(self, keys):
        os.write(self.fd, keys)

    async def until(self, text, timeout=T):
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, self.seen[-2000:]
            try:
                self.seen += os.read(self.fd, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.02)
        return self.seen

    def close(self):
        os.close(self.fd)


def test_repl_enter_runs_a_line_and_ctrl_d_soft_resets_the_firmware(world):  # noqa: F811
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim, cp, s = await charging(make_sim, cs)
            term = Terminal(s["console"])
            try:
                term.type(b"\r")
                await term.until(b"--> ")
                term.type(b"connectors[0].hw.relay.get()\r")  # Enter sends CR
                seen = await term.until(b"True\r\n")
                assert b"connectors[0].hw.relay.get()\r\n" in seen  # echoed, lines end CR LF
                term.type(b"\x04")  # Ctrl-D at the aiorepl prompt: a soft reset
                await term.until(b"console: Ctrl-D: soft reset")
                s = await sim.until(lambda s: s["boots"] == 2 and s["online"])
                c = s["connectors"]["1"]
                assert not c["relay"] and not c["contact"]
                stopped = await cs.wait_for(
                    lambda: [t for t in cp.transactions.values() if t.stopped], T)
                assert stopped[0].reason == "Reboot"
                await term.until(b"Starting asyncio REPL")  # the REPL is back after the boot
            finally:
                term.close()
    run(scenario())
