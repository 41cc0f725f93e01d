"""The boots that fail, counted (main.py): data/bootguard, {"n": boots in a row not yet known
good, "c": crashes since the last stable hour, "cause": the last exception}, plain JSON.

`begin()` at every boot counts this one and says whether to start in safe mode (the reason,
or None); `clear()` (chargepoint.app: after a stable minute of a normal run) says this boot
did not fail, `clear(crashes=True)` (after a stable hour, and before every reboot the
firmware asks for itself) forgets the crashes too; `failed(exc)` (main.py, for an exception
at import or in the firmware) counts a crash, keeps its cause and resets the board. So a boot
that fails stays counted (an exception, a MemoryError, a watchdog reset before the minute is
up), and so does a crash after the minute: a firmware that raises a minute or more into
every boot is no less broken. A power-on reset (the power cut, or a brownout:
machine.reset_cause()) starts the count of boots again, as the boot before did not fail by
itself; the crashes stay counted. After SAFE_AFTER boots or crashes in a row: safe mode
(chargepoint.app.run(safe=...)). Only os, json and machine here."""
import json
import os

SAFE_AFTER = 5
FOLDER = "data"
NAME = "bootguard"


def _path(folder):
    return folder + "/" + NAME


def _read(folder=FOLDER):
    try:
        with open(_path(folder)) as f:
            g = json.load(f)
        if isinstance(g, dict) and isinstance(g.get("n"), int):
            if not isinstance(g.get("c"), int):
                g["c"] = 0  # (a record of the firmware before crashes were counted)
            return g
    except (OSError, ValueError):
        pass
    return {"n": 0, "c": 0, "cause": None}


def _save(g, folder=FOLDER):
    path = _path(folder)
    try:
        try:
            os.mkdir(folder)
        except OSError:
            pass
        with open(path + ".tmp", "w") as f:
            json.dump(g, f)
        os.rename(path + ".tmp", path)
    except OSError:
        pass  # a flash that takes nothing: the count stays as it was


def begin():
    """Count this boot; the reason for safe mode, or None."""
    import machine

    g = _read()
    if machine.reset_cause() == machine.PWRON_RESET:
        g["n"] = 0
        if not g["c"]:
            g["cause"] = None
    safe = None
    if g["n"] >= SAFE_AFTER:
        safe = "%d boots failed: %s" % (g["n"], g.get("cause") or "reset before a stable minute")
    elif g["c"] >= SAFE_AFTER:
        safe = "%d crashes: %s" % (g["c"], g.get("cause"))
    g["n"] += 1
    _save(g)
    return safe


def clear(folder=FOLDER, crashes=False):
    """This boot did not fail (crashes=True: nor did the ones before, as far as is known)."""
    g = _read(folder)
    if crashes or not g["c"]:
        g = {"n": 0, "c": 0, "cause": None}
    g["n"] = 0
    _save(g, folder)


def failed(exc):
    """An exception ended the firmware: its traceback on the console, its cause kept for safe
    mode's report, and the board reset so that the next boot counts this one (a new firmware
    on trial is rolled back the same way: chargepoint.platform.update)."""
    import machine
    import sys

    sys.print_exception(exc)
    g = _read()
    g["c"] += 1
    g["cause"] = ("%s: %s" % (type(exc).__name__, exc))[:80]
    _save(g)
    machine.reset()
