"""Contactor driver against a simulated contactor: coils switched together, active level,
the welded check through the auxiliary contact, the boot-time open."""
import contactor
import machine
from chargepoint.hardware.relay import Relay, open_all


def wired(coils=1, active=1, feedback_active=1):
    k = contactor.Contactor(coils=coils, active=active, feedback_active=feedback_active)
    for i, coil in enumerate(k.coils):
        machine.wire(26 + i, coil)
    machine.wire(34, k.feedback)
    return k


def test_a_new_relay_is_open_and_closes_and_opens(ticks):
    k = wired()
    relay = Relay(26, ticks_ms=ticks)
    assert not relay.get() and not k.closed and not k.coil.energised
    relay.set(True)
    assert relay.get() and k.closed
    relay.set(False)
    assert not relay.get() and not k.closed


def test_two_coils_switch_together_active_low(ticks):
    k = wired(coils=2, active=0)
    relay = Relay([26, 27], active=0, ticks_ms=ticks)
    assert not k.closed and not k.coils[0].energised and not k.coils[1].energised
    relay.set(True)
    assert k.closed and k.coils[0].energised and k.coils[1].energised
    relay.set(False)
    assert not k.closed and not k.coils[0].energised and not k.coils[1].energised


def test_pin_objects_are_taken_as_well(ticks):
    k = wired()
    relay = Relay(machine.Pin(26), feedback=machine.Pin(34, machine.Pin.IN), ticks_ms=ticks)
    relay.set(True)
    assert k.closed and relay.contact() is True


def test_feedback_reports_the_contact(ticks):
    k = wired(feedback_active=0)
    relay = Relay(26, feedback=34, feedback_active=0, ticks_ms=ticks)
    assert relay.contact() is False
    relay.set(True)
    assert relay.contact() is True
    assert Relay(27, ticks_ms=ticks).contact() is None  # no feedback
    assert k.closes == 1


def test_welded_contact_is_found_after_the_settle_time_and_latched(ticks):
    k = wired()
    relay = Relay(26, feedback=34, settle_ms=200, ticks_ms=ticks)
    relay.set(True)
    k.welded = True
    relay.set(False)
    assert k.closed and not relay.get()
    ticks.advance(199)
    assert not relay.welded()  # not settled yet
    ticks.advance(1)
    assert relay.welded()
    k.welded = False
    k.coil.drive(0)  # even if it came loose later, it needs service
    assert relay.welded()


def test_a_clean_open_is_not_welded(ticks):
    k = wired()
    relay = Relay(26, feedback=34, ticks_ms=ticks)
    relay.set(True)
    ticks.advance(5000)
    assert not relay.welded()  # closed: nothing to check
    relay.set(False)
    ticks.advance(200)
    assert not relay.welded() and not k.closed
    relay.set(False)  # opening again restarts nothing
    assert not relay.welded()


def test_welded_before_the_reboot_is_found(ticks):
    k = wired()
    k.welded = True
    k.coil.drive(1)  # closed and welded by the firmware before this boot
    relay = Relay(26, feedback=34, ticks_ms=ticks)
    ticks.advance(200)
    assert relay.welded()


def test_without_feedback_welded_is_never_reported(ticks):
    k = wired()
    relay = Relay(26, ticks_ms=ticks)
    relay.set(True)
    k.welded = True
    relay.set(False)
    ticks.advance(1000)
    assert not relay.welded()


def test_an_interlock_keeps_it_open_while_it_says_no(ticks):
    k = wired()
    relay = Relay(26, ticks_ms=ticks)
    allowed = [False]
    relay.interlock = lambda: allowed[0]
    relay.set(True)
    assert not relay.get() and not k.closed
    allowed[0] = True
    relay.set(True)
    assert relay.get() and k.closed
    allowed[0] = False
    relay.set(False)  # opening never asks
    assert not relay.get() and not k.closed


def test_open_all_drives_every_output_to_open():
    high = wired(coils=2, active=1)
    high.coils[0].drive(1)
    high.coils[1].drive(1)
    assert high.closed
    open_all([26, 27])
    assert not high.closed
    machine.unwire()
    low = wired(coils=1, active=0)
    low.coil.drive(0)
    assert low.closed
    open_all([26], active=0)
    assert not low.closed
