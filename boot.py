# boot.py: runs first on every boot.
import json
import os


def _switch_update():
    # An update of our .mpy files (a stock MicroPython image, our code in /lib; see
    # chargepoint.platform.update) goes in here, before any of them is imported: lib.new
    # becomes lib, the old one kept as lib.old. A new lib that has not reached the Central
    # System in three boots is swapped back. Only os and json here: nothing an update
    # brings can break this.
    try:
        with open("data/fwupdate") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return
    if rec.get("kind") != "mpy" or rec.get("state") not in ("ready", "trying"):
        return
    if rec["state"] == "ready":
        os.rename("lib", "lib.old")
        os.rename("lib.new", "lib")
        rec["state"] = "trying"
        rec["boots"] = 0
    rec["boots"] += 1
    if rec["boots"] > 3:
        os.rename("lib", "lib.bad")
        os.rename("lib.old", "lib")
        rec["state"] = "failed"
    with open("data/fwupdate.tmp", "w") as f:
        json.dump(rec, f)
    os.rename("data/fwupdate.tmp", "data/fwupdate")


_switch_update()
del _switch_update

# Then every contactor output is driven to open: GPIO levels survive a soft reset, so a relay
# closed before it would stay closed.
import chargepoint.hardware.esp32  # noqa: E402

chargepoint.hardware.esp32.open_relays()
