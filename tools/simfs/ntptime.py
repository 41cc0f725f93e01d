"""Simulated `ntptime` for the device twin (host only): the host's clock is right already, so
settime() only counts; `fail` makes it raise as an unreachable NTP server does."""
import simheap

_HEAP = simheap.live()
host = "pool.ntp.org"
timeout = 1
calls = [0]
fail = [False]


def time():
    import time as _time
    return _time.time()


def settime():
    calls[0] += 1
    if fail[0]:
        raise OSError(110)  # ETIMEDOUT


simheap.imported("ntptime", _HEAP)
