"""Wi-Fi reconnect backoff and NTP before TLS, on fakes."""
from chargepoint.hardware.wifi import Wifi
from chargepoint.platform.timesync import TimeSync
from tools.fakes import FakeTicks


class FakeWlan:
    def __init__(self):
        self.up = False
        self.connects = []
        self.active_set = None

    def active(self, on):
        self.active_set = on

    def isconnected(self):
        return self.up

    def connect(self, ssid, password):
        self.connects.append((ssid, password))

    def disconnect(self):
        pass


def test_wifi_reconnects_with_growing_backoff_and_resets_once_up():
    ticks = FakeTicks()
    wlan = FakeWlan()
    w = Wifi(wlan, "garage", "secret", ticks, rand=lambda n: 0)
    assert wlan.active_set is True
    at = []
    for _ in range(130):  # 130 s down
        if w.step() is False and len(wlan.connects) > len(at):
            at.append(ticks.now)
        ticks.advance(1000)
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert gaps[:6] == [1000, 1000, 2000, 4000, 8000, 16000]  # base/2 with no jitter
    assert max(gaps) <= 30000 and wlan.connects[0] == ("garage", "secret")
    wlan.up = True
    assert w.step() is True and w.failures == 0
    wlan.up = False
    n = len(wlan.connects)
    w.step()
    assert len(wlan.connects) == n + 1  # the link went: at once, then backing off afresh


def test_ntp_before_the_first_connect_then_daily_and_retried_when_it_fails():
    ticks = FakeTicks()
    calls = []
    fail = [True]

    def settime():
        calls.append(ticks.now)
        if fail[0]:
            raise OSError(110)
    sync = TimeSync(settime, ticks)
    assert sync.ensure() is False and sync.failures == 1
    assert sync.ensure() is False and len(calls) == 1  # not again at once
    ticks.advance(1000)
    fail[0] = False
    assert sync.ensure() is True and len(calls) == 2
    ticks.advance(3600000)
    assert sync.ensure() is True and len(calls) == 2  # still good
    ticks.advance(86400000)
    assert sync.ensure() is True and len(calls) == 3  # daily
