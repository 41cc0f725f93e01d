"""Simulated current transformer on an ADC input (host only): a sine around a mid-rail bias.

`machine.wire(pin_id, CtModel(amps=16.0))`: each ADC read_uv() gives the burden voltage of
`amps` RMS at `hz` at the instant of `clock_us()` (the host's microseconds unless given, so a
test can step time with the driver's sleeps): bias + sqrt(2) * amps / ratio * burden * sin.

As every meter model of the simulated board (tools/simfs/board_sim.py): `run(amps, seconds)`
sets the current, `register()` is None (the count is the firmware's), `fault` is always
"none" (a broken clamp reads as no current).
"""
import math
import time


def _host_us():
    if hasattr(time, "ticks_us"):
        return time.ticks_us()
    return int(time.monotonic() * 1000000)


class CtModel:
    def __init__(self, amps=0.0, hz=50.0, ratio=2000, burden=33.0, bias_uv=1650000,
                 clock_us=None, phase=0.0):
        self.amps = amps
        self.hz = hz
        self.ratio = ratio
        self.burden = burden
        self.bias_uv = bias_uv
        self.phase = phase
        self.reads = 0
        self.fault = "none"
        self._clock = clock_us or _host_us

    def run(self, amps, seconds):
        self.amps = amps

    def register(self):
        return None

    def read_uv(self):
        self.reads += 1
        peak = math.sqrt(2) * self.amps / self.ratio * self.burden * 1000000
        angle = 2 * math.pi * self.hz * (self._clock() % 1000000) / 1000000 + self.phase
        return int(self.bias_uv + peak * math.sin(angle))
