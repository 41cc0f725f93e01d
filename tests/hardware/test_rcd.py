"""Residual-current monitor driver against a simulated monitor: the IRQ flag, the latch and
its reset, the self-test passing and failing."""
import machine
import rcd_model
from chargepoint.hardware.rcd import Rcd

TRIP, TEST = 35, 33


def wired(active=1, test_active=1):
    m = rcd_model.RcdModel(active=active, test_active=test_active)
    machine.wire(TRIP, m)
    machine.wire(TEST, m.test)
    return m


def test_the_irq_only_sets_a_flag_and_tripped_latches_it(ticks, sleep):
    m = wired()
    rcd = Rcd(TRIP, test_pin=TEST, ticks_ms=ticks, sleep_ms=sleep)
    assert not rcd.tripped()
    m.trip()
    assert rcd._flag and not rcd._latched  # the handler did nothing else
    assert rcd.tripped()


def test_a_short_pulse_latches(ticks, sleep):
    m = wired(active=0)
    rcd = Rcd(TRIP, active=0, ticks_ms=ticks, sleep_ms=sleep)
    m.trip()
    m.clear()  # gone before anyone looked: the IRQ saw it
    assert rcd.tripped()
    assert rcd.tripped()  # latched


def test_reset_clears_only_when_the_input_is_back_to_normal(ticks, sleep):
    m = wired()
    rcd = Rcd(TRIP, ticks_ms=ticks, sleep_ms=sleep)
    m.trip()
    assert rcd.tripped()
    assert not rcd.reset() and rcd.tripped()
    m.clear()
    assert rcd.tripped()
    assert rcd.reset() and not rcd.tripped()


def test_a_trip_present_at_start_up_is_reported(ticks, sleep):
    m = wired()
    m.trip()
    rcd = Rcd(TRIP, ticks_ms=ticks, sleep_ms=sleep)
    assert rcd.tripped()


def test_self_test_passes_and_is_not_a_trip(ticks, sleep):
    m = wired(test_active=0)
    rcd = Rcd(TRIP, test_pin=TEST, test_active=0, ticks_ms=ticks, sleep_ms=sleep)
    assert not m.testing  # the test output starts released
    t0 = ticks.now
    assert rcd.self_test()
    assert ticks.now - t0 < 500
    assert not rcd.tripped() and not m.testing


def test_self_test_fails_when_the_monitor_does_not_trip(ticks, sleep):
    m = wired()
    m.broken = True
    rcd = Rcd(TRIP, test_pin=TEST, ticks_ms=ticks, sleep_ms=sleep)
    t0 = ticks.now
    assert not rcd.self_test()
    assert ticks.now - t0 == 500
    assert not rcd.tripped()


def test_self_test_fails_and_trips_when_the_monitor_stays_tripped(ticks, sleep):
    m = wired()
    m.stuck = True
    rcd = Rcd(TRIP, test_pin=TEST, ticks_ms=ticks, sleep_ms=sleep)
    assert not rcd.self_test()
    assert rcd.tripped()


def test_self_test_is_refused_while_tripped_or_without_a_test_output(ticks, sleep):
    m = wired()
    rcd = Rcd(TRIP, test_pin=TEST, ticks_ms=ticks, sleep_ms=sleep)
    m.trip()
    assert not rcd.self_test() and rcd.tripped()
    machine.unwire()
    wired()
    assert not Rcd(TRIP, ticks_ms=ticks, sleep_ms=sleep).self_test()


def test_a_real_trip_after_the_self_test_is_reported(ticks, sleep):
    m = wired()
    rcd = Rcd(TRIP, test_pin=TEST, ticks_ms=ticks, sleep_ms=sleep)
    assert rcd.self_test()
    m.trip()
    assert rcd.tripped()
