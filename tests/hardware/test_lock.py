"""Cable lock driver against a simulated actuator: pulses, the feedback, a jammed bolt."""
import lock_motor
import machine
from chargepoint.hardware.lock import Lock

LOCK, UNLOCK, FEEDBACK = 18, 19, 39


def wired(**kw):
    m = lock_motor.LockMotor(**kw)
    machine.wire(LOCK, m.lock_port)
    machine.wire(UNLOCK, m.unlock_port)
    machine.wire(FEEDBACK, m.feedback)
    return m


def test_lock_and_unlock_pulse_the_motor_and_read_the_bolt(sleep):
    m = wired()
    slept = []
    lock = Lock(LOCK, UNLOCK, feedback=FEEDBACK, pulse_ms=250,
                sleep_ms=lambda ms: slept.append(ms))
    assert not m.bolt and not lock.locked()
    assert lock.lock() and m.bolt and lock.locked()
    assert not m.lock_port.on and not m.unlock_port.on  # the pulse ended
    assert lock.unlock() and not m.bolt and not lock.locked()
    assert slept == [250, 250] and m.moves == 2 and not m.shorted


def test_a_jammed_bolt_fails_both_ways(sleep):
    m = wired()
    lock = Lock(LOCK, UNLOCK, feedback=FEEDBACK, sleep_ms=sleep)
    m.jam = True
    assert not lock.lock() and not lock.locked()
    m.jam = False
    assert lock.lock()
    m.jam = True
    assert not lock.unlock() and lock.locked()


def test_feedback_active_low(sleep):
    m = wired(feedback_active=0, active=0)
    lock = Lock(LOCK, UNLOCK, feedback=FEEDBACK, active=0, feedback_active=0, sleep_ms=sleep)
    assert lock.lock() and m.bolt and lock.locked()
    assert lock.unlock() and not m.bolt


def test_without_feedback_a_jam_goes_unseen(sleep):
    m = wired()
    m.jam = True
    lock = Lock(LOCK, UNLOCK, sleep_ms=sleep)
    assert lock.lock() and lock.locked() and not m.bolt


def test_a_solenoid_holds_the_bolt_on_one_output(sleep):
    m = wired(hold=True)
    lock = Lock(LOCK, feedback=FEEDBACK, sleep_ms=sleep)
    assert lock.lock() and m.bolt and m.lock_port.on
    assert lock.unlock() and not m.bolt and not m.lock_port.on
    m.jam = True
    assert not lock.lock()
