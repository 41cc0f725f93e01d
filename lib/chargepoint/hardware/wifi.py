"""Wi-Fi station: connect, watch, reconnect with backoff; never blocks the loop."""
from micropython import const

from chargepoint.platform.clock import ticks_add, ticks_diff

_FIRST_MS = const(1000)
_CAP_MS = const(60000)


class Wifi:
    """Drives a `network.WLAN(network.STA_IF)` (`wlan`). `step()` from the loop (cheap): while
    the link is down, `wlan.connect()` (non-blocking on the ESP32) is called again after
    1 s, 2 s, 4 s ... up to 60 s, with jitter so a site's chargers do not all retry at once."""

    def __init__(self, wlan, ssid, password, ticks_ms, rand=None):
        self.wlan = wlan
        self.ssid = ssid
        self.password = password
        self._ticks = ticks_ms
        self._rand = rand or _rand
        self.failures = 0
        self.connects = 0  # connect() calls made
        self._next = None  # ticks before which no connect() is made
        self._up = False
        wlan.active(True)

    def step(self):
        now = self._ticks()
        if self.wlan.isconnected():
            if not self._up:
                self._up = True
                self.failures = 0
                self._next = None
            return True
        if self._up:  # the link just went
            self._up = False
            self._next = None
        if self._next is not None and ticks_diff(self._next, now) > 0:
            return False
        base = min(_CAP_MS, _FIRST_MS << min(self.failures, 16))
        self._next = ticks_add(now, base // 2 + self._rand(base // 2 + 1))
        self.failures += 1
        self.connects += 1
        try:
            self.wlan.disconnect()  # a connect() still in progress would be refused
        except OSError:
            pass
        self.wlan.connect(self.ssid, self.password)
        return False


def _rand(n):
    import random
    return random.getrandbits(16) % n if n > 0 else 0
