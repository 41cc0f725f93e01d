# boot.py: runs first on every boot.
import binascii
import json
import os


def _switch_update():
    # An update of our .mpy files (a stock MicroPython image, our code in /lib; see
    # chargepoint.platform.update) goes in here, before any of them is imported: lib.new
    # becomes lib, the old one kept as lib.old. A new lib that has not reached the Central
    # System in three boots is swapped back. Only os, json and binascii here: nothing an update
    # brings can break this.
    # The record as chargepoint.platform.store keeps it: a line "#R1 <length> <crc32>",
    # then its JSON; one that does not check out is no update.
    try:
        with open("data/fwupdate", "rb") as f:
            head = f.readline()
            body = f.read()
        if head.startswith(b"#R1 "):
            size, crc = head[4:].split()
            if len(body) != int(size) or binascii.crc32(body) & 0xFFFFFFFF != int(crc, 16):
                return
        else:
            body = head + body
        rec = json.loads(body)
    except (OSError, ValueError):
        return
    if not isinstance(rec, dict) or rec.get("kind") != "mpy" or rec.get("state") not in ("ready", "trying"):
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
    body = json.dumps(rec).encode()
    with open("data/fwupdate.tmp", "wb") as f:
        f.write(b"#R1 %d %08x\n" % (len(body), binascii.crc32(body) & 0xFFFFFFFF))
        f.write(body)
    os.rename("data/fwupdate.tmp", "data/fwupdate")


_switch_update()
del _switch_update

# Then every contactor output is driven to open: GPIO levels survive a soft reset, so a relay
# closed before it would stay closed.
import chargepoint.hardware.esp32  # noqa: E402

chargepoint.hardware.esp32.open_relays()
