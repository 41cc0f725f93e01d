"""The device clock: monotonic milliseconds plus a settable wall clock, stamping OCPP times."""
import time

from micropython import const

from chargepoint.ocpp.timestamps import iso, parse_iso

_REBASE_MS = const(3600000)

try:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _ticks_add = time.ticks_add
except AttributeError:  # CPython: monotonic ms that never wrap
    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b

    def _ticks_add(a, b):
        return a + b


def ticks_ms():
    return _ticks_ms()


def ticks_diff(a, b):
    return _ticks_diff(a, b)


def ticks_add(a, b):
    return _ticks_add(a, b)


class Clock:
    """Monotonic ticks for deadlines; wall time only once someone trustworthy has set it.

    Before the wall clock is set, `stamp()` returns a boot-relative marker ("@<boot>:<ms>")
    that `resolve()` rewrites into a real timestamp once the time is known, so the firmware
    never sends a 1970 or 2000 date. `boots` holds, for this boot and the ones before it
    (the charge point keeps them on flash), [unix time in ms at ticks 0 of that boot, exact]: a
    marker of this boot is resolved exactly once the clock is set; one of another boot from
    its entry: exact when the clock was set in that boot, else an estimate (the last wall
    time known before the boot, never less than anything stamped before it; see
    chargepoint.model.chargepoint). A boot with an estimate also writes it into its markers
    ("@<boot>:<ms>:<unix s>"): the entries kept are bounded (the last 32 boots), and a
    charger cut again and again through a long outage would otherwise send its oldest
    markers with the time they are resolved. Only a marker of a boot that had neither is
    resolved to the time it is sent.
    """

    def __init__(self, boot=0, ticks_ms=None):
        self.boot = boot
        self._ticks = ticks_ms or _ticks_ms
        # [ticks, unix seconds, ms past that second] at one instant, or None while unknown.
        # Integers only: the ESP32's floats are single precision (a unix time as a float is
        # only good to 128 s). Re-based hourly by keep(), so ticks never wrap under it.
        self._base = None
        self.boots = {}  # boot number -> [unix ms at its ticks 0, exact (True/False)]

    def ticks_ms(self):
        return self._ticks()

    def since(self, t):
        return _ticks_diff(self._ticks(), t)

    def after(self, ms):
        """The ticks `ms` from now: a deadline, reached once since() of it is >= 0."""
        return _ticks_add(self._ticks(), ms)

    def is_set(self):
        return self._base is not None

    def set_wall(self, unix, ms=0):
        self._base = [self._ticks(), int(unix), ms]
        known = self.boots.get(self.boot)
        if known is None or not known[1]:  # the first time in this boot: its markers' base
            self.boots[self.boot] = [self.zero(), True]

    def zero(self):
        """The unix time (ms) of this boot's ticks 0, once the clock is set."""
        b = self._base
        return b[1] * 1000 + b[2] - b[0]

    def keep(self):
        """Call often (every loop): moves the base forward once an hour, long before the
        ESP32's ticks_ms (period 2**30 ms, 12.4 days) could wrap under it."""
        b = self._base
        if b is not None:
            now = self._ticks()
            elapsed = _ticks_diff(now, b[0]) + b[2]
            if elapsed >= _REBASE_MS:
                b[0] = now
                b[1] += elapsed // 1000
                b[2] = elapsed % 1000

    def _at(self, ticks):
        b = self._base
        return b[1] + (_ticks_diff(ticks, b[0]) + b[2]) // 1000

    def wall(self):
        """Unix seconds (int) or None when the clock has never been set."""
        if self._base is None:
            return None
        return self._at(self._ticks())

    def _marker(self, stamp):
        """(entry of its boot or None, its ticks, the estimate written in it or None) of a
        marker; ValueError for a malformed one."""
        parts = stamp[1:].split(":")
        return (self.boots.get(int(parts[0])), int(parts[1]),
                int(parts[2]) if len(parts) > 2 else None)

    def estimate(self):
        """Unix seconds: the wall time, or while it is unknown this boot's estimate (from the
        last wall time kept on flash, see the class); None when there is neither."""
        if self._base is not None:
            return self._at(self._ticks())
        known = self.boots.get(self.boot)
        return None if known is None else (known[0] + self._ticks()) // 1000

    def stamp(self):
        w = self.wall()
        if w is None:
            t = self._ticks()
            known = self.boots.get(self.boot)
            if known is None:
                return "@%d:%d" % (self.boot, t)
            return "@%d:%d:%d" % (self.boot, t, (known[0] + t) // 1000)
        return iso(w)

    def seconds(self, stamp):
        """Unix seconds of a stamp: ISO 8601, or a marker of a boot with an entry (exact or
        estimated); None for anything else."""
        if stamp[:1] != "@":
            return parse_iso(stamp)
        try:
            known, t, estimate = self._marker(stamp)
        except (ValueError, IndexError):
            return None
        return estimate if known is None else (known[0] + t) // 1000

    def resolve(self, stamp):
        """Turn a marker from `stamp()` into ISO 8601 (see the class). A marker is kept as it
        is while the clock is not set."""
        if not isinstance(stamp, str) or stamp[:1] != "@":
            return stamp
        if self._base is None:
            return stamp
        try:
            known, t, estimate = self._marker(stamp)
        except (ValueError, IndexError):  # not one of ours (a record of another firmware)
            return iso(self.wall())
        if known is not None:
            return iso((known[0] + t) // 1000)  # (as the clock was when first set: a step
            # of the clock later on does not move what was taken before it)
        if estimate is not None:  # its boot's entry is gone: the estimate it was taken with
            return iso(estimate)
        return iso(self.wall())  # nothing known of that boot: late, but never 1970
