"""FileStore on the twin (MicroPython) and a real LittleFS, the ESP32's filesystem, in a RAM
block device: a full flash, a byte flipped on it, and a flash that fails part-way through a
write (tests/mpy/store_probe.py)."""
import json
import os
import subprocess

import pytest

from conftest import ROOT
from tools import twin

PROBE = os.path.join(ROOT, "tests", "mpy", "store_probe.py")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    r = subprocess.run([twin.ensure(), "-X", "heapsize=1000000", PROBE],
                       cwd=str(tmp_path_factory.mktemp("store")), capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, MICROPYPATH=".frozen:" + ROOT))
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return {c["case"]: c for c in map(json.loads, r.stdout.strip().splitlines())}


def test_a_full_flash_refuses_a_write_and_keeps_everything_written(cases):
    c = cases["full"]
    assert c["written"] > 10 and c["refused"] == ["q.%08d" % c["written"], "OSError: 28"]
    assert c["tx1"] == {"ref": "1.1", "last": [9, "t"]}  # rewritten once room was made
    assert c["q2"] == {"p": "x" * 200} and c["tmp"] == [] and c["failed_after"] is None


def test_a_byte_flipped_on_the_flash_sets_the_record_aside(cases):
    c = cases["flipped"]
    assert c["config"] == {"HeartbeatInterval": "300"}  # the copy before it
    assert c["damaged"] == [["config", "checksum mismatch"]]
    assert c["files"] == ["config.bad", "config.old", "store.r1"]


def test_a_flash_failing_part_way_through_a_write_never_loses_the_record(cases):
    results = cases["fail_nth"]["results"]
    for k, ok, got, damaged in results:
        assert isinstance(ok, bool), (k, ok)  # never raised into the caller
        assert got in ({"n": 1}, {"n": 2}) and damaged == [], (k, got, damaged)
        if ok:
            assert got == {"n": 2}, k
    assert [r[1] for r in results].count(False) >= 3  # the early faults were refused


def test_the_transaction_queue_packs_its_messages_into_blocks_and_survives_power_cuts(cases):
    c = cases["queue"]
    expected = [u for t in range(24)
                for u in ["s%d" % t] + ["m%d.%d" % (t, i) for i in range(3)] + ["e%d" % t]]
    assert c["uids"] == expected  # all of them after a power cut, in order
    assert c["blocks"] <= 15 < 120  # ~ 9 messages a 4 KB block, not a block each
    assert c["after"] == ["m1.1", "m1.2"] and c["after_count"] == 113 and c["damaged"] == []


def test_a_full_flash_sheds_meter_values_keeps_every_start_and_stop_and_stops_sessions(cases):
    c = cases["queue_full"]
    # sessions 24..: Start, six MeterValues, Stop each, until a Start or Stop had to wait in
    # the RAM; every Start and Stop still queued (of session 1 its Stop: its Start answered)
    assert 0 < c["held"] <= 2 and not c["room"]
    assert c["ends"][:3] == ["e1", "s2", "e2"] and c["ends_count"] == 1 + 2 * (c["sessions"] - 2)
