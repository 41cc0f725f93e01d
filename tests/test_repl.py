"""`make repl` (tools/repl.py): which console it opens without PORT."""
import json
import os
import subprocess
import sys

from conftest import ROOT
from tools import repl


def console_file(state, cp_id, path, pid):
    os.makedirs(os.path.join(state, cp_id))
    with open(os.path.join(state, cp_id, "console"), "w") as f:
        json.dump({"path": path, "pid": pid}, f)


def test_finds_the_console_of_the_running_simulator(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    console_file(str(tmp_path), "CP000", "/dev/pts/98", dead.pid)  # left by a killed sim
    console_file(str(tmp_path), "CP001", "/dev/pts/99", os.getpid())
    assert repl.running_console(str(tmp_path)) == "/dev/pts/99"


def test_without_port_or_simulator_it_says_what_to_do(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools.repl", "--state", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "make sim" in r.stderr and "PORT=" in r.stderr
