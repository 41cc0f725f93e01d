"""Simulated `machine` for the device twin (host only): the ESP32 port's API on device models.

Drivers are written against MicroPython's `machine` API and take their pins and buses as
arguments. On the twin this module stands in for the ESP32's (the twin's variant leaves the
unix port's own `machine` out); under CPython the driver tests import it too. Nothing here
knows a driver: models are wired to pins and buses by number, as a board's circuit is.

Wiring (the simulated board's circuit)::

    machine.wire(pin_id, port)       a model's port on GPIO pin_id
    machine.wire_bus("spi", 1, dev)  a device on SPI bus 1 (selected by its CS pin's port)
    machine.wire_bus("uart", 2, dev) a device on UART 2

A port may have any of (all optional):
    level() -> 0/1            what an input pin reads
    drive(level)              an output pin was set (or its PWM was stopped: steady level)
    pwm(freq, duty_u16)       PWM started or changed on the pin
    read_uv() -> int          what an ADC on the pin reads, in microvolts
    bind(pin)                 called once with the Pin, so the model can call pin.edge(level)
A SPI device has transfer(tx: bytes) -> bytes (a full-duplex exchange while selected); a
UART device has rx(data: bytes) (the driver wrote) and tx() -> bytes (what it answers, taken
by the driver's reads).

Timers and IRQs: callbacks are "soft" as on the ESP32: run through `micropython.schedule`
from a ticker thread on the twin (between bytecodes, also while the asyncio loop is blocked in
Python code or a sleep). Under CPython nothing runs by itself: tests call `fire_timers(ms)`.
"""
import simheap

_HEAP = simheap.live()

import sys  # noqa: E402
import time  # noqa: E402

try:
    import micropython

    _schedule = micropython.schedule
except (ImportError, AttributeError):  # CPython
    micropython = None
    _schedule = None

_ON_TWIN = sys.implementation.name == "micropython"
_ports = {}  # pin id -> port
_buses = {}  # ("spi"|"uart", id) -> device
_timers = []  # live Timer objects
_ticker = None  # the thread that drives timers on the twin


def wire(pin_id, port):
    _ports[pin_id] = port


def wire_bus(kind, bus_id, device):
    _buses[(kind, bus_id)] = device


def unwire():
    """Forget every wire, timer and watchdog (between tests)."""
    _ports.clear()
    _buses.clear()
    del _timers[:]
    WDT._live = None


def _call(port, name, *args):
    f = getattr(port, name, None) if port is not None else None
    return f(*args) if f is not None else None


def _id(pin):
    return pin.id if isinstance(pin, Pin) else pin


@simheap.counted
class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.port = _ports.get(id)
        self.mode = mode
        self._level = 0
        self._handler = None
        self._trigger = 0
        _call(self.port, "bind", self)
        if value is not None:
            self.value(value)

    def init(self, mode=-1, pull=-1, value=None):
        self.mode = mode
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self.mode == Pin.OUT:
                return self._level
            level = _call(self.port, "level")
            return self._level if level is None else (1 if level else 0)
        self._level = 1 if v else 0
        _call(self.port, "drive", self._level)
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, hard=False):
        self._handler = handler
        self._trigger = trigger

    def edge(self, level):
        """The model changed the level on this input: an IRQ fires as on the ESP32 (soft)."""
        rising = level and not self._level
        self._level = 1 if level else 0
        if self._handler is None:
            return
        if (rising and self._trigger & Pin.IRQ_RISING) or (
                not rising and self._trigger & Pin.IRQ_FALLING):
            if _schedule is not None:
                _schedule(self._handler, self)
            else:
                self._handler(self)


@simheap.counted
class PWM:
    def __init__(self, dest, freq=None, duty_u16=None):
        self.pin = dest if isinstance(dest, Pin) else Pin(dest, Pin.OUT)
        self._freq = freq or 5000
        self._duty = duty_u16 if duty_u16 is not None else 0
        self.running = True
        _call(self.pin.port, "pwm", self._freq, self._duty)

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f
        _call(self.pin.port, "pwm", self._freq, self._duty)

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        _call(self.pin.port, "pwm", self._freq, self._duty)

    def deinit(self):
        self.running = False
        _call(self.pin.port, "pwm", self._freq, None)


@simheap.counted
class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    def __init__(self, pin, atten=ATTN_11DB):
        self.pin = pin if isinstance(pin, Pin) else Pin(pin)
        self._atten = atten

    def atten(self, a=None):
        if a is None:
            return self._atten
        self._atten = a

    def read_uv(self):
        uv = _call(self.pin.port, "read_uv")
        return 0 if uv is None else int(uv)

    def read_u16(self):
        # 11 dB: about 0..3.1 V full scale on the ESP32
        return max(0, min(65535, self.read_uv() * 65535 // 3100000))


@simheap.counted
class SPI:
    def __init__(self, id, baudrate=1000000, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate

    def _device(self):
        return _buses.get(("spi", self.id))

    def write_readinto(self, write_buf, read_buf):
        dev = self._device()
        data = dev.transfer(bytes(write_buf)) if dev is not None else b"\xff" * len(write_buf)
        for i in range(len(read_buf)):
            read_buf[i] = data[i] if i < len(data) else 0xFF

    def write(self, buf):
        self.write_readinto(buf, bytearray(len(buf)))

    def readinto(self, buf, write=0):
        self.write_readinto(bytes([write]) * len(buf), buf)

    def read(self, n, write=0):
        buf = bytearray(n)
        self.readinto(buf, write)
        return bytes(buf)

    def deinit(self):
        pass


@simheap.counted
class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None,
                 timeout=0, timeout_char=0, rxbuf=256):
        self.id = id
        self.baudrate = baudrate
        self.timeout = timeout
        self._rx = b""

    def init(self, *args, **kw):
        self.timeout = kw.get("timeout", self.timeout)

    def _pull(self):
        dev = _buses.get(("uart", self.id))
        if dev is not None:
            more = dev.tx()
            if more:
                self._rx += more

    def write(self, buf):
        dev = _buses.get(("uart", self.id))
        if dev is not None:
            dev.rx(bytes(buf))
        return len(buf)

    def any(self):
        self._pull()
        return len(self._rx)

    def read(self, n=-1):
        self._pull()
        if not self._rx:
            return None
        if n is None or n < 0:
            n = len(self._rx)
        data, self._rx = self._rx[:n], self._rx[n:]
        return data

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)

    def flush(self):
        pass

    def deinit(self):
        pass


def _ticks():
    return time.ticks_ms() if _ON_TWIN else int(time.monotonic() * 1000)


@simheap.counted
class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        self.id = id
        self.callback = None
        if kw:
            self.init(**kw)

    def init(self, mode=PERIODIC, period=-1, callback=None, freq=-1):
        self.mode = mode
        self.period = period if period > 0 else (1000 // freq if freq > 0 else 1000)
        self.callback = callback
        self.due = self.period
        if self not in _timers:
            _timers.append(self)
        _start_ticker()

    def deinit(self):
        if self in _timers:
            _timers.remove(self)

    def _elapse(self, ms):
        self.due -= ms
        if self.due > 0:
            return
        if self.mode == Timer.PERIODIC:
            self.due += self.period
        else:
            self.deinit()
        if self.callback is not None:
            if _schedule is not None:
                try:
                    _schedule(self.callback, self)
                except RuntimeError:  # the schedule queue is full: the next tick comes
                    pass
            else:
                self.callback(self)


def fire_timers(ms):
    """Let `ms` of time pass for every timer (CPython tests; the ticker does it on the twin)."""
    for t in list(_timers):
        t._elapse(ms)
    wdt = WDT._live
    if wdt is not None:
        wdt._elapse(ms)


_TICK_MS = 5


def _start_ticker():
    global _ticker
    if not _ON_TWIN or _ticker is not None:
        return
    import _thread

    _ticker = True

    def run():
        # The hardware's timers are C on a board: a full heap must not stop them here. A
        # tick that finds no memory (scheduling a callback allocates) is lost, as one that
        # finds the schedule queue full.
        while True:
            time.sleep_ms(_TICK_MS)
            try:
                fire_timers(_TICK_MS)
            except MemoryError:
                pass

    _thread.start_new_thread(run, ())


RESET_EXIT = 75  # the simulator boots the firmware again on this exit code
# reset_cause() values as the ESP32 port's: power on (and brownout), machine.reset() or a
# panic, the watchdog, Ctrl-D at the REPL. The simulator says which for each boot
# ($CP_TWIN_RESET_CAUSE): power on for its first start, after a power cut too.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_cause = [PWRON_RESET]
try:
    import os as _os

    _cause[0] = int(_os.getenv("CP_TWIN_RESET_CAUSE") or PWRON_RESET)
except (ImportError, AttributeError, ValueError):
    pass


@simheap.counted
class WDT:
    """Cannot be stopped; if not fed within `timeout` ms the board resets (the process exits
    with RESET_EXIT after a line on stderr saying so)."""
    _live = None

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.left = timeout
        WDT._live = self
        _start_ticker()

    def feed(self):
        self.left = self.timeout

    def _elapse(self, ms):
        self.left -= ms
        if self.left <= 0:
            self.expired()

    def expired(self):
        sys.stderr.write("machine: watchdog reset\n")
        if _ON_TWIN:
            import os
            os._exit(RESET_EXIT) if hasattr(os, "_exit") else sys.exit(RESET_EXIT)
        raise SystemExit(RESET_EXIT)


class RTC:
    _offset = None  # seconds to add to the host's clock (set by datetime())

    def datetime(self, dt=None):
        if dt is None:
            return time.localtime()[:8]
        RTC._offset = dt
        return None


def reset():
    sys.exit(RESET_EXIT)


def soft_reset():
    sys.exit(RESET_EXIT)


def reset_cause():
    return _cause[0]


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


def freq(hz=None):
    return 240000000 if hz is None else None


def idle():
    time.sleep_ms(1) if _ON_TWIN else None


simheap.imported("machine", _HEAP)
