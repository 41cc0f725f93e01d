"""Simulated MFRC522 reader and ISO 14443A card (host only): the chip's registers on an SPI bus.

Wiring::

    reader = MFRC522Model()
    machine.wire_bus("spi", 1, reader)
    machine.wire(5, reader.cs)       # chip select (active low)
    machine.wire(22, reader.rst)     # optional NRSTPD: low powers down, high resets

SPI framing as the chip's: the first byte after CS falls is the address ((reg << 1), bit 7 set
for a read); a write puts every following byte into that register; a read answers each
following byte with the addressed register and takes that byte as the next address.
Then `present("04A1B2C3")`, `remove()`, `broken = True` (the chip stops answering: MISO reads 0).
"""
import time

IDLE, READY, ACTIVE, HALT = 0, 1, 2, 3

_COMMAND, _COM_IRQ, _ERROR, _FIFO_DATA, _FIFO_LEVEL = 0x01, 0x04, 0x06, 0x09, 0x0A
_CONTROL, _BIT_FRAMING, _TX_CONTROL, _TX_ASK, _T_MODE, _VERSION = (
    0x0C, 0x0D, 0x14, 0x15, 0x2A, 0x37)
_T_PRESCALER, _T_RELOAD_H, _T_RELOAD_L = 0x2B, 0x2C, 0x2D
_TRANSCEIVE, _SOFT_RESET = 0x0C, 0x0F
# register values after a reset (datasheet table 20 onwards); the rest are 0
_RESET = ((_COMMAND, 0x20), (0x02, 0x80), (0x04, 0x14), (_FIFO_LEVEL, 0x00), (0x0C, 0x10),
          (0x11, 0x3F), (0x14, 0x80), (0x16, 0x10), (0x17, 0x84), (0x18, 0x84), (0x19, 0x4D),
          (0x1A, 0x63), (0x22, 0xFF), (0x21, 0xFF), (0x24, 0x26), (0x26, 0x48), (0x27, 0x88),
          (0x28, 0x20), (0x29, 0x00))


def _now_ms():
    try:
        return time.ticks_ms()  # MicroPython (the twin)
    except AttributeError:
        return time.monotonic() * 1000


def crc_a(data):
    crc = 0x6363
    for x in data:
        b = (x ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return bytes((crc & 0xFF, crc >> 8))


class Card:
    """A PICC in the field (ISO 14443-3 type A states: IDLE, READY, ACTIVE, HALT)."""

    def __init__(self, uid, sak=None):
        self.uid = uid
        self.levels = {4: 1, 7: 2, 10: 3}[len(uid)]
        self.sak = sak if sak is not None else (0x08 if len(uid) == 4 else 0x00)
        self.state = IDLE
        self.halted = False  # woken from HALT: falls back there, not to IDLE
        self.level = 0

    def _part(self):
        """This cascade level's 4 UID bytes (cascade tag + 3 bytes when more levels follow)."""
        i = 3 * self.level
        if self.level < self.levels - 1:
            return bytes((0x88,)) + self.uid[i:i + 3]
        return self.uid[i:i + 4]

    def answer(self, frame, bits):
        """The card's answer to a frame (bits: valid bits of its last byte, 0 = 8), or None."""
        if bits == 7 and len(frame) == 1 and frame[0] in (0x26, 0x52):
            woken = self.state == IDLE or (frame[0] == 0x52 and self.state == HALT)
            if woken:
                self.halted = self.state == HALT
                self.state = READY
                self.level = 0
                return bytes((0x04 | ((self.levels - 1) << 6), 0x00))  # ATQA: UID size
        elif bits == 0 and self.state == READY and frame[0] == 0x93 + 2 * self.level:
            part = self._part()
            bcc = part[0] ^ part[1] ^ part[2] ^ part[3]
            if len(frame) == 2 and frame[1] == 0x20:
                return part + bytes((bcc,))
            if (len(frame) == 9 and frame[1] == 0x70 and frame[2:7] == part + bytes((bcc,))
                    and crc_a(frame[:7]) == frame[7:9]):
                self.level += 1
                if self.level < self.levels:
                    sak = 0x04  # UID not complete
                else:
                    sak = self.sak
                    self.state = ACTIVE
                return bytes((sak,)) + crc_a(bytes((sak,)))
        elif bits == 0 and self.state == ACTIVE and frame == b"\x50\x00" + crc_a(b"\x50\x00"):
            self.state = HALT
            return None
        # anything unexpected sends the card back to where it was woken from
        self.state = HALT if self.halted else IDLE
        return None


class _Line:
    """A port on a GPIO pin that calls back when the driver drives it."""

    def __init__(self, drive):
        self.drive = drive


class MFRC522Model:
    def __init__(self, version=0x92):
        self.version = version
        self.broken = False
        self.card = None
        self.frames = None  # a list to keep every frame sent into the field in (tests)
        self.empty_scans = 0  # REQA/WUPA with no card in the field
        self.cs = _Line(self._select)
        self.rst = _Line(self._reset_pin)
        self._selected = False
        self._addr = None
        self._down = False
        self._reset()

    def _reset(self):
        self._timer_due = None  # when the timer runs out on a frame no card answered
        self.regs = bytearray(64)
        for reg, value in _RESET:
            self.regs[reg] = value
        self.regs[_VERSION] = self.version
        self.fifo = bytearray()

    # -- the world -------------------------------------------------------------------------

    def present(self, uid_hex, sak=None):
        self.card = Card(bytes.fromhex(uid_hex), sak)

    def remove(self):
        self.card = None

    # -- pins and bus ----------------------------------------------------------------------

    def _select(self, level):
        self._selected = not level
        self._addr = None

    def _reset_pin(self, level):
        if not level:
            self._down = True
        elif self._down:
            self._down = False
            self._reset()

    def transfer(self, tx):
        if not self._selected:
            return b"\xff" * len(tx)
        if self.broken or self._down:
            return bytes(len(tx))
        out = bytearray(len(tx))
        for i, b in enumerate(tx):
            addr = self._addr
            if addr is None:
                self._addr = b
            elif addr & 0x80:
                out[i] = self._read((addr >> 1) & 0x3F)
                self._addr = b
            else:
                self._write((addr >> 1) & 0x3F, b)
        return bytes(out)

    # -- registers -------------------------------------------------------------------------

    def _read(self, reg):
        if reg == _FIFO_DATA:
            if not self.fifo:
                return 0
            v = self.fifo[0]
            self.fifo = self.fifo[1:]
            return v
        if reg == _FIFO_LEVEL:
            return len(self.fifo)
        due = self._timer_due
        if reg == _COM_IRQ and due is not None and _now_ms() - due >= 0:
            self.regs[_COM_IRQ] |= 0x01  # TimerIRq, once the time the registers set is over
            self._timer_due = None
        return self.regs[reg]

    def timeout_ms(self):
        """How long the timer waits for an answer (datasheet 9.3.1.6: f = 13.56 MHz /
        (2 TPreScaler + 1), (TReload + 1) periods); the driver busy-waits for it when no card
        is in the field, as it would on the chip."""
        r = self.regs
        prescaler = ((r[_T_MODE] & 0x0F) << 8) | r[_T_PRESCALER]
        reload = (r[_T_RELOAD_H] << 8) | r[_T_RELOAD_L]
        return (reload + 1) * (2 * prescaler + 1) / 13560.0

    def _write(self, reg, v):
        regs = self.regs
        if reg == _COMMAND:
            if v & 0x0F == _SOFT_RESET:
                self._reset()
                return
            regs[reg] = v
            if v & 0x0F == _TRANSCEIVE and regs[_BIT_FRAMING] & 0x80:
                self._transceive()
        elif reg == _COM_IRQ:
            if v & 0x80:
                regs[reg] |= v & 0x7F
            else:
                regs[reg] &= ~v & 0xFF
        elif reg == _FIFO_DATA:
            if len(self.fifo) < 64:
                self.fifo.append(v)
            else:
                regs[_ERROR] |= 0x10  # BufferOvfl
        elif reg == _FIFO_LEVEL:
            if v & 0x80:
                self.fifo = bytearray()
                regs[_ERROR] &= ~0x10 & 0xFF
        elif reg == _BIT_FRAMING:
            regs[reg] = v
            if v & 0x80 and regs[_COMMAND] & 0x0F == _TRANSCEIVE:
                self._transceive()
        elif reg not in (_ERROR, _VERSION, _CONTROL):
            regs[reg] = v

    def _transceive(self):
        regs = self.regs
        frame = bytes(self.fifo)
        bits = regs[_BIT_FRAMING] & 0x07
        self.fifo = bytearray()
        regs[_ERROR] = 0
        regs[_CONTROL] = 0x10  # RxLastBits 0: whole bytes
        field = regs[_TX_CONTROL] & 0x03 == 0x03 and regs[_TX_ASK] & 0x40
        answer = None
        if field:
            if self.frames is not None:
                self.frames.append((frame, bits))
            if self.card is not None:
                answer = self.card.answer(frame, bits)
            elif bits == 7 and frame in (b"\x26", b"\x52"):
                self.empty_scans += 1  # the reader looked for a card and found none
        if answer is None:
            if regs[_T_MODE] & 0x80:  # TAuto: the timer runs out waiting for an answer
                self._timer_due = _now_ms() + self.timeout_ms()
            return
        self.fifo = bytearray(answer)
        regs[_COM_IRQ] |= 0x20  # RxIRq
