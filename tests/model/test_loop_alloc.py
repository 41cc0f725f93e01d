"""The idle loop allocates nothing (issue: fast and lean): on the twin, a 2-connector charge
point on fakes runs 10 000 loops with the collector off. Objects the loop made every time
(a tuple to compare statuses, the wall time read as an int past 2**30, a bound method, a
cell for a comprehension's variable) were 113 B a loop, a collection every 1.5 s at 50 loops
a second; what is left is the once-a-second work (charging limits), by simulated time."""
import json
import os
import subprocess

from conftest import ROOT
from tools import twin

PROBE = os.path.join(ROOT, "tests", "mpy", "loop_alloc.py")


def allocated(step_ms, folder):
    folder.mkdir()
    r = subprocess.run([twin.ensure(), "-X", "heapsize=2000000", PROBE, str(step_ms)],
                       cwd=str(folder), capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, MICROPYPATH=".frozen:" + ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_an_idle_loop_allocates_nothing(tmp_path):
    fast = allocated(1, tmp_path / "fast")  # 10 000 loops in 10 s of simulated time
    slow = allocated(20, tmp_path / "slow")  # the same loops over 200 s
    print("10 000 idle loops: %d B over %d ms, %d B over %d ms" % (
        fast["allocated_bytes"], fast["ms"], slow["allocated_bytes"], slow["ms"]))
    assert fast["allocated_bytes"] <= 2000  # nothing per loop: 0.2 B a loop at most
    assert slow["allocated_bytes"] / (slow["ms"] / 1000) <= 100  # what a second's work makes
