"""Control pilot (IEC 61851-1 / SAE J1772): the 1 kHz PWM offer and the EV's state read back."""
import time

import machine
from micropython import const

from chargepoint.platform.clock import ticks_diff

_FREQ = const(1000)
_SAMPLES = const(32)  # one burst; at ~40 us a read it spans more than one PWM period
_STABLE_MS = const(500)  # C/D must hold this long before they are reported
_FRESH_MS = const(20)  # state() samples by itself when the last burst is older than this

# The divider's default: pilot -12..+12 V gives 0.1..3.1 V at the ADC pin.
# (uV at the pin, pilot mV) at two points; the map must rise (higher pilot, more uV).
CALIBRATION = (100000, -12000, 3100000, 12000)
# Lowest high plateau (pilot mV) of each state, halfway between the J1772 ranges
# (A 11.4-12.6 V, B 8.36-9.56 V, C 5.48-6.49 V, D 2.62-3.25 V, E ~0 V). Below E's: F (-12 V).
THRESHOLDS = {"A": 10400, "B": 7400, "C": 4400, "D": 1300, "E": -1500}
# While PWM runs the low plateau must be -12 V (J1772 tolerance 0.6 V): above this, the EV's
# diode is missing (its resistors pull the negative half up too).
DIODE_MV = -10500

_STATES = ("A", "B", "C", "D", "E")


def duty_for(amps):
    """PWM duty in % that offers `amps`, or None (below 6 A: no charging). Above 80 A: 80 A."""
    if amps is None or amps < 6:
        return None
    if amps > 80:
        amps = 80
    if amps <= 51:
        return amps * 5 / 3  # A / 0.6, exact for whole amps in single precision
    return amps * 2 / 5 + 64  # A / 2.5 + 64


def _uv(cal, mv):
    uv0, mv0, uv1, mv1 = cal
    return uv0 + (mv - mv0) * (uv1 - uv0) // (mv1 - mv0)


class Pilot:
    """One connector's pilot. `pwm_pin` drives the +-12 V generator (high = +12 V);
    `adc_pin` (an ADC1 GPIO, 32-39) reads the pilot through the divider; both a GPIO id or a
    machine.Pin. `calibration` maps the ADC's microvolts to pilot millivolts (two points),
    `thresholds` moves the lower bounds of THRESHOLDS, `diode_mv` the diode check's limit.
    `ticks_ms`: the millisecond clock (default time.ticks_ms).

    Reading: a burst of `samples` ADC reads taken back to back; the highest is the high
    plateau (it gives the state), the lowest the low plateau (the diode check, done while PWM
    runs and the EV is in B/C/D when the burst caught the low half: at 96 % duty a burst may
    miss it, and then the verdict stays as it was). A missing diode sets `diode_fault`, which
    stays until the EV is unplugged (state A): with the PWM withdrawn it could not be checked
    again, and clearing it would offer and fault again in a loop. The state stays the EV's.

    Debounce: a change into C or D is reported once it has been seen for `stable_ms` (B
    meanwhile when coming from A/E/F: the EV is connected); any other change at once. An A, E
    or F seen by a burst is reported by the next state() even if it has passed since (the
    guard may have acted on it: the model must see it too). state() takes a burst itself when
    the last one is `fresh_ms` old (no guard running, or between its ticks).
    """

    def __init__(self, pwm_pin, adc_pin, ticks_ms=None, calibration=CALIBRATION,
                 thresholds=None, diode_mv=DIODE_MV, samples=_SAMPLES, stable_ms=_STABLE_MS,
                 fresh_ms=_FRESH_MS):
        if calibration[2] <= calibration[0] or calibration[3] <= calibration[1]:
            raise ValueError("pilot calibration must rise")
        self._ticks = ticks_ms or time.ticks_ms
        if isinstance(pwm_pin, machine.Pin):
            pwm_pin.init(machine.Pin.OUT, value=1)
        else:
            pwm_pin = machine.Pin(pwm_pin, machine.Pin.OUT, value=1)
        self._pin = pwm_pin  # steady +12 V: no offer until the model makes one
        self._pwm = None
        if not isinstance(adc_pin, machine.Pin):
            adc_pin = machine.Pin(adc_pin)
        self._read = machine.ADC(adc_pin, atten=machine.ADC.ATTN_11DB).read_uv  # bound once
        self._cal = calibration
        bounds = dict(THRESHOLDS)
        if thresholds:
            bounds.update(thresholds)
        # thresholds in ADC microvolts, so a burst is judged without arithmetic
        self._bounds = [_uv(calibration, bounds[s]) for s in _STATES]
        self._low_seen = self._bounds[4]  # a low half was caught: below E's band
        self._diode_uv = _uv(calibration, diode_mv)
        self._samples = samples
        self._stable_ms = stable_ms
        self._fresh_ms = fresh_ms
        self.duty = None  # % while PWM offers current, else None
        self.now = "A"  # the debounced state (state() may first report a passed A/E/F)
        self.diode_fault = False
        self.high_uv = self.low_uv = 0  # the last burst's plateaus at the pin
        self._pending = None  # A/E/F seen since the last state()
        self._candidate = None  # C/D waiting out the debounce, since _since
        self._since = 0
        self._sampled = None  # ticks of the last burst
        self._busy = False

    # -- the board interface ---------------------------------------------------------------

    def state(self):
        if self._sampled is None or ticks_diff(self._ticks(), self._sampled) >= self._fresh_ms:
            self.sample()
        p = self._pending
        if p is not None:
            self._pending = None
            return p
        return self.now

    def offer(self, amps):
        duty = duty_for(amps)
        if duty is None:
            self._steady(1)
            return
        u16 = int(duty * 655.35 + 0.5)
        # PWM first, duty after: a guard tick in between sees no duty and leaves it, then
        # withdraws it at the next tick if it must (the other order could hide a PWM from it)
        if self._pwm is None:
            self._pwm = machine.PWM(self._pin, freq=_FREQ, duty_u16=u16)
        else:
            self._pwm.duty_u16(u16)
        self.duty = duty

    # -- more ------------------------------------------------------------------------------

    def fault(self):
        """State F: steady -12 V (the EVSE is not available). offer() ends it."""
        self._steady(0)

    def sample(self):
        """Take one burst now and update the state; returns the debounced state."""
        if self._busy:  # a timer callback ran while state() was sampling: one burst is enough
            return self.now
        self._busy = True
        try:
            read = self._read
            high = low = read()
            for _ in range(self._samples - 1):
                v = read()
                if v > high:
                    high = v
                elif v < low:
                    low = v
            self.high_uv = high
            self.low_uv = low
            self._judge(high, low)
        finally:
            self._busy = False
        return self.now

    def plateaus_mv(self):
        """The last burst's (high, low) plateaus in pilot millivolts (diagnostics)."""
        uv0, mv0, uv1, mv1 = self._cal
        return tuple(mv0 + (uv - uv0) * (mv1 - mv0) // (uv1 - uv0)
                     for uv in (self.high_uv, self.low_uv))

    def _steady(self, level):
        if self._pwm is not None:
            self._pwm.deinit()
            self._pwm = None
        self._pin.init(machine.Pin.OUT, value=level)  # PWM is off: a steady level
        self.duty = None

    def _judge(self, high, low):
        b = self._bounds
        raw = "F"
        for i in range(5):
            if high >= b[i]:
                raw = _STATES[i]
                break
        if raw == "A":
            self.diode_fault = False  # unplugged: the next EV is checked afresh
        elif (self._pwm is not None and low < self._low_seen
              and (raw == "B" or raw == "C" or raw == "D")):
            if low > self._diode_uv:
                self.diode_fault = True
        now = self._ticks()
        first = self._sampled is None
        self._sampled = now
        if raw == self.now:
            self._candidate = None
        elif raw == "C" or raw == "D":
            if raw != self._candidate:
                self._candidate = raw
                self._since = now
                if self.now != "B" and self.now != "C" and self.now != "D":
                    self.now = "B"  # connected for sure; asking for charge once debounced
            elif ticks_diff(now, self._since) >= self._stable_ms:
                self.now = raw
                self._candidate = None
        else:
            self.now = raw
            self._candidate = None
            if raw != "B" and self._pending is None and not first:
                self._pending = raw
