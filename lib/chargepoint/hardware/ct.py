"""Current transformers (CT clamps) on ADC inputs, as an energy meter."""
import math
import time

from micropython import const

from chargepoint.hardware.meters import _Register
from chargepoint.platform.clock import ticks_add as _ticks_add
from chargepoint.platform.clock import ticks_diff as _ticks_diff
from chargepoint.platform.clock import ticks_ms as _ticks_ms

_WMS_PER_WH = const(3600000)  # W*ms in a Wh


class CtMeter(_Register):
    """Current transformers on ADC inputs (one ADC, or a tuple of them, one per phase), biased
    at mid-rail, with a burden resistor: amps = V_rms(burden) * ratio / burden * calibration.

    Every `interval_ms`, poll() samples `samples` points spread evenly over `cycles` mains
    cycles of `hz` (all phases at each point): that blocks for cycles/hz seconds (20 ms at
    50 Hz). The DC bias is the samples' mean. Below `floor_a` (ADC noise) a phase reads 0 A.
    Power = sum(volts * I) (power factor 1), integrated into the register between readings.
    """

    def __init__(self, adc, volts=230.0, ratio=2000, burden=33.0, calibration=1.0, hz=50,
                 cycles=1, samples=32, floor_a=0.2, interval_ms=1000, ticks_ms=None,
                 ticks_us=None, sleep_us=None):
        _Register.__init__(self)
        self._adcs = tuple(adc) if isinstance(adc, (tuple, list)) else (adc,)
        self.phases = len(self._adcs)
        self._volts = volts
        self._v = (float(volts),) * self.phases
        self._amps_per_mv = ratio / burden * calibration / 1000.0
        self._n = samples
        self._step_us = cycles * 1000000 // (hz * samples)
        self.floor_a = floor_a
        self.interval_ms = interval_ms
        self._ticks = ticks_ms or _ticks_ms
        self._ticks_us = ticks_us or getattr(time, "ticks_us", None) or _host_us
        self._sleep_us = sleep_us or getattr(time, "sleep_us", None) or _host_sleep_us
        self._bias = [0] * self.phases  # mV: last reading's mean, keeps the sums small ints
        self._sum = [0] * self.phases
        self._sq = [0] * self.phases
        self._i = (0.0,) * self.phases
        self._p = 0.0
        self._at = None  # ticks of the last reading
        self._due = self._ticks()
        self._wms = 0  # W*ms not yet a whole Wh
        self._count = 0  # Wh integrated since boot
        self._reading(0)  # counting starts now: restore() continues from here

    def poll(self):
        now = self._ticks()
        if _ticks_diff(now, self._due) < 0:
            return
        self._due = _ticks_add(now, self.interval_ms)
        amps = self.measure()
        p = 0.0
        for a in amps:
            p += self._volts * a
        if self._at is not None:
            dt = _ticks_diff(now, self._at)
            self._wms += int((self._p + p) * dt / 2)  # trapezoid over the interval
            if self._wms >= _WMS_PER_WH:
                whole = self._wms // _WMS_PER_WH
                self._wms -= whole * _WMS_PER_WH
                self._count += whole
        self._at = now
        self._i = amps
        self._p = p
        self._reading(self._count)
        self.ok = True

    def measure(self):
        """RMS amps per phase over whole mains cycles (blocks for them)."""
        adcs = self._adcs
        phases = self.phases
        bias = self._bias
        s = self._sum
        q = self._sq
        for k in range(phases):
            s[k] = 0
            q[k] = 0
        ticks_us = self._ticks_us
        t = ticks_us()
        for _ in range(self._n):
            for k in range(phases):
                d = adcs[k].read_uv() // 1000 - bias[k]
                s[k] += d
                q[k] += d * d
            t = _ticks_add(t, self._step_us)
            wait = _ticks_diff(t, ticks_us())
            if wait > 0:
                self._sleep_us(wait)
        n = self._n
        amps = []
        for k in range(phases):
            mean = s[k] / n
            a = math.sqrt(max(0.0, q[k] / n - mean * mean)) * self._amps_per_mv
            amps.append(a if a >= self.floor_a else 0.0)
            bias[k] += s[k] // n
        return tuple(amps)


def _host_us():
    return int(time.monotonic() * 1000000)


def _host_sleep_us(us):
    time.sleep(us / 1000000)
