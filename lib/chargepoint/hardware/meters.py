"""Energy meters of a connector: Eastron SDM630/SDM120 (Modbus RTU), S0 pulses, CT clamps."""
import math
import struct
import time

from micropython import const

from chargepoint.hardware.modbus import DATA, ModbusError
from chargepoint.platform.clock import ticks_add as _ticks_add
from chargepoint.platform.clock import ticks_diff as _ticks_diff
from chargepoint.platform.clock import ticks_ms as _ticks_ms

_REBASE_READS = const(3)  # good readings below the register in a row: the meter was reset
_ENERGY = const(0x48)  # import kWh on both SDMs
_VOLTS = const(0x00)
_AMPS = const(0x06)
# (address, registers) read in turn, energy first; addresses fit a byte
_SDM630 = b"\x48\x02\x00\x0c\x34\x02"  # energy; V L1-L3 and I L1-L3; total power
_SDM120 = b"\x48\x02\x00\x02\x06\x02\x0c\x02"  # energy; V; I; power
_WMS_PER_WH = const(3600000)  # W*ms in a Wh


class _Register:
    """The import register every meter keeps: it never goes back and continues from what the
    application persisted (register() to save, restore(wh) after boot). When the meter's own
    count reads below it (a new or reset meter), the difference becomes an offset."""

    def __init__(self):
        self._wh = 0
        self._offset = 0
        self._seen = False  # a reading has come since boot
        self._low = 0
        self.ok = False  # the last reading worked

    def energy_wh(self):
        return self._wh

    # the latest good reading; a meter sets _p, _i (per phase) and _v (per phase)
    def power_w(self):
        return self._p

    def current_a(self):
        return self._i

    def voltage_v(self):
        return self._v

    def register(self):
        return self._wh

    def restore(self, wh):
        wh = int(wh)
        if wh > self._wh:
            if self._seen:
                self._offset += wh - self._wh
            self._wh = wh

    def _reading(self, raw):
        wh = raw + self._offset
        if wh >= self._wh:
            self._wh = wh
            self._low = 0
        elif not self._seen:
            self._offset = self._wh - raw
        else:
            self._low += 1
            if self._low >= _REBASE_READS:
                self._offset = self._wh - raw
                self._low = 0
        self._seen = True


def _wh(b, i):
    """Wh, rounded, from the float32 kWh big-endian at b[i:i+4], exact where a float32 times
    1000 is not; -1 when negative, NaN, infinite or beyond any meter's display."""
    if b[i] & 0x80:
        return 0 if not (b[i] & 0x7F or b[i + 1] or b[i + 2] or b[i + 3]) else -1
    e = ((b[i] & 0x7F) << 1) | (b[i + 1] >> 7)
    m = ((b[i + 1] & 0x7F) << 16) | (b[i + 2] << 8) | b[i + 3]
    if e:
        m |= 0x800000
    else:
        e = 1  # subnormal
    shift = 150 - e  # value = m / 2**shift kWh
    if shift < 0:
        return -1  # 16.7 GWh and up (or NaN/inf)
    if shift == 0:
        return m * 1000
    return ((m * 1000 >> (shift - 1)) + 1) >> 1


class SdmMeter(_Register):
    """An Eastron SDM630 (phases=3) or SDM120/SDM220 (phases=1) at `slave` on a Modbus master.

    poll() does a little of a reading cycle each time it is called (send, or take an answer),
    so it never waits on the bus; a cycle (energy, voltages and currents, power) starts every
    `interval_ms`. Several meters may share one master (different slaves). A failed read
    (after the master's retries) makes `ok` False and keeps every value as it was; `error` is
    the ModbusError kind, `errors` counts them.
    """

    def __init__(self, modbus, slave=1, phases=3, interval_ms=1000, ticks_ms=None):
        _Register.__init__(self)
        self._bus = modbus
        self.slave = slave
        self.phases = phases
        self._blocks = _SDM630 if phases == 3 else _SDM120
        self.interval_ms = interval_ms
        self._ticks = ticks_ms or _ticks_ms
        self._k = 0  # the block to read next
        self._pending = False
        self._due = self._ticks()
        self._p = 0.0
        self._v = (0.0,) * phases
        self._i = (0.0,) * phases
        self.error = None
        self.errors = 0

    def poll(self):
        bus = self._bus
        blocks = self._blocks
        if self._pending:
            try:
                rx = bus.result()
            except ModbusError as e:
                self._failed(e.kind)
                return
            if rx is None:
                return
            self._pending = False
            if not self._store(blocks[self._k], rx):
                self._failed("value")
                return
            self.ok = True
            self._k = (self._k + 2) % len(blocks)
            return
        if bus.busy:
            return
        now = self._ticks()
        if self._k == 0:
            if _ticks_diff(now, self._due) < 0:
                return
            self._due = _ticks_add(now, self.interval_ms)
        bus.request(self.slave, blocks[self._k], blocks[self._k + 1])
        self._pending = True

    def _failed(self, kind):
        self._pending = False
        self._k = 0  # start over at the next interval
        self.ok = False
        self.error = kind
        self.errors += 1

    def _store(self, addr, rx):
        if addr == _ENERGY:
            wh = _wh(rx, DATA)
            if wh < 0:
                return False
            self._reading(wh)
        elif addr == _VOLTS:
            if self.phases == 3:
                self._v = struct.unpack_from(">fff", rx, DATA)
                self._i = struct.unpack_from(">fff", rx, DATA + 12)
            else:
                self._v = struct.unpack_from(">f", rx, DATA)
        elif addr == _AMPS:
            self._i = struct.unpack_from(">f", rx, DATA)
        else:
            self._p = struct.unpack_from(">f", rx, DATA)[0]
        return True


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
