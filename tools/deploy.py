"""Put the firmware, its configuration and credentials onto a board running MicroPython, with
mpremote, copying only what changed, then reset it.

    python3 -m tools.deploy --port /dev/ttyUSB0 --id CP001      # the folder provisioned/CP001
    python3 -m tools.deploy --port /dev/ttyUSB0 --dir FOLDER [--dry-run]
    python3 -m tools.deploy --dir FOLDER        # the console of the charger `make sim` runs

FOLDER holds config.json and the files it names (mqtt.ca, mqtt.cert, mqtt.key), as
`make provision` writes them. In order:
  1. config.json is checked by the firmware's own checker (chargepoint.devconfig, run on the
     device twin), so a mistake is told here, not by a board that will not boot.
  2. The board is asked (`mpremote exec`) for its MicroPython version, its .mpy ABI, and
     whether our firmware and aiorepl are frozen into its image.
  3. Our image (firmware frozen in): lib/ is not copied. A stock image: lib/ is compiled to
     .mpy with the twin's mpy-cross (MicroPython v1.28.0, tools/twin.py); a board whose .mpy
     ABI differs is refused, naming both. aiorepl is installed with `mpremote mip install
     aiorepl` when config.json asks for the REPL and the board has none.
  4. One mpremote session copies boot.py, main.py, config.json, the credentials and the
     compiled lib/; mpremote's `fs cp` compares SHA-256 hashes on the device and skips what is
     up to date ("Up to date: ..."). Then `reset`.
--dry-run prints every command and runs none (the board is not asked: every step that
depends on its answer is printed, marked with the condition).

Files removed from lib/ are not removed from the board. On a board running the firmware
without "repl", mpremote's Ctrl-C stops the firmware (relays open) for the deploy; with it,
the commands run beside the charging firmware until the reset.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys

from tools import repl, twin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "deploy")
CREDENTIALS = (("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem"))  # devconfig defaults

# Runs on the board: one JSON line. A module is frozen when its __file__ is not a file.
PROBE = """import sys, os, json, gc
def _where(name):
    try:
        m = __import__(name)
    except ImportError:
        return None
    try:
        os.stat(m.__file__)
        return "fs"
    except (OSError, AttributeError):
        return "frozen"
print(json.dumps({"version": list(sys.implementation.version[:3]), "mpy": sys.implementation._mpy,
  "platform": sys.platform, "chargepoint": _where("chargepoint"), "aiorepl": _where("aiorepl"),
  "heap": gc.mem_alloc() + gc.mem_free()}))
"""
# Heap our code needs as .mpy files on a stock image (its bytecode is loaded into the heap):
# make bench's smallest passing heap for the deployed placement is about 202 KB. An ESP32
# without PSRAM has about 110 KB with Wi-Fi up.
DEPLOYED_HEAP = 200000


def heap_warning(board):
    """What to tell the user when our code would go onto a board as .mpy files without the heap
    they need (a board without PSRAM); None when it is frozen or the heap is enough."""
    heap = board.get("heap")
    if board["chargepoint"] == "frozen" or heap is None or heap >= DEPLOYED_HEAP:
        return None
    return ("this board has a %d KB heap (no PSRAM): the firmware as .mpy files needs about "
            "%d KB, as its bytecode is loaded into the heap, and will run out of memory while "
            "starting. Flash our image instead (make flash: the firmware frozen in, about 70 KB "
            "of heap), or use a board with PSRAM" % (heap // 1000, DEPLOYED_HEAP // 1000))


class DeployError(Exception):
    """A reason not to deploy, told to the user in one line."""


def mpremote(port, *args):
    return [sys.executable, "-m", "mpremote", "connect", port, *args]


def compile_lib(dest, cross=None, src_lib=os.path.join(ROOT, "lib")):
    """lib/ compiled to .mpy into `dest` with `cross` (default: the twin's mpy-cross), only
    what is older than its source; a module of ours gone from the sources goes from dest too
    (anything else there, aiorepl installed with mip say, stays)."""
    cross = cross or twin.mpy_cross()
    wanted = set()
    for dirpath, _, files in os.walk(src_lib):
        for name in files:
            if name.endswith(".py"):
                src = os.path.join(dirpath, name)
                dst = os.path.join(dest, os.path.relpath(src, src_lib)[:-3] + ".mpy")
                wanted.add(dst)
                if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    subprocess.run([cross, "-o", dst, src], check=True)
    for dirpath, _, files in os.walk(os.path.join(dest, "chargepoint")):
        for name in files:
            if os.path.join(dirpath, name) not in wanted:
                os.remove(os.path.join(dirpath, name))


def mpy_abi(mpy):
    """(version, sub-version) of .mpy files from sys.implementation._mpy."""
    return mpy & 0xFF, (mpy >> 8) & 3


def cross_abi(cross):
    """(version, sub-version) that `cross` emits, from `mpy-cross --version`."""
    out = subprocess.run([cross, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise DeployError("%s --version: no .mpy version in %r" % (cross, out.strip()))
    return int(m.group(1)), int(m.group(2))


def read_folder(folder):
    """config.json and the credential files it names: [(local path, device name)]."""
    path = os.path.join(folder, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise DeployError("%s: no config.json (make provision writes one)" % folder)
    except ValueError as e:
        raise DeployError("%s: not JSON: %s" % (path, e))
    mqtt = cfg.get("mqtt") if isinstance(cfg.get("mqtt"), dict) else {}
    files = [(path, "config.json")]
    for field, default in CREDENTIALS:
        name = mqtt.get(field, default)
        local = os.path.join(folder, name)
        if not isinstance(name, str) or not os.path.isfile(local):
            raise DeployError("%s: mqtt.%s names %r, which is not in %s"
                              % (path, field, name, folder))
        files.append((local, name))
    return cfg, files


def check_config(folder):
    """The firmware's own checker on the twin: None, or what it says is wrong."""
    code = ("import sys\nfrom chargepoint import devconfig\ntry:\n devconfig.load('config.json')"
            "\nexcept devconfig.ConfigError as e:\n print(e)\n sys.exit(1)")
    r = subprocess.run([twin.ensure(), "-c", code], cwd=folder, capture_output=True,
                       text=True, env=dict(os.environ, MICROPYPATH=".frozen"))
    if r.returncode:
        return (r.stdout + r.stderr).strip() or "rejected"
    return None


def plan(port, files, board, want_repl, lib_dir, cross_version):
    """The mpremote command lines for a board that answered the probe with `board`."""
    if board["chargepoint"] != "frozen":
        abi = mpy_abi(board["mpy"])
        if abi != cross_version:
            raise DeployError(
                "the board runs MicroPython %s, whose .mpy files are v%d.%d; this tree compiles "
                "v%d.%d (MicroPython v1.28.0): flash a v1.28 image (make flash) first"
                % (".".join(map(str, board["version"])), abi[0], abi[1], *cross_version))
    commands = []
    if want_repl and board["aiorepl"] is None:
        commands.append(mpremote(port, "mip", "install", "aiorepl"))
    copy = []
    for local, name in [(os.path.join(ROOT, "boot.py"), "boot.py"),
                        (os.path.join(ROOT, "main.py"), "main.py")] + files:
        copy += ["fs", "cp", local, ":" + name, "+"]
    if board["chargepoint"] != "frozen":
        copy += ["fs", "cp", "-r", lib_dir, ":.", "+"]  # into the current folder, the root
    commands.append(mpremote(port, *copy, "reset"))
    return commands


def probe(port):
    r = subprocess.run(mpremote(port, "exec", PROBE), capture_output=True, text=True,
                       timeout=60)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode or not lines:
        raise DeployError("mpremote could not ask the board on %s: %s"
                          % (port, (r.stderr or r.stdout).strip()[-300:]))
    return json.loads(lines[-1])


def show(cmd, note=""):
    print("$ " + " ".join(shlex.quote(c) for c in cmd) + note, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tools.deploy", description=__doc__.split("\n")[0])
    p.add_argument("--port", help="the board's serial port; default: the console of the "
                   "charger `make sim` runs")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--id", help="deploy provisioned/ID")
    where.add_argument("--dir", help="a folder with config.json and the credentials")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    a = p.parse_args(argv)
    folder = a.dir or os.path.join(ROOT, "provisioned", a.id)
    a.port = a.port or repl.running_console(os.path.join(ROOT, "state"))
    if a.port is None:
        print("tools.deploy: no --port and no simulated charger running", file=sys.stderr)
        return 2
    try:
        cfg, files = read_folder(folder)
        if not a.dry_run:
            problem = check_config(folder)
            if problem:
                raise DeployError("config.json: %s" % problem)
        lib_dir = os.path.join(OUT, "lib")
        cross = twin.mpy_cross()
        want_repl = cfg.get("repl") is True
        if a.dry_run:
            show(mpremote(a.port, "exec", PROBE.strip().splitlines()[0] + "..."),
                 "    # asks the board")
            show([cross, "-o", os.path.join(lib_dir, "..."), "lib/..."],
                 "    # per module, if the image lacks the firmware")
            abi = cross_abi(cross)
            stock = {"chargepoint": None, "aiorepl": None, "mpy": abi[0] | abi[1] << 8,
                     "version": [1, 28, 0]}
            for cmd in plan(a.port, files, stock, want_repl, lib_dir, abi):
                note = "    # if the board has no aiorepl" if "mip" in cmd else ""
                show(cmd, note)
            return 0
        board = probe(a.port)
        print("board: MicroPython %s on %s; firmware %s; aiorepl %s" % (
            ".".join(map(str, board["version"])), board["platform"],
            {"frozen": "frozen in the image", "fs": "in /lib", None: "not there"}[
                board["chargepoint"]], board["aiorepl"] or "not there"), flush=True)
        warning = heap_warning(board)
        if warning:
            print("tools.deploy: warning: " + warning, file=sys.stderr, flush=True)
        commands = plan(a.port, files, board, want_repl, lib_dir, cross_abi(cross))
        if board["chargepoint"] != "frozen":
            compile_lib(lib_dir, cross)
        for cmd in commands:
            show(cmd)
            r = subprocess.run(cmd)
            if r.returncode:
                raise DeployError("mpremote failed (exit %d)" % r.returncode)
    except DeployError as e:
        print("tools.deploy: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
