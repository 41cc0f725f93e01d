"""Simulated `esp32` module (host only): the OTA partitions of an ESP32 with app rollback, as
files, for the firmware's updates on the device twin.

The simulator (tools/sim.py) plays the bootloader (`bootloader()` there). It keeps the
partitions in a folder ($CP_TWIN_FLASH): files `ota_0` and `ota_1` (an `ota_0` never written
holds the twin the simulator was started with), and `otadata.json` {"boot": label,
"states": {label: "new"|"pending"|"valid"|"aborted"}}; it tells the firmware which one it
booted ($CP_TWIN_RUNNING). An image in a partition is a twin binary, which the simulator runs
when it boots that partition. As with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: a "new" image
boots as "pending"; a reset before `mark_app_valid_cancel_rollback()` makes it "aborted" and
the other one boots again.
"""
import simheap

_HEAP = simheap.live()

import json  # noqa: E402
import os  # noqa: E402

_SIZE = 2 * 1024 * 1024  # the twin binary is ~0.8 MB; an ESP32 OTA slot is 1.5 MB
_BLOCK = 4096
_LABELS = ("ota_0", "ota_1")


def _folder():
    return os.getenv("CP_TWIN_FLASH")


def _otadata():
    try:
        with open(_folder() + "/otadata.json") as f:
            return json.load(f)
    except (OSError, ValueError, TypeError):
        return {"boot": "ota_0", "states": {}}


def _save(data):
    path = _folder() + "/otadata.json"
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.rename(path + ".tmp", path)


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0

    def __init__(self, which):
        if which == Partition.RUNNING:
            which = os.getenv("CP_TWIN_RUNNING") or "ota_0"
        elif which == Partition.BOOT:
            which = _otadata()["boot"]
        if which not in _LABELS:
            raise ValueError("no partition %r" % (which,))
        self.label = which
        if _folder() is None:
            raise OSError(19, "no simulated flash (CP_TWIN_FLASH)")  # ENODEV

    def info(self):
        return (0, 16 + _LABELS.index(self.label), 0x10000 + _LABELS.index(self.label) * _SIZE,
                _SIZE, self.label, False)

    def get_next_update(self):
        return Partition(_LABELS[1 - _LABELS.index(self.label)])

    def _path(self):
        return _folder() + "/" + self.label

    def writeblocks(self, block, buf, offset=None):
        path = self._path()
        mode = "r+b"
        try:
            os.stat(path)
        except OSError:
            mode = "wb"
        if block == 0 and not offset:
            mode = "wb"  # an image written from its start replaces what was there
        with open(path, mode) as f:
            f.seek(block * _BLOCK + (offset or 0))
            f.write(buf)

    def readblocks(self, block, buf, offset=None):
        with open(self._path(), "rb") as f:
            f.seek(block * _BLOCK + (offset or 0))
            f.readinto(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return _SIZE // _BLOCK
        if op == 5:  # block size
            return _BLOCK
        if op == 6:  # erase a block: the writes that follow fill it (and block 0 starts
            if arg == 0:  # the image afresh)
                open(self._path(), "wb").close()
            return 0
        return None

    def set_boot(self):
        data = _otadata()
        data["boot"] = self.label
        data["states"][self.label] = "new"
        _save(data)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        data = _otadata()
        running = os.getenv("CP_TWIN_RUNNING") or "ota_0"
        data["states"][running] = "valid"
        _save(data)


simheap.imported("esp32", _HEAP)
