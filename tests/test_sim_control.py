"""tools.sim's command line and control socket: flags, malformed requests, many connections."""
import asyncio
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from test_e2e import Sim, run

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
