"""Monotonic milliseconds plus a settable wall clock, with OCPP timestamps."""
import time

from micropython import const

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


def ticks_diff(a, b):
    return _ticks_diff(a, b)


def ticks_add(a, b):
    return _ticks_add(a, b)


def civil(days):
    # Days since 1970-01-01 -> (year, month, day); Howard Hinnant's civil_from_days.
    days += 719468
    era = (days if days >= 0 else days - 146096) // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def iso(unix):
    """Unix seconds -> '2026-11-21T13:01:25Z' (UTC, second resolution)."""
    unix = int(unix)
    y, m, d = civil(unix // 86400)
    s = unix % 86400
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, s // 3600, s // 60 % 60, s % 60)


def parse_iso(text, with_ms=False):
    """'YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm]' -> unix seconds (int), or None if malformed.
    with_ms=True: (seconds, milliseconds 0..999), for setting the clock to the millisecond."""
    if not isinstance(text, str) or len(text) < 19 or text[4] != "-" or text[10] not in "Tt ":
        return None
    try:
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
        rest = text[19:]
        ms = 0
        if rest[:1] == ".":
            i = 1
            while i < len(rest) and rest[i] in "0123456789":
                i += 1
            if i == 1:
                return None
            ms = int((rest[1:i] + "00")[:3])
            rest = rest[i:]
        offset = 0
        if rest in ("Z", "z", ""):
            pass
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
            if rest[0] == "-":
                offset = -offset
        else:
            return None
    except ValueError:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    unix = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    return (unix, ms) if with_ms else unix


class Clock:
    """Monotonic ticks for deadlines; wall time only once someone trustworthy has set it.

    Before the wall clock is set, `stamp()` returns a boot-relative marker ("@<boot>:<ms>")
    that `resolve()` rewrites into a real timestamp once the time is known, so the firmware
    never sends a 1970 or 2000 date.
    """

    def __init__(self, boot=0, ticks_ms=None):
        self.boot = boot
        self._ticks = ticks_ms or _ticks_ms
        # [ticks, unix seconds, ms past that second] at one instant, or None while unknown.
        # Integers only: the ESP32's floats are single precision (a unix time as a float is
        # only good to 128 s). Re-based hourly by keep(), so ticks never wrap under it.
        self._base = None

    def ticks_ms(self):
        return self._ticks()

    def since(self, t):
        return _ticks_diff(self._ticks(), t)

    def is_set(self):
        return self._base is not None

    def set_wall(self, unix, ms=0):
        self._base = [self._ticks(), int(unix), ms]

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

    def stamp(self):
        w = self.wall()
        if w is None:
            return "@%d:%d" % (self.boot, self._ticks())
        return iso(w)

    def resolve(self, stamp):
        """Turn a marker from `stamp()` into ISO 8601. Markers from an earlier boot, whose
        offset can no longer be known, take the current time: late but never 1970."""
        if not isinstance(stamp, str) or stamp[:1] != "@":
            return stamp
        if self._base is None:
            return stamp
        boot, _, t = stamp[1:].partition(":")
        if int(boot) == self.boot:
            return iso(self._at(int(t)))
        return iso(self.wall())
