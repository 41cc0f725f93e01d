"""tools.sim's command line and control socket: flags, malformed requests, many connections,
a firmware that cannot start."""
import asyncio
import json
import os
import select
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_e2e import Sim, run
from tools import sim as tools_sim
from tools.broker import free_port
from tools.sim import DEPLOYED_MIN_HEAP, UsageError

pytestmark = pytest.mark.usefixtures("twins")


def sim_cli(*args):
    return subprocess.run([sys.executable, "-m", "tools.sim", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,word", [
    ([], "required"),
    (["--id", "CP001", "--broker", "nohost", "--ca", "x", "--cert", "x", "--key", "x",
      "--state", "/tmp/s", "--control", "127.0.0.1:1"], "--broker"),
    (["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca", "/no/ca.pem", "--cert", "x",
      "--key", "x", "--state", "/tmp/s", "--control", "127.0.0.1:1"], "no such file"),
    (["--id", "CP/1", "--broker", "127.0.0.1:8883", "--ca", __file__, "--cert", __file__,
      "--key", __file__, "--state", "/tmp/s", "--control", "127.0.0.1:1"], "--id"),
    (["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca", __file__, "--cert", __file__,
      "--key", __file__, "--state", "/tmp/s", "--control", "127.0.0.1:1", "--connectors",
      "9"], "--connectors"),
    (["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca", __file__, "--cert", __file__,
      "--key", __file__, "--state", "/tmp/s", "--control", "127.0.0.1:1", "--heap", "lots"],
     "--heap"),
    (["--id", "CP001", "--transport", "websocket", "--state", "/tmp/s", "--control",
      "127.0.0.1:1"], "--url"),
])
def test_bad_flags_exit_nonzero_with_one_line(args, word):
    r = sim_cli(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], r.stderr


WS = ["--id", "CP001", "--transport", "websocket", "--state", "/tmp/s", "--control",
      "127.0.0.1:1"]
KEY = "00112233445566778899aabbccddeeff00112233"


@pytest.mark.parametrize("args,profile", [
    (["--url", "ws://127.0.0.1:9000/ocpp"], 0),
    (["--url", "ws://127.0.0.1:9000/ocpp", "--auth-key", KEY, "--security-profile", "1"], 1),
    (["--url", "wss://localhost:9443/ocpp", "--ca", __file__, "--auth-key", KEY], 2),
    (["--url", "wss://localhost:9443/ocpp", "--ca", __file__], 2),
    (["--url", "wss://localhost:9443/ocpp", "--ca", __file__, "--cert", __file__, "--key",
      __file__], 3),
])
def test_the_security_profile_defaults_to_what_the_url_and_credentials_say(args, profile):
    a = tools_sim.parse_args(WS + args)
    assert (a.transport, a.security_profile, a.broker_addr) == ("websocket", profile, None)


@pytest.mark.parametrize("args,word", [
    (["--url", "http://127.0.0.1:9000/ocpp"], "--url"),
    (["--url", "ws://127.0.0.1:port/ocpp"], "--url"),
    (["--url", "ws://127.0.0.1:9000/ocpp", "--broker", "127.0.0.1:8883"], "--broker"),
    (["--url", "ws://127.0.0.1:9000/ocpp", "--security-profile", "2"], "wss://"),
    (["--url", "wss://localhost:9443/ocpp", "--security-profile", "1"], "ws://"),
    (["--url", "ws://127.0.0.1:9000/ocpp", "--auth-key", KEY], "--auth-key"),
    (["--url", "ws://127.0.0.1:9000/ocpp", "--ca", __file__], "--ca"),
    (["--url", "wss://localhost:9443/ocpp", "--cert", __file__], "together"),
    (["--url", "wss://localhost:9443/ocpp", "--security-profile", "3"], "profile 3"),
    (["--url", "wss://localhost:9443/ocpp", "--security-profile", "2", "--cert", __file__,
      "--key", __file__], "profile 3"),
    (["--url", "wss://localhost:9443/ocpp", "--ca", "/no/ca.pem"], "no such file"),
    (["--url", "ws://127.0.0.1:9000/ocpp", "--security-profile", "4"], "--security-profile"),
])
def test_websocket_flags_that_disagree_are_refused(args, word):
    with pytest.raises(UsageError, match=word):
        tools_sim.parse_args(WS + args)


def test_mqtt_refuses_the_websocket_flags_and_still_needs_its_own():
    mqtt = ["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca", __file__, "--cert", __file__,
            "--key", __file__, "--state", "/tmp/s", "--control", "127.0.0.1:1"]
    assert tools_sim.parse_args(mqtt).transport == "mqtt"
    with pytest.raises(UsageError, match="--url is for --transport websocket"):
        tools_sim.parse_args(mqtt + ["--url", "ws://127.0.0.1:9000/ocpp"])
    with pytest.raises(UsageError, match="required: --broker, --cert"):
        tools_sim.parse_args(["--id", "CP001", "--ca", __file__, "--key", __file__, "--state",
                            "/tmp/s", "--control", "127.0.0.1:1"])


def flash_config(tmp_path, *args):
    a = tools_sim.parse_args(["--state", str(tmp_path / "s"), "--control", "127.0.0.1:1",
                            *args])
    fs = tools_sim.prepare_flash(a, 4321)
    with open(os.path.join(fs, "config.json")) as f:
        return fs, json.load(f)


def test_the_flash_of_a_websocket_charger_names_its_central_system(tmp_path):
    ca, cert, key = (tmp_path / "csms-roots.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    for path in (ca, cert, key):
        path.write_text(path.name)
    fs, config = flash_config(
        tmp_path, "--id", "CP 7", "--transport", "websocket", "--url",
        "wss://localhost:9443/ocpp", "--ca", str(ca), "--cert", str(cert), "--key", str(key))
    assert config["id"] == "CP 7" and config["transport"] == "websocket"
    assert config["websocket"] == {"url": "wss://localhost:9443/ocpp", "security_profile": 3,
                                   "ca": "csms-ca.pem", "cert": "cert.pem", "key": "key.pem"}
    assert "mqtt" not in config
    assert config["hardware"]["bus"] == "127.0.0.1:4321" and config["wifi"]
    for name, source in (("csms-ca.pem", ca), ("cert.pem", cert), ("key.pem", key)):
        with open(os.path.join(fs, name)) as f:
            assert f.read() == source.name

    _, config = flash_config(tmp_path / "basic", "--id", "CP001", "--transport", "websocket",
                             "--url", "ws://127.0.0.1:9000/ocpp", "--security-profile", "1",
                             "--auth-key", KEY)
    assert config["websocket"] == {"url": "ws://127.0.0.1:9000/ocpp", "security_profile": 1,
                                   "auth_key": KEY}


def test_the_flash_of_an_mqtt_charger_is_as_before(tmp_path):
    _, config = flash_config(tmp_path, "--id", "CP001", "--broker", "127.0.0.1:8883", "--ca",
                             __file__, "--cert", __file__, "--key", __file__)
    assert "transport" not in config and "websocket" not in config
    assert config["mqtt"] == {"endpoint": "127.0.0.1", "port": 8883, "ca": "ca.pem",
                              "cert": "cert.pem", "key": "key.pem", "keepalive": 60}


def test_a_claim_charger_is_told_its_provisioning_template(tmp_path):
    _, config = flash_config(tmp_path, "--id", "CP001", "--broker", "127.0.0.1:8883", "--ca",
                             __file__, "--cert", __file__, "--key", __file__,
                             "--provision-template", "chargers")
    assert config["mqtt"]["provision_template"] == "chargers"


@pytest.mark.parametrize("args,error", [
    (["--provision-template", "no spaces"], "--provision-template must be 1..36 of"),
    (WS + ["--url", "ws://127.0.0.1:9000/ocpp", "--provision-template", "chargers"],
     "--provision-template is for --transport mqtt"),
])
def test_a_provisioning_template_is_checked(args, error):
    base = [] if args[0] == "--id" else ["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca",
                                          __file__, "--cert", __file__, "--key", __file__,
                                          "--state", "/tmp/s", "--control", "127.0.0.1:1"]
    with pytest.raises(UsageError) as e:
        tools_sim.parse_args(base + args)
    assert error in str(e.value)


@pytest.mark.parametrize("args,transport", [
    (WS + ["--url", "ws://127.0.0.1:9000/ocpp"], "websocket"),
    (["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca", __file__, "--cert", __file__,
      "--key", __file__, "--state", "/tmp/s", "--control", "127.0.0.1:1"], "mqtt"),
])
def test_status_says_which_transport(args, transport, tmp_path):
    a = tools_sim.parse_args(args)
    a.state = str(tmp_path)
    sim = tools_sim.Simulator(a)
    answer = sim.answer(sim._known())
    assert answer["transport"] == transport and answer["mqtt"] is None


def test_malformed_requests_answered_and_sim_keeps_running(make_pki, make_broker, tmp_path):
    pki = make_pki(chargers=("CP001",))
    broker = make_broker(pki)

    async def scenario():
        sim = await Sim(broker, pki, tmp_path / "s", cp_id="CP001").start()
        try:
            for bad in [b"nonsense", b"[1,2]", b'{"cmd":"fly"}', b'{"cmd":"ev","state":"Z"}',
                        b'{"cmd":"ev","connector":9,"state":"B"}',
                        b'{"cmd":"load","connector":1,"amps":"many"}',
                        b'{"cmd":"fault","connector":1,"kind":"fire"}', b'{"cmd":"rfid"}',
                        b'{"cmd":"lock","connector":1,"fail":true}']:  # no --lock
                sim.writer.write(bad + b"\n")
                await sim.writer.drain()
                answer = json.loads(await sim.reader.readline())
                assert answer["ok"] is False and answer["error"], bad
            # several connections at once, each request answered exactly once
            conns = [await asyncio.open_connection(*sim.control) for _ in range(4)]
            for _, w in conns:
                w.write(b'{"cmd":"status"}\n{"cmd":"ev","connector":1,"state":"B"}\n')
                await w.drain()
            for r, w in conns:
                first = json.loads(await r.readline())
                second = json.loads(await r.readline())
                assert first["ok"] and second["ok"]
                assert set(first) >= {"online", "heap_free", "heap_peak", "uptime_ms",
                                      "connectors"}
                c = second["connectors"]["1"]
                assert set(c) >= {"status", "relay", "pilot_amps", "transaction_id",
                                  "energy_wh", "locked"}
                w.close()
            s = await sim.status()
            assert s["status"] == "Preparing" and s["relay"] is False
        finally:
            sim.stop()
    run(scenario())


def test_a_firmware_that_cannot_start_is_reported_at_once(make_pki, make_broker, tmp_path):
    """--code deployed in 60000 bytes dies importing, again and again: status says so at once,
    with the firmware's last words, and a command is refused at once instead of timing out."""
    pki = make_pki(chargers=("CP001",))
    broker = make_broker(pki)

    async def scenario():
        sim = await Sim(broker, pki, tmp_path / "s", code="deployed", heap=60000).start()
        try:
            t0 = time.monotonic()
            first = await sim.ask(cmd="status")
            assert time.monotonic() - t0 < 1.0
            assert first["firmware"] in ("starting", "crashed") and first["online"] is False
            s = await sim.until(lambda s: s["firmware"] == "crashed" and s["restarts"] >= 1,
                                timeout=5, running=False)
            assert s["last_line"].startswith("MemoryError: memory allocation failed"), s
            assert s["online"] is False and s["boots"] >= 2 and s["code"] == "deployed"
            assert set(s) >= {"heap_free", "heap_peak", "uptime_ms", "mqtt", "console",
                              "unlogged_frames", "reader_failed"}
            assert set(s["connectors"]) == {"1"}
            assert set(s["connectors"]["1"]) >= {"status", "relay", "contact", "open_ms",
                                                 "pilot_amps", "transaction_id", "energy_wh"}
            t0 = time.monotonic()
            sim.writer.write(b'{"cmd":"ev","connector":1,"state":"B"}\n')
            await sim.writer.drain()
            answer = json.loads(await asyncio.wait_for(sim.reader.readline(), 2))
            assert time.monotonic() - t0 < 1.0
            # (restarted meanwhile, a later boot may die elsewhere: after 5 failed boots in a
            # row it starts in safe mode, which imports less)
            assert answer["ok"] is False and answer["error"].startswith(
                "firmware not running: MemoryError: memory allocation failed"), answer
        finally:
            sim.stop()
    run(scenario())


@pytest.mark.parametrize("heap,warned", [(100000, True), (DEPLOYED_MIN_HEAP, False)])
def test_deployed_below_its_heap_says_so_first(make_pki, tmp_path, heap, warned):
    pki = make_pki(chargers=("CP001",))
    cert, key = pki.client("CP001")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.sim", "--id", "CP001", "--broker", "127.0.0.1:9",
         "--ca", pki.ca, "--cert", cert, "--key", key, "--state", str(tmp_path / "s"),
         "--control", "127.0.0.1:%d" % free_port(), "--code", "deployed", "--heap", str(heap)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # said before anything else, the twin's build included
        assert select.select([proc.stdout], [], [], 30)[0], "nothing on stdout"
        first = proc.stdout.readline()
        if warned:
            needs = "below the %d bytes --code deployed needs" % DEPLOYED_MIN_HEAP
            assert first.startswith("* warning: --heap 100000 is") and needs in first, first
            assert "--heap 320000" in first
            assert select.select([proc.stderr], [], [], 5)[0], "nothing on stderr"
            err = proc.stderr.readline()
            assert err.startswith("tools.sim: warning: --heap 100000") and needs in err, err
        else:
            assert first.startswith("* simulator CP001"), first
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
