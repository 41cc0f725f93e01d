# The ESP32 port's start-up as the simulator plays it on the device twin (never on a device):
# with sys.path as a board has it ('', '.frozen', 'lib': MICROPYPATH), run boot.py, then
# main.py, from the device filesystem (the working directory). The unix port runs neither.
for _name in ("boot.py", "main.py"):
    with open(_name) as _f:
        _src = _f.read()
    exec(_src, {"__name__": "__main__"})
    del _src
