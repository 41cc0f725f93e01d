"""Eastron SDM630/SDM120 energy meters on Modbus RTU (chargepoint.hardware.modbus)."""
import struct

from micropython import const

from chargepoint.hardware.meters import _Register
from chargepoint.hardware.modbus import DATA, ModbusError
from chargepoint.platform.clock import ticks_add as _ticks_add
from chargepoint.platform.clock import ticks_diff as _ticks_diff
from chargepoint.platform.clock import ticks_ms as _ticks_ms

_ENERGY = const(0x48)  # import kWh on both SDMs
_VOLTS = const(0x00)
_AMPS = const(0x06)
# (address, registers) read in turn, energy first; addresses fit a byte
_SDM630 = b"\x48\x02\x00\x0c\x34\x02"  # energy; V L1-L3 and I L1-L3; total power
_SDM120 = b"\x48\x02\x00\x02\x06\x02\x0c\x02"  # energy; V; I; power


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
