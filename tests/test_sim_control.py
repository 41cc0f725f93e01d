"""tools.sim's command line and control socket: flags, malformed requests, many connections,
a firmware that cannot start."""
import asyncio
import json
import select
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_e2e import Sim, run
from tools.broker import free_port
from tools.sim import DEPLOYED_MIN_HEAP

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
])
def test_bad_flags_exit_nonzero_with_one_line(args, word):
    r = sim_cli(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], r.stderr


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
            assert answer == {"ok": False, "error": "firmware not running: " + s["last_line"]}
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
            assert "--heap 240000" in first
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
