"""Cable lock of a socket outlet: motor outputs pulsed to lock and unlock, optional feedback."""
import time

import machine
from micropython import const

_PULSE_MS = const(300)


def _output(pin, level):
    if isinstance(pin, machine.Pin):
        pin.init(machine.Pin.OUT, value=level)
        return pin
    return machine.Pin(pin, machine.Pin.OUT, value=level)


class Lock:
    """`lock_pin`/`unlock_pin`: the motor driver's two inputs (GPIO id or machine.Pin; an
    H-bridge: never both active), each pulsed `active` for `pulse_ms`. Without `unlock_pin`
    the one output holds the bolt (a solenoid: `active` locked, the other level unlocked), and
    the feedback is read `pulse_ms` after it changed.
    `feedback`: input reading the bolt (`feedback_active` when locked), or None: then lock()
    and unlock() cannot tell a failure and return True.

    lock() and unlock() block for `pulse_ms` (sleeping with `sleep_ms`).
    """

    def __init__(self, lock_pin, unlock_pin=None, feedback=None, active=1, feedback_active=1,
                 feedback_pull=None, pulse_ms=_PULSE_MS, sleep_ms=None):
        self._on = 1 if active else 0
        self._lock = _output(lock_pin, 1 - self._on)
        self._unlock = None if unlock_pin is None else _output(unlock_pin, 1 - self._on)
        if feedback is not None and not isinstance(feedback, machine.Pin):
            feedback = machine.Pin(feedback, machine.Pin.IN) if feedback_pull is None else (
                machine.Pin(feedback, machine.Pin.IN, feedback_pull))
        self._fb = feedback
        self._fb_on = 1 if feedback_active else 0
        self._pulse_ms = pulse_ms
        self._sleep = sleep_ms or time.sleep_ms
        self._commanded = False  # what the last command asked for (without a feedback)

    def lock(self):
        return self._move(True)

    def unlock(self):
        return self._move(False)

    def locked(self):
        if self._fb is None:
            return self._commanded
        return self._fb.value() == self._fb_on

    def _move(self, locked):
        off = 1 - self._on
        if self._unlock is None:
            self._lock.value(self._on if locked else off)
            self._sleep(self._pulse_ms)
        else:
            motor, other = (self._lock, self._unlock) if locked else (self._unlock, self._lock)
            other.value(off)  # the H-bridge never sees both inputs on
            motor.value(self._on)
            try:
                self._sleep(self._pulse_ms)
            finally:
                motor.value(off)
        self._commanded = locked
        return self.locked() == locked
