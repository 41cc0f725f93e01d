"""Simulated S0 pulse output of an energy meter (host only): a port on the input pin.

`machine.wire(pin_id, S0Model(1000))`; `consume(wh)` adds energy and sends a pulse (the
open collector pulls the line low, then lets it go) for each 1/pulses_per_kwh kWh; `pulse(n)`
sends n pulses. The line idles high (pull-up).

As every meter model of the simulated board (tools/simfs/board_sim.py): `run(amps, seconds)`
steps it (at `volts`), `register()` is None (the count is the firmware's), `fault` is always
"none" (a broken S0 line reads as no consumption).
"""


class S0Model:
    def __init__(self, pulses_per_kwh=1000, volts=230.0):
        self.pulses_per_kwh = pulses_per_kwh
        self.volts = volts
        self.fault = "none"
        self.pulses = 0
        self._pin = None
        self._level = 1
        self._wh = 0.0  # energy not yet worth a pulse

    def bind(self, pin):
        self._pin = pin
        pin.edge(1)

    def level(self):
        return self._level

    def pulse(self, n=1):
        for _ in range(n):
            self.pulses += 1
            for level in (0, 1):
                self._level = level
                if self._pin is not None:
                    self._pin.edge(level)

    def run(self, amps, seconds):
        self.consume(amps * self.volts * seconds / 3600.0)

    def register(self):
        return None

    def consume(self, wh):
        self._wh += wh
        per_pulse = 1000.0 / self.pulses_per_kwh
        n = int(self._wh / per_pulse + 1e-9)
        self._wh -= n * per_pulse
        self.pulse(n)
