"""MFRC522 RFID reader (ISO 14443A) over SPI: a card's UID is the idTag, once per presentation."""
import time

from micropython import const

from chargepoint.platform.clock import ticks_add as _ticks_add
from chargepoint.platform.clock import ticks_diff as _ticks_diff
from chargepoint.platform.clock import ticks_ms as _ticks_ms

_sleep_ms = getattr(time, "sleep_ms", None)  # None on CPython: the model needs no settling
try:
    _ticks_us = time.ticks_us
except AttributeError:  # CPython
    def _ticks_us():
        return int(time.perf_counter() * 1000000)

# registers
_COMMAND = const(0x01)
_COM_IRQ = const(0x04)
_ERROR = const(0x06)
_FIFO_DATA = const(0x09)
_FIFO_LEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BIT_FRAMING = const(0x0D)
_MODE = const(0x11)
_TX_MODE = const(0x12)
_RX_MODE = const(0x13)
_TX_CONTROL = const(0x14)
_TX_ASK = const(0x15)
_MOD_WIDTH = const(0x24)
_T_MODE = const(0x2A)
_T_PRESCALER = const(0x2B)
_T_RELOAD_H = const(0x2C)
_T_RELOAD_L = const(0x2D)
_VERSION = const(0x37)
# commands and bits
_IDLE = const(0x00)
_TRANSCEIVE = const(0x0C)
_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)
_START_SEND = const(0x80)
_RX_IRQ = const(0x20)
_IDLE_IRQ = const(0x10)
_TIMER_IRQ = const(0x01)
_ERRORS = const(0x1B)  # BufferOvfl, CollErr, ParityErr, ProtocolErr
# ISO 14443A
_WUPA = const(0x52)
_SEL_CL1 = const(0x93)
_CASCADE_TAG = const(0x88)
_SAK_INCOMPLETE = const(0x04)
_HLTA = const(0x50)

_IRQ_WAIT_US = const(15000)  # the chip's own timer gives up after 5 ms
# A WUPA into an empty field (every scan but the ones that find a card) and an HLTA (never
# answered) are waited for this long only, not for the chip's timer: the wait is a busy one
# on the loop. A card's answer to a WUPA is in after about 0.37 ms (ISO 14443-3: the 7-bit
# frame, 86 us to the answer, 2 bytes and parity at 106 kbit/s); this leaves a margin for
# the register reads. (It was 1-2 ms: whole ticks of a millisecond.)
_ANSWER_US = const(600)
_BAD_CHECKS = const(2)  # consecutive failed health checks before the reader counts as failed
_VERSIONS = b"\x88\x91\x92"  # FM17522 clone, MFRC522 v1.0, v2.0


def crc_a(buf, n):
    """ISO 14443A CRC of buf[:n] (sent low byte first)."""
    crc = 0x6363
    for i in range(n):
        b = (buf[i] ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return crc


class MFRC522:
    """The reader on `spi` (mode 0, up to 10 MHz) selected by the `cs` Pin; `rst` (NRSTPD) optional.

    poll() scans at most every `interval_ms`: WUPA, anticollision and SELECT through cascade
    levels 1-3 (4, 7 or 10-byte UIDs), then HLTA. A UID is returned once; the same card is
    reported again only after it was absent from `gone_polls` scans in a row (200 ms). A reader
    that stops answering sets `failed` (after two bad checks) and is re-initialised every
    `retry_ms`. A scan every 50 ms: a tap waits 25 ms for it on average (at 100 ms, 50 of the
    80 ms a tap may take to close the relay); a scan of an empty field holds the loop for
    _ANSWER_US and its register reads and writes: 21 ms of every second on the twin (35 with
    the 1-2 ms wait).
    """

    def __init__(self, spi, cs, rst=None, interval_ms=50, retry_ms=5000, gone_polls=4,
                 ticks_ms=None):
        self._spi = spi
        self._cs = cs
        self._rst = rst
        self._ticks = ticks_ms or _ticks_ms
        self.interval_ms = interval_ms
        self.retry_ms = retry_ms
        self.gone_polls = gone_polls
        self._tx = bytearray(2)
        self._rx = bytearray(2)
        self._frame = bytearray(9)
        self._fifo = bytearray(5)
        self._uid = bytearray(10)
        self._last = bytearray(10)
        self._last_n = 0  # length of the UID reported last, 0 once that card has gone
        self._misses = 0
        self._bad = 0
        self.failures = 0  # times the reader was found dead
        cs.init(cs.OUT, value=1)
        if rst is not None:
            rst.init(rst.OUT, value=1)
        now = self._ticks()
        self._due = now
        self._retry = _ticks_add(now, retry_ms)
        self.failed = not self.init()
        if self.failed:
            self.failures += 1

    # -- registers -------------------------------------------------------------------------

    def _write(self, reg, value):
        tx = self._tx
        tx[0] = reg << 1
        tx[1] = value
        self._cs(0)
        self._spi.write_readinto(tx, self._rx)
        self._cs(1)

    def _read(self, reg):
        tx = self._tx
        tx[0] = 0x80 | (reg << 1)
        tx[1] = 0
        self._cs(0)
        self._spi.write_readinto(tx, self._rx)
        self._cs(1)
        return self._rx[1]

    def init(self):
        """Reset the chip and set it up (timer, 100 % ASK, CRC preset, antenna on): True if it
        answers as an MFRC522 afterwards."""
        r = self._read
        w = self._write
        try:
            if self._rst is not None:
                self._rst(0)
                self._rst(1)
            w(_COMMAND, _SOFT_RESET)
            for _ in range(50):  # the oscillator restarts; PowerDown reads 1 until it is ready
                if not r(_COMMAND) & _POWER_DOWN:
                    break
                if _sleep_ms is not None:
                    _sleep_ms(1)
            if r(_VERSION) not in _VERSIONS:
                return False
            w(_T_MODE, 0x80)  # TAuto: the timer starts at the end of each transmission
            # 40 kHz; reload 200: a transceive gives up after 5 ms (a card answers an
            # anticollision or a SELECT within half a millisecond; 25 ms, the usual Arduino
            # setting, held the loop a fifth of the time with an empty field: see _ANSWER_US)
            w(_T_PRESCALER, 0xA9)
            w(_T_RELOAD_H, 0x00)
            w(_T_RELOAD_L, 0xC8)
            w(_TX_ASK, 0x40)  # 100 % ASK, as ISO 14443A needs
            w(_MODE, 0x3D)  # CRC preset 0x6363
            w(_TX_MODE, 0x00)  # 106 kbit/s, CRC computed here (crc_a), not by the chip
            w(_RX_MODE, 0x00)
            w(_MOD_WIDTH, 0x26)
            w(_TX_CONTROL, r(_TX_CONTROL) | 0x03)  # antenna on
            return r(_T_PRESCALER) == 0xA9 and r(_TX_CONTROL) & 0x03 == 0x03
        except OSError:
            return False

    def _healthy(self):
        """The chip still answers and is set up (a brown-out resets it: set it up again)."""
        if self._read(_VERSION) not in _VERSIONS:
            return False
        if self._read(_TX_CONTROL) & 0x03 != 0x03:
            return self.init()
        return True

    # -- ISO 14443A ------------------------------------------------------------------------

    def _transceive(self, n, bits=0, wait_us=_IRQ_WAIT_US):
        """Send _frame[:n] (last byte `bits` long, 0 = 8); the answer lands in _fifo. Returns its
        length, 0 when no card answered (the chip's timer ran out, or `wait_us` did: the
        command is stopped), -1 for a garbled answer."""
        w = self._write
        r = self._read
        w(_COMMAND, _IDLE)
        w(_COM_IRQ, 0x7F)
        w(_FIFO_LEVEL, 0x80)  # flush
        f = self._frame
        for i in range(n):
            w(_FIFO_DATA, f[i])
        w(_BIT_FRAMING, bits)
        w(_COMMAND, _TRANSCEIVE)
        w(_BIT_FRAMING, _START_SEND | bits)
        start = _ticks_us()
        while True:
            irq = r(_COM_IRQ)
            if irq & (_RX_IRQ | _IDLE_IRQ | _TIMER_IRQ):
                break
            if _ticks_diff(_ticks_us(), start) >= wait_us:
                break  # no answer in time (or not even the timer fired: a chip not working)
        w(_BIT_FRAMING, bits)
        w(_COMMAND, _IDLE)
        if not irq & (_RX_IRQ | _IDLE_IRQ):
            return 0
        if r(_ERROR) & _ERRORS:
            return -1
        k = r(_FIFO_LEVEL)
        if k > len(self._fifo) or r(_CONTROL) & 0x07:
            return -1
        d = self._fifo
        for i in range(k):
            d[i] = r(_FIFO_DATA)
        return k

    def _select(self):
        """Wake a card and select it through the cascade levels: the UID's length (in _uid),
        0 when no card answers, -1 when one answered wrongly."""
        f = self._frame
        d = self._fifo
        uid = self._uid
        f[0] = _WUPA
        k = self._transceive(1, 7, _ANSWER_US)
        if k != 2:
            return 0 if k == 0 else -1
        n = 0
        for level in range(3):
            f[0] = _SEL_CL1 + 2 * level
            f[1] = 0x20  # NVB: no UID bits known: the card sends its part of the UID and BCC
            if self._transceive(2) != 5 or d[0] ^ d[1] ^ d[2] ^ d[3] != d[4]:
                return -1
            f[1] = 0x70  # NVB: all 40 bits follow
            for i in range(5):
                f[2 + i] = d[i]
            crc = crc_a(f, 7)
            f[7] = crc & 0xFF
            f[8] = crc >> 8
            if self._transceive(9) != 3 or crc_a(d, 1) != d[1] | (d[2] << 8):
                return -1
            if d[0] & _SAK_INCOMPLETE:
                if f[2] != _CASCADE_TAG:
                    return -1
                for i in range(3):
                    uid[n + i] = f[3 + i]
                n += 3
            else:
                for i in range(4):
                    uid[n + i] = f[2 + i]
                return n + 4
        return -1

    def _halt(self):
        f = self._frame
        f[0] = _HLTA
        f[1] = 0
        crc = crc_a(f, 2)
        f[2] = crc & 0xFF
        f[3] = crc >> 8
        self._transceive(4, 0, _ANSWER_US)  # a halted card does not answer

    # -- the board interface ---------------------------------------------------------------

    def poll(self):
        """The UID (upper-case hex) of a card just presented, else None. Never raises."""
        now = self._ticks()
        if _ticks_diff(now, self._due) < 0:
            return None
        self._due = _ticks_add(now, self.interval_ms)
        try:
            return self._scan(now)
        except OSError:
            self._bad += 1
            self._check_failed(now)
            return None

    def _scan(self, now):
        if self.failed:
            if _ticks_diff(now, self._retry) < 0:
                return None
            self._retry = _ticks_add(now, self.retry_ms)
            if not self.init():
                return None
            self.failed = False
            self._bad = 0
        if not self._healthy():
            self._bad += 1
            self._check_failed(now)
            return None
        self._bad = 0
        n = self._select()
        if n <= 0:
            if n == 0:
                self._misses += 1
                if self._misses >= self.gone_polls:
                    self._last_n = 0
            return None
        self._halt()
        self._misses = 0
        uid = self._uid
        last = self._last
        if n == self._last_n:
            i = 0
            while i < n and uid[i] == last[i]:
                i += 1
            if i == n:
                return None  # still the card reported already
        for i in range(n):
            last[i] = uid[i]
        self._last_n = n
        return "".join("%02X" % uid[i] for i in range(n))

    def _check_failed(self, now):
        if self._bad >= _BAD_CHECKS and not self.failed:
            self.failed = True
            self.failures += 1
            self._last_n = 0
            self._retry = _ticks_add(now, self.retry_ms)
