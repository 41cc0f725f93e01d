"""Simulated Eastron SDM630 / SDM120 energy meter (host only): a Modbus RTU slave on a UART.

Wiring::

    meter = SdmModel(slave=1, phases=3)
    machine.wire_bus("uart", 2, meter)
    machine.wire(4, meter.de)          # optional: the RS-485 driver-enable line

Function 04 (read input registers) over the registers of the model's map (float32,
big-endian); any other register answers exception 02, another function exception 01. `load`
is the amps drawn on each phase (a number, or one per phase) at `volts`; `advance(seconds)`
integrates the import register. `fault`: "none", "crc" (answers with a broken CRC),
"silent" (no answer), "slave" (answers as another slave). `held` > 0 keeps that many bytes
at the end of the answer on the wire (not yet received) until it is set back to 0. With `de`
wired, a request sent while DE is low never reaches the bus, and nothing is heard while DE
stays high.

As every meter model of the simulated board (tools/simfs/board_sim.py): `run(amps, seconds)`
steps it, `register()` is its own import register (Wh), `fault` what it does wrong.
"""
import struct


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class _Line:
    def __init__(self):
        self.wired = False
        self.high = False

    def bind(self, pin):
        self.wired = True

    def drive(self, level):
        self.high = bool(level)


class SdmModel:
    def __init__(self, slave=1, phases=3, volts=230.0, load=0.0, energy_kwh=0.0):
        self.slave = slave
        self.phases = phases
        self.volts = volts
        self.load = load
        self.energy_kwh = energy_kwh
        self.fault = "none"
        self.held = 0
        self.requests = 0  # requests addressed to this meter
        self.de = _Line()
        self._in = b""
        self._out = b""

    def amps(self):
        load = self.load
        if isinstance(load, (tuple, list)):
            return tuple(float(a) for a in load)
        return (float(load),) * self.phases

    def power(self):
        return sum(self.volts * a for a in self.amps())

    def advance(self, seconds):
        self.energy_kwh += self.power() * seconds / 3600000.0

    def run(self, amps, seconds):
        self.load = amps
        self.advance(seconds)

    def register(self):
        return self.energy_kwh * 1000

    def registers(self):
        """Register address -> value (each a float32 over two registers)."""
        amps = self.amps()
        regs = {0x48: self.energy_kwh, 0x4A: 0.0}
        for k in range(self.phases):
            regs[0x00 + 2 * k] = self.volts
            regs[0x06 + 2 * k] = amps[k]
            regs[0x0C + 2 * k] = self.volts * amps[k]
        if self.phases == 3:
            regs[0x34] = self.power()
        return regs

    # -- the UART --------------------------------------------------------------------------

    def rx(self, data):
        if self.de.wired and not self.de.high:
            return  # the transceiver was not driving: nothing went onto the bus
        self._in += bytes(data)
        while len(self._in) >= 8:
            frame, self._in = self._in[:8], self._in[8:]
            self._request(frame)

    def tx(self):
        if self.de.wired and self.de.high:
            return b""
        n = max(0, len(self._out) - self.held)
        data, self._out = self._out[:n], self._out[n:]
        return data

    def _request(self, frame):
        if crc16(frame[:6]) != frame[6] | (frame[7] << 8) or frame[0] != self.slave:
            return
        self.requests += 1
        if self.fault == "silent":
            return
        function = frame[1]
        addr = (frame[2] << 8) | frame[3]
        count = (frame[4] << 8) | frame[5]
        regs = self.registers()
        if function != 0x04:
            answer = bytes((function | 0x80, 0x01))
        elif count % 2 or addr % 2 or not 0 < count <= 80 or any(
                a not in regs for a in range(addr, addr + count, 2)):
            answer = bytes((0x84, 0x02))
        else:
            data = b"".join(struct.pack(">f", regs[a]) for a in range(addr, addr + count, 2))
            answer = bytes((0x04, len(data))) + data
        slave = self.slave + 1 if self.fault == "slave" else self.slave
        answer = bytes((slave,)) + answer
        crc = crc16(answer)
        if self.fault == "crc":
            crc ^= 0x5A5A
        self._out += answer + bytes((crc & 0xFF, crc >> 8))
