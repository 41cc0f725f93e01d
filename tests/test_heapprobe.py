"""tools.heapprobe: the firmware's idle heap apart from the simulation's, in a minute."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_the_probe_gives_the_firmware_and_the_simulation_apart():
    r = subprocess.run([sys.executable, "-m", "tools.heapprobe", "--samples", "3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=180,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr[-2000:]
    fig = json.loads(r.stdout.strip().splitlines()[-1])
    idle = fig["firmware_idle"]
    assert 20000 < idle["min"] <= idle["median"] <= idle["max"] < fig["total"], fig
    assert 0 < fig["simulation"] < fig["total"] < fig["heapsize"], fig
