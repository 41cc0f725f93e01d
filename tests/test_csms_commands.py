"""The development Central System's commands (tools.csms_commands): one table behind both front
ends, the command line of tools.csms (each command names its charger) and `make sim`
(tools.devsim: one charger, the simulator's commands added), on a stand-in Central System."""
import asyncio
import json
import os
import re

from conftest import ROOT
from tools import csms_cli, csms_commands, devsim


class Transaction:
    def __init__(self, tx_id, stopped=False):
        self.id, self.stopped = tx_id, stopped


class Charger:
    def __init__(self):
        self.transactions = {7: Transaction(7, stopped=True), 8: Transaction(8)}


class FakeCentralSystem:
    """tools.csms.CentralSystem's request methods, each recorded and answered Accepted."""

    def __init__(self):
        self.requests = []
        self.chargers = {"CP001": Charger()}

    def __getattr__(self, name):
        async def request(*args):
            self.requests.append((name,) + args)
            if name == "get_configuration":
                return {"configurationKey": [{"key": "HeartbeatInterval", "value": "300",
                                              "readonly": False}], "unknownKey": ["Nope"]}
            return {"status": "Accepted"}
        return request


class Simulator:
    """The simulator's control connection: answers every request ok."""

    def __init__(self):
        self.requests = []

    async def request(self, **req):
        self.requests.append(req)
        return {"ok": True, "online": True, "firmware": "running",
                "connectors": {"1": {"status": "Charging", "relay": True, "pilot_amps": 16.0,
                                     "energy_wh": 12, "transaction_id": 42}}}


def console():
    return csms_cli.Console(FakeCentralSystem(), asyncio.Event())


def make_sim(tmp_path):
    front = devsim.DevSim(devsim.parse_args(["--state", str(tmp_path)]))
    front.cs = FakeCentralSystem()
    front.control = Simulator()
    front.stopping = asyncio.Event()
    return front


def run(front, line):
    return asyncio.run(csms_commands.execute(front, line))


def test_both_front_ends_share_the_central_systems_commands():
    for command in csms_cli.TABLE.commands:
        assert devsim.TABLE.find(command.name) is command


def test_the_command_line_names_the_charger_first():
    c = console()
    assert run(c, "remote-start CP002 CAFE0001 2") == \
        'remote-start CP002 CAFE0001 2: {"status": "Accepted"}'
    assert run(c, "set-config CP002 MeterValueSampleInterval 10") == \
        'set-config CP002 MeterValueSampleInterval 10: {"status": "Accepted"}'
    assert run(c, "reset CP002 HARD").endswith('{"status": "Accepted"}')
    assert run(c, "remote-stop CP001") == 'remote-stop CP001: {"status": "Accepted"}'
    assert c.cs.requests == [
        ("remote_start", "CP002", "CAFE0001", 2),
        ("change_configuration", "CP002", "MeterValueSampleInterval", "10"),
        ("reset", "CP002", "hard"),
        ("remote_stop", "CP001", 8)]  # the running transaction
    got = json.loads(run(c, "get-config CP001 HeartbeatInterval").split(": ", 1)[1])
    assert got["configurationKey"][0]["value"] == "300"  # JSON, for pipes


def test_make_sim_drives_its_one_charger(tmp_path):
    front = make_sim(tmp_path)
    assert run(front, "remote-start") is not None
    assert run(front, "trigger MeterValues") is not None
    assert run(front, "get HeartbeatInterval") == (
        "get HeartbeatInterval:\n  HeartbeatInterval = 300\n  unknown: Nope")
    assert run(front, "tap") is None and run(front, "charge") is None
    assert run(front, "load 10") is None
    assert run(front, "status").startswith("status: [CP001 #1] Charging | relay CLOSED")
    assert run(front, "remote-stop") is not None  # the transaction the charger reported
    assert front.cs.requests == [
        ("remote_start", "CP001", csms_commands.DEFAULT_TAG, 1),
        ("trigger_message", "CP001", "MeterValues", None),
        ("get_configuration", "CP001", ["HeartbeatInterval"]),
        ("remote_stop", "CP001", 42)]
    assert front.control.requests[:3] == [
        {"cmd": "rfid", "uid": csms_commands.DEFAULT_TAG},
        {"cmd": "ev", "connector": 1, "state": "C"},
        {"cmd": "load", "connector": 1, "amps": 10.0}]
    assert run(front, "quit") == "quit: stopping" and front.stopping.is_set()


def test_a_wrong_line_gets_one_line_naming_what_fits():
    c = console()
    assert run(c, "reset CP001 warm") == "reset CP001 warm: usage: reset CP soft|hard"
    assert run(c, "remote-stop CP001 x") == \
        "remote-stop CP001 x: usage: remote-stop CP [TRANSACTION_ID]"
    assert run(c, "unlock") == "unlock: usage: unlock CP CONNECTOR"
    assert run(c, "fly CP001") == "fly CP001: unknown command 'fly'; type help"
    assert run(c, "tap CP001") == "tap CP001: unknown command 'tap'; type help"  # make sim's
    assert run(c, "   ") is None
    assert c.cs.requests == []


def test_readme_names_make_sims_commands_as_they_are():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    listed = text[text.index("`make sim` shows every OCPP frame"):text.index("(or Ctrl-C)")]
    names = [word.split()[0] for word in re.findall(r"`([^`]+)`", listed)[1:]]
    assert "remote-start" in names and "tap" in names
    for name in names:
        assert devsim.TABLE.find(name), name
    for command in devsim.TABLE.commands:
        assert command.name in devsim.HELP
