"""The fault campaign's short run (`make soak` is the long one, its figures in README): 300
hostile frames during a session, then power cuts at random moments of sessions, broker restarts and hangs, the Central System
gone for a while, a long outage and hostile bursts, on the twin; then nothing lost, nothing
duplicated, the register never backwards, no MemoryError, no safe mode from power cuts."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_a_short_fault_campaign_loses_and_duplicates_nothing():
    r = subprocess.run(
        [sys.executable, "-m", "tools.soak", "--cuts", "5", "--chargers", "1", "--seed", "7",
         "--long-outages", "1", "--outage-s", "8", "--drain-s", "120", "--hostile", "300",
         "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=420,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.stdout.strip(), r.stderr[-3000:]
    fig = json.loads(r.stdout.strip().splitlines()[-1])
    print(fig)
    assert fig["cuts"] == 5 and fig["transactions_started"] >= 1, fig
    assert fig["lost"] == 0 and fig["duplicated"] == 0 and fig["unfinished"] == 0, fig
    assert fig["register_backwards"] == 0 and fig["memory_errors"] == 0, fig
    assert fig["start_stamps_backwards"] == 0, fig
    assert fig["safe_mode_entries"] == 0 and fig["restarts"] == 0, fig
    assert fig["delivered"] >= fig["transactions_started"], fig
    assert fig["outage_transactions_max"] <= fig["transactions_started"], fig
    stream = fig["hostile_stream"]  # 300 hostile frames during a session first
    assert stream["frames"] == 300 and stream["restarts"] == 0 and stream["boots"] == 1, fig
    assert 0 < stream["heap_peak_bytes"] < 107456, fig
    assert r.returncode == 0, r.stderr[-3000:]
