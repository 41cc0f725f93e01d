"""Energy meters of a connector: what every kind keeps (the import register). The kinds, each
its own module so that a board imports only the one it has: chargepoint.hardware.sdm
(Eastron SDM630/SDM120 on Modbus RTU), chargepoint.hardware.s0 (S0 pulses),
chargepoint.hardware.ct (CT clamps)."""
from micropython import const

_REBASE_READS = const(3)  # good readings below the register in a row: the meter was reset


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
