"""The REPL on the serial console beside the running firmware: micropython-lib's aiorepl, with
Enter working and the firmware's objects in scope.

aiorepl 0.2.2 (the one frozen from MicroPython v1.28.0) runs a line on LF only, while
terminals (mpremote repl, picocom, screen) send CR for Enter: it reads the console here
through a stream that turns CR into LF. Its raw REPL (mpremote exec, eval, fs ...) reads the
same stream; the raw-paste code mpremote sends has its own line ends, and a CR inside one of
its string literals would read as LF.
"""
import io
import select
import sys

from micropython import const

_POLL = const(3)  # MP_STREAM_POLL
_GET_FILENO = const(10)  # MP_STREAM_GET_FILENO


class _Keys(io.IOBase):
    """sys.stdin with CR read as LF; pollable by asyncio like sys.stdin itself."""

    def __init__(self):
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)

    def read(self, n=-1):
        text = sys.stdin.read(n)
        return text.replace("\r", "\n") if "\r" in text else text

    def ioctl(self, request, arg):
        if request == _POLL:  # the ESP32 asks this
            for _ in self._poll.ipoll(0):
                return arg & select.POLLIN
            return 0
        if request == _GET_FILENO:  # only the unix port asks: it polls descriptor 0 then
            return 0
        return -1


class _Sys:
    """What aiorepl uses of `sys`, with the console's keys as its stdin."""

    def __init__(self):
        self.stdin = _Keys()
        self.stdout = sys.stdout
        self.print_exception = sys.print_exception


def task(names, before_reset):
    """The REPL's task with `names` (cp, board, transport, connectors ...) in its globals, or
    None after saying so when aiorepl is not there (`mpremote mip install aiorepl`).
    `before_reset()` runs when Ctrl-D there resets the firmware."""
    try:
        import aiorepl
    except ImportError:
        print("config: repl: aiorepl is not installed")
        return None
    aiorepl.sys = _Sys()
    g = __import__("__main__").__dict__
    g.update(names)
    return _shell(aiorepl, g, before_reset)


async def _shell(aiorepl, g, before_reset):
    await aiorepl.task(g)
    # aiorepl returns on Ctrl-D only, after dropping every task of the loop (it calls
    # asyncio.new_event_loop()): the firmware cannot go on. What Ctrl-D does at MicroPython's
    # own REPL, a soft reset, is the way on.
    print("console: Ctrl-D: soft reset")
    before_reset()
    import machine

    machine.soft_reset()
