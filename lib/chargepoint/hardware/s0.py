"""An energy meter's S0 pulse output."""
from chargepoint.hardware.meters import _Register
from chargepoint.platform.clock import ticks_diff as _ticks_diff
from chargepoint.platform.clock import ticks_ms as _ticks_ms


class S0Meter(_Register):
    """A meter's S0 pulse output on `pin` (an input with pull-up: a pulse pulls it low).

    Pulses are counted by the ESP32's pulse counter (machine.Counter, PCNT `unit`) where the
    firmware has it, else by a pin interrupt that only increments. Power comes from the pulse
    rate over at least `window_ms`, and decays when pulses stop coming; current is power over
    the nominal `volts` spread over `phases`, voltage the nominal one.
    """

    def __init__(self, pin, pulses_per_kwh=1000, volts=230.0, phases=1, unit=0,
                 window_ms=1000, ticks_ms=None):
        _Register.__init__(self)
        self._ppk = pulses_per_kwh
        self._wms = 3.6e9 / pulses_per_kwh  # W*ms per pulse
        self._volts = volts
        self._v = (float(volts),) * phases
        self.phases = phases
        self.window_ms = window_ms
        self._ticks = ticks_ms or _ticks_ms
        self._count = 0
        self._counter = None
        import machine

        counter = getattr(machine, "Counter", None)
        if counter is not None and unit is not None:
            try:
                self._counter = counter(unit, pin, edge=counter.FALLING)
            except (TypeError, ValueError, OSError):
                self._counter = None
        if self._counter is None:
            pin.irq(handler=self._pulse, trigger=pin.IRQ_FALLING)
        self._c0 = self._last_c = self.pulses()
        self._mark_c = self._c0  # pulses and ticks where the power's window began
        self._mark_t = None  # None until a first pulse starts one
        self._p = 0.0
        self._reading(0)  # counting starts now: restore() continues from here
        self.ok = True

    def _pulse(self, pin):
        self._count += 1

    def pulses(self):
        return self._counter.value() if self._counter is not None else self._count

    def poll(self):
        now = self._ticks()
        c = self.pulses()
        if c < self._last_c:  # the counter was reset under us: carry on from here
            d = self._last_c - c
            self._c0 -= d
            self._mark_c -= d
        self._last_c = c
        n = c - self._mark_c
        if n:
            self._reading((c - self._c0) * 1000 // self._ppk)
            if self._mark_t is None:
                self._mark_t = now
                self._mark_c = c
                return
            dt = _ticks_diff(now, self._mark_t)
            if dt >= self.window_ms:
                self._p = n * self._wms / dt
                self._mark_t = now
                self._mark_c = c
        elif self._mark_t is not None and self._p:
            dt = _ticks_diff(now, self._mark_t)
            if dt > 0 and self._wms / dt < self._p:  # slower than a pulse since the last
                self._p = self._wms / dt

    def power_w(self):
        return self._p

    def current_a(self):
        return (self._p / (self._volts * self.phases),) * self.phases

    def voltage_v(self):
        return self._v
