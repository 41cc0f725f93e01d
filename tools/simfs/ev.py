"""Simulated EV on the control pilot (host only): sees the EVSE's PWM, gives the ADC the pilot.

Wire one EV to the pilot's generator pin and to its ADC pin::

    car = ev.EV()
    machine.wire(25, car)   # the PWM / steady level the driver sets (port.pwm, port.drive)
    machine.wire(36, car)   # what the ADC reads (port.read_uv), through the divider

`state` is "A".."D" (the EV's resistors) or "E" (pilot shorted to PE: 0 V); `diode = False`
takes the EV's diode out (the low plateau is then minus the high one instead of -12 V).
read_uv() is one sample: while PWM runs, consecutive samples are `sample_us` apart on the
PWM period, high or low as the duty says, so a burst of reads sees both plateaus. `noise_mv`
adds deterministic (seeded) noise of up to that many millivolts to each sample.
"""

HIGH_MV = {"A": 12000, "B": 9000, "C": 6000, "D": 3000, "E": 0}
# The divider: pilot -12..+12 V -> 0.1..3.1 V at the pin, as (uV, mV) at two points.
CALIBRATION = (100000, -12000, 3100000, 12000)
_FULL_SCALE_UV = 3300000  # the ADC saturates


class EV:
    def __init__(self, state="A", noise_mv=0, seed=1, sample_us=37, calibration=CALIBRATION):
        self.state = state
        self.diode = True
        self.noise_mv = noise_mv
        self.sample_us = sample_us
        self.calibration = calibration
        self.freq = None
        self.duty_u16 = None  # while the EVSE's PWM runs
        self.level = 1  # the generator's steady level without PWM: 1 = +12 V, 0 = -12 V
        self._seed = seed
        self._k = 0  # samples taken while PWM ran: the position on the period

    # -- ports ---------------------------------------------------------------------------

    def pwm(self, freq, duty_u16):
        self.freq = freq
        self.duty_u16 = duty_u16  # None: stopped (the driver then drives a steady level)

    def drive(self, level):
        self.level = level

    def read_uv(self):
        uv0, mv0, uv1, mv1 = self.calibration
        uv = uv0 + (self.pilot_mv() - mv0) * (uv1 - uv0) // (mv1 - mv0)
        return max(0, min(_FULL_SCALE_UV, uv))

    # -- what the test looks at ----------------------------------------------------------

    def duty(self):
        """The EVSE's duty in %, or None without PWM."""
        if self.duty_u16 is None:
            return None
        return self.duty_u16 * 100 / 65535

    def amps(self):
        """The current the duty offers (J1772), or None."""
        d = self.duty()
        if d is None or d < 8:
            return None
        return d * 0.6 if d <= 85 else (d - 64) * 2.5

    def pilot_mv(self):
        """One sample of the pilot voltage."""
        state = self.state
        if state == "E":
            mv = 0
        else:
            if self.duty_u16 is not None:
                period = 1000000 // (self.freq or 1000)
                phase = (self._k * self.sample_us) % period
                self._k += 1
                high = phase * 65535 < self.duty_u16 * period
            else:
                high = bool(self.level)
            if high:
                mv = HIGH_MV[state]
            elif state == "A" or self.diode:
                mv = -12000
            else:
                mv = -HIGH_MV[state]
        return mv + self._noise()

    def _noise(self):
        n = self.noise_mv
        if not n:
            return 0
        self._seed = (self._seed * 1103515245 + 12345) & 0x7FFFFFFF
        return (self._seed >> 8) % (2 * n + 1) - n
