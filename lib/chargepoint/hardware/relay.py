"""Contactor on one or two GPIO outputs, with an optional feedback input for the welded check."""
import time

import machine
from micropython import const

from chargepoint.platform.clock import ticks_diff

_SETTLE_MS = const(200)  # a contactor drops out in ~20-50 ms; the feedback is read after this


def _output(pin, level):
    if isinstance(pin, machine.Pin):
        pin.init(machine.Pin.OUT, value=level)
        return pin
    return machine.Pin(pin, machine.Pin.OUT, value=level)


def _input(pin, pull):
    if isinstance(pin, machine.Pin):
        return pin
    if pull is None:
        return machine.Pin(pin, machine.Pin.IN)
    return machine.Pin(pin, machine.Pin.IN, pull)


def open_all(pins, active=1):
    """Drive every contactor output to "open": the first thing boot.py does (GPIO levels
    survive a soft reset, so a relay closed before it would stay closed)."""
    for p in pins:
        _output(p, 1 - active)


class Relay:
    """`pins`: a GPIO (id or machine.Pin) or a list of them (e.g. the L and N contactors),
    switched together; `active`: the level that closes. `feedback`: an input reading the
    auxiliary contact or an AC sense (`feedback_active` when the contact is closed).

    welded(): once the contactor was told to open and `settle_ms` has passed, a feedback that
    still says closed latches it welded until the board restarts (it needs service).
    `interlock`: None, or a function the guard installs: set(True) keeps the relay open
    unless it returns True at that moment.
    """

    def __init__(self, pins, active=1, feedback=None, feedback_active=1, feedback_pull=None,
                 settle_ms=_SETTLE_MS, ticks_ms=None):
        if not isinstance(pins, (list, tuple)):
            pins = (pins,)
        self._on = 1 if active else 0
        self._pins = tuple(_output(p, 1 - self._on) for p in pins)
        self._fb = None if feedback is None else _input(feedback, feedback_pull)
        self._fb_on = 1 if feedback_active else 0
        self._settle_ms = settle_ms
        self._ticks = ticks_ms or time.ticks_ms
        self._closed = False
        # ticks of the last open command until the feedback was read; construction counts as
        # one, so a contact welded before a reboot is found too
        self._opened_at = self._ticks()
        self._welded = False
        self.interlock = None

    def set(self, closed):
        closed = bool(closed) and (self.interlock is None or self.interlock())
        level = self._on if closed else 1 - self._on
        for p in self._pins:
            p.value(level)
        if self._closed and not closed:
            self._opened_at = self._ticks()
        elif closed:
            self._opened_at = None
        self._closed = closed

    def get(self):
        return self._closed

    def contact(self):
        """What the feedback says (True closed), or None without one."""
        if self._fb is None:
            return None
        return self._fb.value() == self._fb_on

    def welded(self):
        if self._welded:
            return True
        if self._opened_at is None or self._fb is None:
            return False
        if ticks_diff(self._ticks(), self._opened_at) < self._settle_ms:
            return False
        self._opened_at = None  # checked once per open command
        self._welded = self._fb.value() == self._fb_on
        return self._welded
