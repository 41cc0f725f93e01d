"""The timer-driven safety path: on unplug, a missing diode or an RCD trip the relay opens
within one timer period without the charger model's loop; it never closes anything."""
import pytest

import contactor
import ev
import machine
import rcd_model
from chargepoint.hardware.guard import Guard, all_off
from chargepoint.hardware.pilot import Pilot
from chargepoint.hardware.rcd import Rcd
from chargepoint.hardware.relay import Relay

PERIOD = 20


class Connector:
    """One connector's circuit: an EV, a contactor, a monitor, and the drivers on them."""

    def __init__(self, n, ticks, sleep):
        base = 10 * n
        self.ev = ev.EV("B", noise_mv=300, seed=n + 1)
        self.contactor = contactor.Contactor()
        self.monitor = rcd_model.RcdModel()
        machine.wire(base + 1, self.ev)  # pilot generator
        machine.wire(base + 2, self.ev)  # pilot ADC
        machine.wire(base + 3, self.contactor.coil)
        machine.wire(base + 4, self.contactor.feedback)
        machine.wire(base + 5, self.monitor)
        machine.wire(base + 6, self.monitor.test)
        self.pilot = Pilot(base + 1, base + 2, ticks_ms=ticks)
        self.relay = Relay(base + 3, feedback=base + 4, ticks_ms=ticks)
        self.rcd = Rcd(base + 5, test_pin=base + 6, ticks_ms=ticks, sleep_ms=sleep)
        self.max_amps = 32.0


@pytest.fixture
def connectors(ticks, sleep):
    return [Connector(1, ticks, sleep), Connector(2, ticks, sleep)]


def run(ticks, ms):
    """Time passes: the clock and the timers in one-period steps."""
    for _ in range(ms // PERIOD):
        ticks.advance(PERIOD)
        machine.fire_timers(PERIOD)


def charging(hw, ticks):
    """What the charger model does: offer, wait for C, close."""
    hw.pilot.offer(hw.max_amps)
    hw.ev.state = "C"
    run(ticks, 540)
    assert hw.pilot.state() == "C"
    hw.relay.set(True)
    assert hw.contactor.closed and hw.ev.amps() == pytest.approx(32, abs=0.05)


@pytest.fixture
def guard(connectors, ticks):
    g = Guard(connectors, period_ms=PERIOD)
    g.start()
    for hw in connectors:
        charging(hw, ticks)
    yield g
    g.stop()


@pytest.mark.parametrize("to", ["A", "E"])
def test_unplug_or_short_opens_the_relay_and_stops_pwm_within_one_period(connectors, guard,
                                                                          ticks, to):
    one, two = connectors
    one.ev.state = to
    run(ticks, PERIOD)
    assert not one.contactor.closed and not one.relay.get()
    assert one.ev.duty_u16 is None and one.ev.level == 1 and one.pilot.duty is None
    assert two.contactor.closed and two.ev.duty_u16 is not None  # the other one charges on
    assert one.pilot.state() == to  # the model sees what the guard acted on


def test_c_to_b_opens_the_relay_and_keeps_the_offer(connectors, guard, ticks):
    one = connectors[0]
    one.ev.state = "B"
    run(ticks, PERIOD)
    assert not one.contactor.closed
    assert one.ev.amps() == pytest.approx(32, abs=0.05)  # the EV only paused


def test_missing_diode_opens_the_relay_and_stops_pwm(connectors, guard, ticks):
    one = connectors[0]
    one.ev.diode = False
    run(ticks, PERIOD)
    assert not one.contactor.closed and one.ev.duty_u16 is None
    assert one.pilot.diode_fault and one.pilot.state() == "C"


def test_rcd_trip_opens_the_relay_and_stops_pwm(connectors, guard, ticks):
    one = connectors[0]
    one.monitor.trip()
    one.monitor.clear()  # even a short one
    run(ticks, PERIOD)
    assert not one.contactor.closed and one.ev.duty_u16 is None
    assert one.rcd.tripped()


def test_the_model_cannot_close_against_the_guard(connectors, guard, ticks):
    """A model step that read C just before the EV left closes nothing."""
    one = connectors[0]
    one.ev.state = "B"
    run(ticks, PERIOD)
    one.relay.set(True)
    assert not one.contactor.closed and not one.relay.get()


def test_the_model_closes_on_its_own_reading_of_c_between_ticks(connectors, ticks):
    """The interlock judges the pilot's latest burst, not the guard's last tick."""
    g = Guard(connectors, period_ms=PERIOD)
    g.start()
    one = connectors[0]
    one.pilot.offer(32)
    one.ev.state = "C"
    for _ in range(30):  # the model's loop sampling on its own; no timer fires
        ticks.advance(20)
        if one.pilot.state() == "C":
            break
    one.relay.set(True)
    assert one.contactor.closed
    g.stop()


def test_the_guard_never_closes_and_never_offers(connectors, ticks):
    g = Guard(connectors, period_ms=PERIOD)
    g.start()
    for hw in connectors:
        hw.ev.state = "C"
    run(ticks, 2000)
    for hw in connectors:
        assert hw.pilot.state() == "C"
        assert not hw.contactor.closed and hw.contactor.closes == 0
        assert hw.ev.duty_u16 is None
    charging(connectors[0], ticks)
    connectors[0].ev.state = "A"
    run(ticks, PERIOD)
    connectors[0].ev.state = "C"
    run(ticks, 2000)
    assert connectors[0].contactor.closes == 1 and not connectors[0].contactor.closed
    assert connectors[0].ev.duty_u16 is None
    g.stop()


def test_a_stopped_guard_does_nothing(connectors, guard, ticks):
    guard.stop()
    connectors[0].ev.state = "A"
    run(ticks, 200)
    assert connectors[0].contactor.closed


def test_a_failing_check_switches_everything_off(connectors, guard, ticks):
    def broken():
        raise OSError("adc")

    connectors[1].pilot.sample = broken
    run(ticks, PERIOD)
    assert guard.failures == 1
    for hw in connectors:
        assert not hw.contactor.closed and hw.ev.duty_u16 is None


def test_all_off_opens_every_relay_and_stops_every_pwm(connectors, guard, ticks):
    guard.stop()
    all_off(connectors)
    for hw in connectors:
        assert not hw.contactor.closed and hw.ev.duty_u16 is None and hw.ev.level == 1


def test_all_off_goes_on_past_a_failing_connector(connectors, guard, ticks):
    guard.stop()

    def broken(closed):
        raise OSError("gpio")

    connectors[0].relay.set = broken
    with pytest.raises(OSError):
        all_off(connectors)
    assert connectors[0].ev.duty_u16 is None
    assert not connectors[1].contactor.closed and connectors[1].ev.duty_u16 is None


TWIN_SCRIPT = """
import json, time
import machine, ev, contactor, rcd_model
from chargepoint.hardware.pilot import Pilot
from chargepoint.hardware.relay import Relay
from chargepoint.hardware.rcd import Rcd
from chargepoint.hardware.guard import Guard, all_off

class Hw:
    pass

def since(t):
    return time.ticks_diff(time.ticks_ms(), t)

car, k, m = ev.EV("B", noise_mv=300), contactor.Contactor(), rcd_model.RcdModel()
for pin, port in ((25, car), (36, car), (26, k.coil), (34, k.feedback), (35, m), (33, m.test)):
    machine.wire(pin, port)
hw = Hw()
hw.pilot, hw.relay, hw.rcd = Pilot(25, 36), Relay(26, feedback=34), Rcd(35, test_pin=33)
guard = Guard([hw], timer_id=0)
guard.start()
out = {"self_test": hw.rcd.self_test(), "tripped": hw.rcd.tripped()}
hw.pilot.offer(32)
car.state = "C"
t = time.ticks_ms()
while hw.pilot.state() != "C":
    time.sleep_ms(2)
out["c_ms"] = since(t)
hw.relay.set(True)
out["closed"] = k.closed
car.state = "A"
t = time.ticks_ms()
while k.closed and since(t) < 1000:
    time.sleep_ms(1)
out["open_ms"] = since(t)
out["pwm_off"] = car.duty_u16 is None
guard.stop()
all_off([hw])
print(json.dumps(out))
"""


def test_on_the_twin_the_soft_timer_opens_the_relay_within_100_ms(twins, tmp_path):
    """The drivers frozen in the twin, the guard on machine.Timer's scheduled callbacks."""
    import json
    import subprocess

    frozen = twins[0]
    r = subprocess.run([frozen, "-X", "heapsize=110000", "-c", TWIN_SCRIPT], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["self_test"] and not out["tripped"] and out["closed"] and out["pwm_off"]
    assert 500 <= out["c_ms"] < 1000
    assert out["open_ms"] < 100
