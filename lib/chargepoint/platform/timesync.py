"""NTP for the RTC: before the first TLS connect (mbedTLS checks certificate dates) and daily."""
from micropython import const

from chargepoint.platform.clock import ticks_diff

_DAY_MS = const(86400000)
_RETRY_MS = const(60000)


class TimeSync:
    """`ensure()` runs in the network thread before each connect (it blocks for the NTP round
    trip, up to about a second). `settime` is `ntptime.settime`. The OCPP clock stays the
    Central System's (BootNotification/Heartbeat currentTime); this one is for TLS.
    `wall` (time.time) reads the RTC: with it, each of `step_listeners` is told (seconds), in
    the network thread, how far each sync moved the RTC (the security feature registers for
    the SettingSystemTime event). `say(text)`: the console line of a failed sync (app.py
    gives the event log's say, which prints it too)."""

    def __init__(self, settime, ticks_ms, wall=None, say=print):
        self._settime = settime
        self._ticks = ticks_ms
        self._wall = wall
        self._say = say
        self.step_listeners = []
        self.synced_at = None  # ticks of the last good sync
        self.tried_at = None
        self.failures = 0

    def due(self, now):
        if self.synced_at is None:
            return self.tried_at is None or ticks_diff(now, self.tried_at) >= _RETRY_MS // 60
        if ticks_diff(now, self.synced_at) >= _DAY_MS:
            return self.tried_at is None or ticks_diff(now, self.tried_at) >= _RETRY_MS
        return False

    def ensure(self):
        now = self._ticks()
        if not self.due(now):
            return self.synced_at is not None
        self.tried_at = now
        before = self._wall() if self._wall is not None else None
        try:
            self._settime()
        except (OSError, OverflowError, IndexError) as e:  # no answer, or a bad packet
            self.failures += 1
            self._say("ntp: no time: %s" % e)
            return self.synced_at is not None
        self.synced_at = now
        if before is not None and self.step_listeners:
            # what the RTC moved, less the time the sync itself took
            moved = self._wall() - before - ticks_diff(self._ticks(), now) // 1000
            for listener in self.step_listeners:
                listener(moved)
        return True
