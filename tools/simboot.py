# The ESP32 port's start-up as the simulator plays it (this file never goes onto a device).
# The firmware's code is a ROMFS image in flash there: mounted at /rom, executed in place,
# with /rom and /rom/lib on sys.path. Here the image is read into one buffer allocated
# before anything else (the simulator adds its size to -X heapsize, standing in for flash);
# then boot.py and main.py run from the device filesystem, the working directory.
import os
import sys
import vfs


def _mount(path):
    buf = bytearray(os.stat(path)[6])
    with open(path, "rb") as f:
        f.readinto(buf)
    vfs.mount(vfs.VfsRom(buf), "/rom")


_mount(sys.argv[1])
del _mount
sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "lib"]  # lib: the filesystem's own
for _name in ("boot.py", "main.py"):
    with open(_name) as _f:
        _src = _f.read()
    exec(_src, {"__name__": "__main__"})
