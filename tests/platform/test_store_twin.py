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
    r = subprocess.run([twin.ensure(), "-X", "heapsize=400000", PROBE],
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
