"""Simulated `network` for the device twin (host only): a station interface that associates
with the configured access point shortly after connect(), as an ESP32's does."""
import simheap

_HEAP = simheap.live()

import time  # noqa: E402

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
_ASSOCIATE_MS = 200
ap_up = [True]  # the simulated access point (a test may take it down)


class WLAN:
    _sta = None

    def __new__(cls, interface=STA_IF):
        if WLAN._sta is None:  # one radio: every WLAN(STA_IF) is the same interface
            before = simheap.live()  # a static C object on the ESP32
            WLAN._sta = object.__new__(cls)
            WLAN._sta._init()
            simheap.imported("WLAN", before)
        return WLAN._sta

    def __init__(self, interface=STA_IF):
        pass

    def _init(self):
        self._active = False
        self._since = None
        self.ssid = None
        self.connects = 0

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def connect(self, ssid, password=""):
        if not self._active:
            raise OSError("Wifi Not Started")
        self.ssid = ssid
        self.connects += 1
        self._since = time.ticks_ms()

    def disconnect(self):
        self._since = None

    def isconnected(self):
        return (self._active and ap_up[0] and self._since is not None
                and time.ticks_diff(time.ticks_ms(), self._since) >= _ASSOCIATE_MS)

    def status(self, param=None):
        if param == "rssi":
            return -55
        if self.isconnected():
            return STAT_GOT_IP
        return STAT_CONNECTING if self._since is not None else STAT_IDLE

    def ifconfig(self, config=None):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def config(self, *args, **kw):
        return "esp32-sim" if args == ("hostname",) else None


simheap.imported("network", _HEAP)
