"""The simulator's client (tools.simclient), without a simulator: its command line against
tools.sim's own parser, its control connection against a scripted socket, its log check."""
import asyncio
import inspect
import json
import re

import pytest

from tools import sim as sim_cli
from tools.simclient import Simulator, sim_args


def test_every_flag_of_the_simulator_can_be_given_and_reads_back():
    args = sim_args("CP007", ("127.0.0.1", 8883), __file__, __file__, __file__, "/tmp/s",
                    "127.0.0.1:7001", code="deployed", heap=240000, connectors=2,
                    max_amps=16.0, lock=True, meter="s0", console=True,
                    provision_template="chargers")
    assert args[1:3] == ["-m", "tools.sim"]
    a = sim_cli.parse_args(args[3:])
    assert (a.id, a.transport, a.broker_addr, a.control_addr, a.state) == (
        "CP007", "mqtt", ("127.0.0.1", 8883), ("127.0.0.1", 7001), "/tmp/s")
    assert (a.code, a.heap, a.connectors, a.max_amps, a.lock, a.meter, a.console, a.quiet,
            a.provision_template) == ("deployed", 240000, 2, 16.0, True, "s0", True, True,
                                      "chargers")
    websocket = sim_args("CP007", ca=__file__, state="/tmp/s", control="127.0.0.1:7001",
                         transport="websocket", url="wss://127.0.0.1:9443/ocpp",
                         security_profile=2, auth_key="0123456789abcdef0123")
    w = sim_cli.parse_args(websocket[3:])
    assert (w.transport, w.url, w.security_profile, w.auth_key, w.ca, w.cert, w.key,
            w.broker_addr) == ("websocket", "wss://127.0.0.1:9443/ocpp", 2,
                               "0123456789abcdef0123", __file__, None, None, None)
    given = {w for w in args + websocket if w.startswith("--")}
    declared = set(re.findall(r'add_argument\("(--[a-z-]+)"', inspect.getsource(
        sim_cli.parse_args)))
    assert given == declared


def test_a_flag_left_out_keeps_the_simulators_default():
    args = sim_args("CP001", "127.0.0.1:8883", "ca", "cert", "key", "/tmp/s", ("127.0.0.1", 1))
    assert [w for w in args if w.startswith("--")] == [
        "--id", "--broker", "--ca", "--cert", "--key", "--state", "--control", "--quiet"]
    args = sim_args("CP001", state="/tmp/s", control=("127.0.0.1", 1), transport="websocket",
                    url="ws://127.0.0.1:9000/ocpp")
    assert [w for w in args if w.startswith("--")] == [
        "--id", "--transport", "--url", "--state", "--control", "--quiet"]
    assert sim_cli.parse_args(args[3:]).security_profile == 0


class Script:
    """A control socket answering `status` from a list of answers (the last one repeated)
    and anything else with `other`."""

    def __init__(self, answers, other=None):
        self.answers = list(answers)
        self.other = other or {"ok": True}

    async def serve(self, reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            req = json.loads(line)
            if req.get("cmd") == "close":
                break
            if req["cmd"] == "status":
                answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
            else:
                answer = self.other
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        writer.close()


def status(firmware, online):
    return {"ok": True, "firmware": firmware, "online": online, "connectors": {"1": {}}}


def on_script(script, body, failure=AssertionError):
    async def scenario():
        server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sim = Simulator("CP001", "127.0.0.1:1", "ca", "cert", "key", "/nowhere",
                        control=("127.0.0.1", port), timeout=1, failure=failure)

        class Running:  # the process: alive
            def poll(self):
                return None
        sim.proc = Running()
        sim.ctl = await sim.connect()
        try:
            return await body(sim)
        finally:
            sim.ctl.close()
            server.close()
    return asyncio.run(scenario())


def test_until_counts_only_a_running_firmwares_answers_unless_told():
    answers = [status("starting", True), status("crashed", True), status("running", True)]

    async def body(sim):
        return await sim.until(lambda s: s["online"], pause=0)
    assert on_script(Script(answers), body)["firmware"] == "running"

    async def body(sim):
        return await sim.until(lambda s: s["online"], running=False, pause=0)
    assert on_script(Script(answers), body)["firmware"] == "starting"


def test_a_refusal_a_timeout_and_a_closed_socket_raise_the_callers_failure():
    class PhaseError(Exception):
        pass

    async def refused(sim):
        await sim.ask(cmd="ev", connector=1, state="B")
    with pytest.raises(PhaseError, match="firmware not running: MemoryError"):
        on_script(Script([status("crashed", False)],
                         {"ok": False, "error": "firmware not running: MemoryError"}),
                  refused, PhaseError)

    async def never(sim):
        await sim.until(lambda s: False, timeout=0.2)
    with pytest.raises(PhaseError, match="not within 0.2 s; last status"):
        on_script(Script([status("running", True)]), never, PhaseError)

    async def closed(sim):
        await sim.ask(cmd="close")
    with pytest.raises(PhaseError, match="closed its control socket"):
        on_script(Script([status("running", True)]), closed, PhaseError)


def test_the_log_check_skips_tolerated_lines_and_shows_the_first_bad_one(tmp_path):
    sim = Simulator("CP001", "127.0.0.1:1", "ca", "cert", "key", tmp_path)
    assert sim.healthy() and sim.bad_log() is None  # no log yet
    (tmp_path / "firmware.log").write_text(
        "boot\nmqtt: a frame dropped: no memory\nTraceback (most recent call last):\n"
        "  File \"x.py\"\nMemoryError: memory allocation failed\nafter\n")
    assert sim.bad_log(30) == "Traceback (most recent call las"[:30]
    sim.tolerated = ("Traceback", "  File")
    assert sim.bad_log() == "MemoryError: memory allocation failed\nafter"
    sim.tolerated = ("Traceback", "  File", "MemoryError")
    assert sim.healthy()
