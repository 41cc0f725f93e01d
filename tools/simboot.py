# The ESP32 port's start-up as the simulator plays it on the device twin (never on a device):
# with sys.path as a board has it ('', '.frozen', 'lib': MICROPYPATH), run boot.py, then
# main.py, from the device filesystem (the working directory). The unix port runs neither.
import sys

for _name in ("boot.py", "main.py"):
    with open(_name) as _f:
        _src = _f.read()
    exec(_src, {"__name__": "__main__"})
    del _src
# main.py has returned (Ctrl-D at the firmware's REPL, or a configuration it refused): a board
# shows MicroPython's own REPL on its console then, where Ctrl-D soft-resets it and the
# firmware boots again. The twin plays just that key; without a console (stdin at its end)
# the simulator restarts the firmware.
sys.stdout.write("MicroPython REPL (device twin): Ctrl-D soft-resets the board\n>>> ")
while True:
    _c = sys.stdin.read(1)
    if not _c:
        sys.exit(0)
    if _c == "\x04":
        sys.stdout.write("\nMPY: soft reboot\n")
        sys.exit(75)  # the simulator boots the firmware again
