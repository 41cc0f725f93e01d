"""Modbus RTU master on a UART (RS-485), non-blocking: read input registers (function 04)."""
import time

from micropython import const

from chargepoint.platform.clock import ticks_add as _ticks_add
from chargepoint.platform.clock import ticks_diff as _ticks_diff
from chargepoint.platform.clock import ticks_ms as _ticks_ms

_READ_INPUT = const(0x04)
_MAX_REGS = const(30)  # registers per request: the answer buffer is sized for it
DATA = const(3)  # where the register bytes start in the buffer result() returns

# the states of the one request on the bus
_FREE = const(0)
_GAP = const(1)  # the frame waits for the line to be quiet for 3.5 characters
_WAIT = const(2)  # sent, the answer is coming


class ModbusError(Exception):
    """A request failed: kind is "crc", "timeout", "slave" (another slave, function or length
    answered) or "exception" (the slave refused it: `code` is its exception code)."""

    def __init__(self, kind, code=0):
        super().__init__(kind)
        self.kind = kind
        self.code = code


def crc16(buf, n):
    """Modbus CRC of buf[:n] (polynomial 0xA001 reflected, initial 0xFFFF; sent low byte first)."""
    crc = 0xFFFF
    for i in range(n):
        crc ^= buf[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


class Modbus:
    """The master on `uart` (built by the caller: 8N1 or 8E1, timeout=0) at `baudrate`; `de` is the
    RS-485 driver-enable Pin (high while sending), None with an auto-direction transceiver.

    One request at a time: request() sends it (or holds it for the inter-frame gap), result()
    is called until it gives the answer. An answer is awaited for the frames' time at
    `baudrate` plus `margin_ms`; a CRC error, timeout or wrong answer is retried `retries`
    times before result() raises ModbusError. An exception response is not retried.
    """

    def __init__(self, uart, de=None, baudrate=9600, retries=1, margin_ms=100, ticks_ms=None):
        self._uart = uart
        self._de = de
        if de is not None:
            de.init(de.OUT, value=0)
        self._ticks = ticks_ms or _ticks_ms
        self.retries = retries
        self._char_us = 11000000 // baudrate  # start, 8 data, parity or stop, stop
        self._gap_ms = max(2, (35 * self._char_us + 9999) // 10000)
        self._margin = margin_ms
        self._req = bytearray(8)
        self._rx = bytearray(5 + 2 * _MAX_REGS)
        self._one = bytearray(1)
        self._n = 0
        self._state = _FREE
        self._left = 0
        self._quiet = _ticks_add(self._ticks(), -self._gap_ms)  # the line is quiet since
        self._sent = 0
        self._timeout = 0

    @property
    def busy(self):
        return self._state != _FREE

    def request(self, slave, addr, count, function=_READ_INPUT):
        """Start reading `count` registers from `addr` of `slave`."""
        if not 0 < count <= _MAX_REGS:
            raise ValueError("count")
        q = self._req
        q[0] = slave
        q[1] = function
        q[2] = addr >> 8
        q[3] = addr & 0xFF
        q[4] = 0
        q[5] = count
        crc = crc16(q, 6)
        q[6] = crc & 0xFF
        q[7] = crc >> 8
        self._left = self.retries
        # both frames' time on the wire, then what the slave may take to answer
        self._timeout = (13 + 2 * count) * self._char_us // 1000 + self._margin
        self._state = _GAP
        self._send_if_quiet()

    def _send_if_quiet(self):
        now = self._ticks()
        if _ticks_diff(now, self._quiet) < self._gap_ms:
            return
        uart = self._uart
        if uart.any():  # a late answer or noise: not part of what comes next
            uart.read()
        de = self._de
        if de is not None:
            de(1)
            uart.write(self._req)
            uart.flush()  # the last stop bit is out: release the line for the answer
            de(0)
        else:
            uart.write(self._req)
        self._n = 0
        self._sent = now
        self._state = _WAIT

    def result(self):
        """The answer's buffer (register bytes from index DATA) once it is there, None while
        waiting; raises ModbusError when the request failed for good."""
        if self._state == _GAP:
            self._send_if_quiet()
            return None
        if self._state != _WAIT:
            return None
        kind = self._receive()
        if kind is None:
            return None
        self._quiet = self._ticks()
        if kind == "":
            self._state = _FREE
            return self._rx
        if kind != "exception" and self._left > 0:
            self._left -= 1
            self._state = _GAP
            self._send_if_quiet()
            return None
        self._state = _FREE
        raise ModbusError(kind, self._rx[2] if kind == "exception" else 0)

    def _receive(self):
        """Take what has arrived: None while the answer is incomplete, "" when it is good, else
        the kind of error."""
        uart = self._uart
        rx = self._rx
        one = self._one
        n = self._n
        while n < len(rx) and uart.any():
            uart.readinto(one, 1)
            rx[n] = one[0]
            n += 1
        self._n = n
        q = self._req
        if n >= 2 and rx[1] not in (q[1], q[1] | 0x80):
            return "slave"
        size = 0
        if n >= 3:
            size = 5 if rx[1] & 0x80 else 5 + rx[2]
            if size > len(rx):
                return "slave"
        if not size or n < size:
            if _ticks_diff(self._ticks(), self._sent) >= self._timeout:
                return "timeout"
            return None
        if crc16(rx, size - 2) != rx[size - 2] | (rx[size - 1] << 8):
            return "crc"
        if rx[0] != q[0]:
            return "slave"
        if rx[1] & 0x80:
            return "exception"
        if rx[2] != 2 * q[5]:
            return "slave"
        return ""

    def read(self, slave, addr, count):
        """Blocking read (commissioning, the REPL): a copy of the register bytes."""
        self.request(slave, addr, count)
        sleep_ms = getattr(time, "sleep_ms", None)
        while True:
            rx = self.result()
            if rx is not None:
                return bytes(rx[DATA:DATA + 2 * count])
            if sleep_ms is not None:
                sleep_ms(1)
            else:
                time.sleep(0.001)
