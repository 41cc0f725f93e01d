"""Residual-current monitor (a 6 mA DC / 30 mA AC module): trip input, optional test output."""
import time

import machine
from micropython import const

from chargepoint.platform.clock import ticks_diff

_TEST_MS = const(500)


class Rcd:
    """`pin`: the monitor's trip output (GPIO id or machine.Pin), `active` its level when
    tripped. `test_pin`: the monitor's test input (`test_active` starts a test), or None.

    Recovery rule: a trip latches, even one the monitor has already released (a short
    residual pulse counts), and also one present at start-up. tripped() stays True until
    reset() is called while the input reads normal; the charger model has then ended the
    session (a trip is never resumed from), and a new one needs a new authorisation. Call
    reset() once the fault is gone: by an operator's action, or when the EV has been unplugged
    (a monitor that still trips keeps it latched). A reboot starts unlatched, but an input that
    is still tripped latches again at the first tripped().

    self_test() blocks for up to 2 x `test_ms` (sleeping with `sleep_ms`); run it with the relay
    open, before a session closes it: a real trip during the test is taken for the test's.
    """

    def __init__(self, pin, active=1, pull=None, test_pin=None, test_active=1,
                 test_ms=_TEST_MS, ticks_ms=None, sleep_ms=None):
        if not isinstance(pin, machine.Pin):
            pin = machine.Pin(pin, machine.Pin.IN) if pull is None else machine.Pin(
                pin, machine.Pin.IN, pull)
        self._pin = pin
        self._on = 1 if active else 0
        self._test = None
        self._test_on = 1 if test_active else 0
        if test_pin is not None:
            if isinstance(test_pin, machine.Pin):
                test_pin.init(machine.Pin.OUT, value=1 - self._test_on)
            else:
                test_pin = machine.Pin(test_pin, machine.Pin.OUT, value=1 - self._test_on)
            self._test = test_pin
        self._test_ms = test_ms
        self._ticks = ticks_ms or time.ticks_ms
        self._sleep = sleep_ms or time.sleep_ms
        self._flag = False  # set by the IRQ handler, nothing else happens there
        self._latched = False
        self._testing = False
        pin.irq(handler=self._irq,
                trigger=machine.Pin.IRQ_RISING if self._on else machine.Pin.IRQ_FALLING)

    def _irq(self, pin):
        self._flag = True

    def _active(self):
        return self._pin.value() == self._on

    def tripped(self):
        if not self._testing and (self._flag or self._active()):
            self._latched = True
        return self._latched

    def reset(self):
        """Clear a latched trip; False (still latched) while the input is tripped."""
        if self._active():
            return False
        self._flag = False
        self._latched = False
        return True

    @property
    def testable(self):
        """Whether there is a test output to exercise (self_test() before each session)."""
        return self._test is not None

    def self_test(self):
        """Pulse the test input: True when the monitor trips within `test_ms` (that trip is
        not reported), False when it does not, when it does not release afterwards (then it
        is reported as a trip), when it is tripped already, or without a test output."""
        if self._test is None or self.tripped():
            return False
        self._testing = True
        self._flag = False
        ticks = self._ticks
        seen = False
        try:
            start = ticks()
            self._test.value(self._test_on)
            while ticks_diff(ticks(), start) < self._test_ms:
                if self._flag or self._active():
                    seen = True
                    break
                self._sleep(1)
            self._test.value(1 - self._test_on)
            start = ticks()
            while seen and self._active() and ticks_diff(ticks(), start) < self._test_ms:
                self._sleep(1)
        finally:
            self._test.value(1 - self._test_on)
            self._flag = False
            self._testing = False  # never left masking real trips
        return seen and not self.tripped()
