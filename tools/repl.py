"""mpremote's REPL on a board's serial port, or on the console of the simulated charger that
`make sim` runs (tools.sim --console writes STATE/<id>/console while it runs).

    python3 -m tools.repl [--port /dev/ttyUSB0] [--state state]

With the firmware's "repl" on, the prompt is aiorepl's (`--> `) beside the running firmware:
README lists what is in scope. Ctrl-] leaves mpremote; Ctrl-D at the prompt soft-resets the
firmware (its transactions stop first).
"""
import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def running_console(state):
    """The console path of a simulator running with --console under `state`, or None."""
    for path in sorted(glob.glob(os.path.join(state, "*", "console"))):
        try:
            with open(path) as f:
                info = json.load(f)
            os.kill(info["pid"], 0)  # left behind by a simulator that was killed?
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return info["path"]
    return None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tools.repl", description=__doc__.split("\n")[0])
    p.add_argument("--port", help="serial port; default: the console of `make sim`'s charger")
    p.add_argument("--state", default=os.path.join(ROOT, "state"),
                   help="the state folder of `make sim` (default: state/)")
    a = p.parse_args(argv)
    port = a.port or running_console(a.state)
    if port is None:
        print("tools.repl: no PORT given and no simulated charger running (`make sim` in "
              "another terminal, or make repl PORT=/dev/ttyUSB0)", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "mpremote", "connect", port, "repl"]
    print("$ " + " ".join(argv), flush=True)
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    sys.exit(main())
