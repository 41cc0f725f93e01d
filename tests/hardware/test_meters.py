"""Energy meters (SDM over Modbus, S0 pulses, CT on an ADC) against their device models."""
import math
import os
import struct
import subprocess

import machine  # tools/simfs/machine.py, on sys.path through conftest.py
import pytest
from ct_model import CtModel
from tools.fakes import FakeTicks
from s0_model import S0Model
from sdm_model import SdmModel

from chargepoint.hardware.ct import CtMeter
from chargepoint.hardware.s0 import S0Meter
from chargepoint.hardware.sdm import SdmMeter, _wh
from chargepoint.hardware.modbus import Modbus

UART_ID, S0_PIN, CT_PINS = 2, 27, (34, 35, 36)


# -- SDM over Modbus ---------------------------------------------------------------------------


class Sdm:
    """A meter model on UART 2 and the driver reading it, in fake time."""

    def __init__(self, phases=3, load=16.0, energy_kwh=100.0, slave=1, bus=None, ticks=None):
        self.ticks = ticks or FakeTicks()
        self.model = SdmModel(slave=slave, phases=phases, load=load, energy_kwh=energy_kwh)
        if bus is None:
            machine.wire_bus("uart", UART_ID, self.model)
            bus = Modbus(machine.UART(UART_ID, 9600), ticks_ms=self.ticks)
        self.bus = bus
        self.meter = SdmMeter(bus, slave=slave, phases=phases, ticks_ms=self.ticks)

    def run(self, ms, meters=None):
        """The charge point's loop: poll every 20 ms for `ms`."""
        for _ in range(ms // 20):
            for m in meters or (self.meter,):
                m.poll()
            self.ticks.advance(20)


def test_sdm630_three_phases():
    s = Sdm(phases=3, load=(16.0, 10.0, 6.5), energy_kwh=1234.567)
    s.run(200)
    m = s.meter
    assert m.ok
    assert m.energy_wh() == 1234567
    assert m.voltage_v() == (230.0, 230.0, 230.0)
    assert m.current_a() == (16.0, 10.0, 6.5)
    assert m.power_w() == 230.0 * 32.5
    assert isinstance(m.energy_wh(), int)


def test_sdm120_one_phase():
    s = Sdm(phases=1, load=13.5, energy_kwh=42.001)
    s.run(200)
    m = s.meter
    assert m.ok
    assert (m.energy_wh(), m.voltage_v(), m.current_a()) == (42001, (230.0,), (13.5,))
    assert m.power_w() == 230.0 * 13.5


def test_sdm_energy_follows_the_meter_each_interval():
    s = Sdm(load=16.0, energy_kwh=10.0)
    s.run(200)
    assert s.meter.energy_wh() == 10000
    s.model.advance(3600)  # an hour at 3 x 16 A x 230 V
    s.run(1000)
    assert s.meter.energy_wh() == 10000 + 11040


def test_sdm_poll_never_waits_on_the_bus():
    s = Sdm()
    calls = []
    real = s.bus.request
    s.bus.request = lambda *a: calls.append(a) or real(*a)
    s.run(1000)
    # one cycle per second (energy, V and I, power), one request per poll at most
    assert calls == [(1, 0x48, 2), (1, 0x00, 12), (1, 0x34, 2)]


@pytest.mark.parametrize("fault", ["crc", "silent", "slave"])
def test_bus_fault_makes_meter_not_ok_and_keeps_values(fault):
    s = Sdm(load=16.0, energy_kwh=50.0)
    s.run(200)
    before = (s.meter.energy_wh(), s.meter.power_w(), s.meter.current_a())
    s.model.fault = fault
    s.model.advance(600)
    s.run(3000)
    m = s.meter
    assert not m.ok
    assert m.error == {"crc": "crc", "silent": "timeout", "slave": "slave"}[fault]
    assert (m.energy_wh(), m.power_w(), m.current_a()) == before  # kept, never zero
    s.model.fault = "none"
    s.run(1000)
    assert m.ok and m.energy_wh() == 50000 + 1840


def test_meter_silent_from_boot_reads_the_restored_register_not_zero():
    s = Sdm()
    s.model.fault = "silent"
    s.meter.restore(77000)
    s.run(2000)
    assert not s.meter.ok and s.meter.energy_wh() == 77000


def test_register_never_goes_back_when_the_meter_is_replaced():
    s = Sdm(energy_kwh=500.0)
    s.run(200)
    assert s.meter.energy_wh() == 500000
    s.model.energy_kwh = 2.0  # a new meter
    seen = []
    for _ in range(5):
        s.run(1000)
        seen.append(s.meter.energy_wh())
    assert seen == [500000] * 5
    s.model.energy_kwh = 2.5
    s.run(1000)
    assert s.meter.energy_wh() == 500500  # counts on from where it was


def test_restore_below_the_meter_takes_the_meter():
    s = Sdm(energy_kwh=5.0)
    s.meter.restore(1000)
    s.run(200)
    assert s.meter.energy_wh() == 5000


def test_restore_above_the_meter_continues_from_the_restored_value():
    s = Sdm(energy_kwh=0.1)
    s.meter.restore(9000)
    s.run(200)
    assert s.meter.energy_wh() == 9000 and s.meter.register() == 9000
    s.model.energy_kwh = 0.15
    s.run(1000)
    assert s.meter.energy_wh() == 9050


def test_two_meters_share_one_bus():
    ticks = FakeTicks()
    a = SdmModel(slave=1, phases=3, load=16.0, energy_kwh=1.0)
    b = SdmModel(slave=2, phases=1, load=8.0, energy_kwh=2.0)

    class Bus:  # both meters on the same pair of wires
        def rx(self, data):
            a.rx(data)
            b.rx(data)

        def tx(self):
            return a.tx() + b.tx()

    machine.wire_bus("uart", UART_ID, Bus())
    bus = Modbus(machine.UART(UART_ID, 9600), ticks_ms=ticks)
    s1 = Sdm(slave=1, bus=bus, ticks=ticks)
    s2 = Sdm(phases=1, slave=2, bus=bus, ticks=ticks)
    s1.run(400, meters=(s1.meter, s2.meter))
    assert s1.meter.ok and s2.meter.ok
    assert (s1.meter.energy_wh(), s2.meter.energy_wh()) == (1000, 2000)
    assert s2.meter.current_a() == (8.0,)


@pytest.mark.parametrize("kwh, wh", [(1.234, 1234), (0.0, 0), (16777.215, 16777215),
                                     (100000.5, 100000500), (9999999.0, 9999999000)])
def test_energy_decoded_exactly(kwh, wh):
    assert _wh(b"\x00\x00\x00" + struct.pack(">f", kwh), 3) == wh


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 3e7])
def test_impossible_energy_is_rejected(value):
    assert _wh(struct.pack(">f", value), 0) == -1


# -- S0 pulses ---------------------------------------------------------------------------------


def s0(ppk=1000, **kw):
    model = S0Model(ppk)
    machine.wire(S0_PIN, model)
    ticks = FakeTicks()
    meter = S0Meter(machine.Pin(S0_PIN, machine.Pin.IN, machine.Pin.PULL_UP), ppk,
                    ticks_ms=ticks, **kw)
    return model, meter, ticks


def test_s0_counts_pulses():
    model, meter, _ = s0()
    assert meter.ok and meter.energy_wh() == 0
    model.consume(1500)
    meter.poll()
    assert model.pulses == 1500 and meter.energy_wh() == 1500


def test_s0_fractional_pulse_value():
    model, meter, _ = s0(ppk=800)  # 1.25 Wh a pulse
    model.pulse(10)
    meter.poll()
    assert meter.energy_wh() == 12
    model.pulse(2)
    meter.poll()
    assert meter.energy_wh() == 15


def test_s0_continues_from_the_restored_register():
    model, meter, _ = s0()
    meter.restore(5000)
    model.pulse(10)
    meter.poll()
    assert meter.energy_wh() == 5010 and meter.register() == 5010


@pytest.mark.parametrize("watts", [7360.0, 1380.0, 22000.0])
def test_s0_power_from_the_pulse_rate(watts):
    model, meter, ticks = s0()
    for _ in range(1000):  # 20 s of the loop
        model.consume(watts * 20 / 3600000)
        ticks.advance(20)
        meter.poll()
    assert meter.power_w() == pytest.approx(watts, rel=0.03)
    assert meter.current_a()[0] == pytest.approx(watts / 230.0, rel=0.03)
    assert meter.voltage_v() == (230.0,)


def test_s0_power_falls_when_pulses_stop():
    model, meter, ticks = s0()
    for _ in range(500):
        model.consume(7360 * 20 / 3600000)
        ticks.advance(20)
        meter.poll()
    for _ in range(3000):  # a minute without pulses
        ticks.advance(20)
        meter.poll()
    assert meter.power_w() < 100


def test_s0_uses_the_hardware_pulse_counter_when_there_is_one(monkeypatch):
    class Counter:
        FALLING = 2
        made = []

        def __init__(self, unit, src, edge=1):
            self.count = 0
            Counter.made.append((unit, src.id, edge))

        def value(self):
            return self.count

    monkeypatch.setattr(machine, "Counter", Counter, raising=False)
    pin = machine.Pin(S0_PIN, machine.Pin.IN)
    meter = S0Meter(pin, 1000, unit=1, ticks_ms=FakeTicks())
    assert Counter.made == [(1, S0_PIN, 2)] and pin._handler is None
    meter._counter.count = 250
    meter.poll()
    assert meter.energy_wh() == 250
    meter._counter.count = 0  # re-initialised under us
    meter.poll()
    meter._counter.count = 5
    meter.poll()
    assert meter.energy_wh() == 255


# -- CT on an ADC ------------------------------------------------------------------------------


class Micros:
    """Microseconds that move only when the driver sleeps between samples."""

    def __init__(self):
        self.us = 0

    def ticks_us(self):
        return self.us

    def sleep_us(self, us):
        self.us += us


def ct(amps, phases=1, **kw):
    clock = Micros()
    models = []
    for k in range(phases):
        model = CtModel(amps[k] if isinstance(amps, tuple) else amps, clock_us=clock.ticks_us,
                        phase=kw.pop("phase", 0.0) + 2 * math.pi * k / 3)
        machine.wire(CT_PINS[k], model)
        models.append(model)
    adcs = tuple(machine.ADC(machine.Pin(CT_PINS[k])) for k in range(phases))
    ticks = FakeTicks()
    meter = CtMeter(adcs if phases > 1 else adcs[0], ticks_ms=ticks, ticks_us=clock.ticks_us,
                    sleep_us=clock.sleep_us, **kw)
    return models, meter, ticks, clock


@pytest.mark.parametrize("amps", [6.0, 16.0, 32.0, 63.0])
@pytest.mark.parametrize("phase", [0.0, 1.0, 2.5])
def test_ct_rms_within_two_percent(amps, phase):
    _, meter, _, clock = ct(amps, phase=phase)
    meter.poll()
    assert meter.current_a()[0] == pytest.approx(amps, rel=0.02)
    assert meter.power_w() == pytest.approx(230.0 * amps, rel=0.02)
    assert clock.us == 20000  # one mains cycle sampled


def test_ct_two_cycles_60_hz():
    models, meter, _, clock = ct(10.0, hz=60, cycles=2, samples=40)
    models[0].hz = 60
    meter.poll()
    assert meter.current_a()[0] == pytest.approx(10.0, rel=0.02)
    assert abs(clock.us - 33333) < 40


def test_ct_three_phases():
    _, meter, _, _ = ct((16.0, 10.0, 0.0), phases=3)
    meter.poll()
    a = meter.current_a()
    assert a[0] == pytest.approx(16.0, rel=0.02) and a[1] == pytest.approx(10.0, rel=0.02)
    assert a[2] == 0.0
    assert meter.voltage_v() == (230.0,) * 3


def test_ct_noise_floor_reads_zero():
    _, meter, _, _ = ct(0.1)
    meter.poll()
    assert meter.current_a() == (0.0,) and meter.power_w() == 0.0


def test_ct_energy_integrated_and_restored():
    models, meter, ticks, _ = ct(16.0)
    meter.restore(1000)
    for _ in range(3600):  # an hour, one reading a second
        meter.poll()
        ticks.advance(1000)
    meter.poll()
    assert meter.energy_wh() == pytest.approx(1000 + 3680, abs=3680 * 0.02)
    models[0].amps = 0.0
    before = meter.energy_wh()
    for _ in range(10):
        ticks.advance(1000)
        meter.poll()
    assert before <= meter.energy_wh() <= before + 1


def test_ct_measures_once_per_interval():
    models, meter, ticks, _ = ct(16.0)
    meter.poll()
    n = models[0].reads
    for _ in range(49):
        ticks.advance(20)
        meter.poll()
    assert models[0].reads == n
    ticks.advance(20)
    meter.poll()
    assert models[0].reads == 2 * n


# -- on the device twin ------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIMFS = os.path.join(ROOT, "tools", "simfs")
TWIN = os.path.join(ROOT, "build", "twin", "micropython")


@pytest.mark.skipif(not os.path.exists(TWIN), reason="no device twin built (make twin)")
def test_meters_on_the_twin():
    code = """
import machine
from sdm_model import SdmModel
from s0_model import S0Model
from ct_model import CtModel
from chargepoint.hardware.modbus import Modbus
from chargepoint.hardware.sdm import SdmMeter
from chargepoint.hardware.s0 import S0Meter
from chargepoint.hardware.ct import CtMeter
now = [0]
tick = lambda: now[0]
sdm = SdmModel(phases=3, load=16.0, energy_kwh=1234.567)
machine.wire_bus("uart", 2, sdm)
m = SdmMeter(Modbus(machine.UART(2, 9600), ticks_ms=tick), ticks_ms=tick)
s0 = S0Model(1000)
machine.wire(27, s0)
p = S0Meter(machine.Pin(27, machine.Pin.IN), 1000, ticks_ms=tick)
us = [0]  # the CT's samples on a clock of their own: a busy host cannot skew them
def sleep_us(d):
    us[0] += d
machine.wire(34, CtModel(16.0, clock_us=lambda: us[0]))
c = CtMeter(machine.ADC(machine.Pin(34)), ticks_ms=tick, ticks_us=lambda: us[0],
            sleep_us=sleep_us)
s0.pulse(42)
for _ in range(20):
    m.poll(); p.poll(); c.poll()
    now[0] += 20
print(m.ok, m.energy_wh(), m.current_a(), p.energy_wh(), abs(c.current_a()[0] - 16.0) < 0.32)
for fault in ("crc", "silent", "slave"):
    sdm.fault = fault
    for _ in range(200):
        m.poll()
        now[0] += 20
    print(m.ok, m.energy_wh(), m.error)
"""
    r = subprocess.run([TWIN, "-X", "heapsize=110000", "-c", code], capture_output=True,
                       text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=os.path.join(ROOT, "lib") + ":" + SIMFS))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "True 1234567 (16.0, 16.0, 16.0) 42 True", "False 1234567 crc",
        "False 1234567 timeout", "False 1234567 slave"]
