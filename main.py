# Runs after boot.py: hand over to the charge point firmware, counting the boots that fail.
#
# data/bootguard ({"n": boots in a row not yet known good, "cause": the last exception}) is
# counted up here at every boot and cleared by the firmware once it has run a stable minute
# (chargepoint.app), and before a reboot it asks for itself. So a boot that fails (an
# exception at import or in run(), a MemoryError, a watchdog reset before the minute is up)
# stays counted; a power-on reset (the power cut, or a brownout) starts the count again. After SAFE_AFTER of them in a row the firmware starts in safe mode
# (chargepoint.app.run(safe=...)): every relay open, the transport and a minimal OCPP set, to
# be repaired remotely; a Reset from the Central System leaves it. Only os and json here.
import json
import os

SAFE_AFTER = 5
_GUARD = "data/bootguard"


def _guard():
    try:
        with open(_GUARD) as f:
            g = json.load(f)
        if isinstance(g, dict) and isinstance(g.get("n"), int):
            return g
    except (OSError, ValueError):
        pass
    return {"n": 0, "cause": None}


def _save(g):
    try:
        try:
            os.mkdir("data")
        except OSError:
            pass
        with open(_GUARD + ".tmp", "w") as f:
            json.dump(g, f)
        os.rename(_GUARD + ".tmp", _GUARD)
    except OSError:
        pass  # a flash that takes nothing: the count stays as it was


_g = _guard()
import machine  # noqa: E402

if machine.reset_cause() == machine.PWRON_RESET:
    _g = {"n": 0, "cause": None}  # the power went (or sagged): the boot before did not fail
_safe = None
if _g["n"] >= SAFE_AFTER:
    _safe = "%d boots failed: %s" % (_g["n"], _g.get("cause") or "reset before a stable minute")
_g["n"] += 1
_save(_g)
try:
    import chargepoint.app

    chargepoint.app.run(safe=_safe)
except Exception as e:
    # The traceback stays on the console; the cause is kept for safe mode's report, and the
    # board resets, so that the next boot counts this one (a new firmware on trial is rolled
    # back the same way: chargepoint.platform.update). Ctrl-C at the console is not an
    # Exception: it still gives the REPL.
    import sys

    sys.print_exception(e)
    _g["cause"] = ("%s: %s" % (type(e).__name__, e))[:80]
    _save(_g)
    machine.reset()
