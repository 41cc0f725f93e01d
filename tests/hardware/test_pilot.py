"""Control pilot driver against a simulated EV: the duty table, state bands with noise, the
C/D debounce, the diode check, the steady levels."""
import pytest

import ev
import machine
from chargepoint.hardware.pilot import Pilot, duty_for

PWM_PIN, ADC_PIN = 25, 36


def board(ticks, state="A", noise_mv=0, **kw):
    car = ev.EV(state, noise_mv=noise_mv)
    machine.wire(PWM_PIN, car)
    machine.wire(ADC_PIN, car)
    return car, Pilot(PWM_PIN, ADC_PIN, ticks_ms=ticks, **kw)


def run(pilot, ticks, ms, step=20):
    """Sample every `step` ms for `ms`, as the guard's timer does."""
    for _ in range(ms // step):
        ticks.advance(step)
        pilot.sample()
    return pilot.now


@pytest.mark.parametrize("amps, duty", [
    (6, 10.0), (6.0, 10.0), (10, 16.667), (16, 26.667), (32, 53.333), (51, 85.0),
    (51.5, 84.6), (52, 84.8), (63, 89.2), (80, 96.0), (80.1, 96.0), (100, 96.0)])
def test_duty_follows_the_j1772_table(amps, duty):
    assert duty_for(amps) == pytest.approx(duty, abs=0.001)


@pytest.mark.parametrize("amps", [None, 0, 5, 5.9, -3])
def test_below_six_amps_is_no_offer(amps):
    assert duty_for(amps) is None


def test_offer_starts_1khz_pwm_and_none_stops_it_at_plus_12v(ticks):
    car, pilot = board(ticks, "B")
    assert car.duty_u16 is None and car.level == 1  # no offer at start: steady +12 V
    pilot.offer(32)
    assert car.freq == 1000 and car.duty_u16 == round(53.333 * 655.35)
    assert pilot.duty == pytest.approx(53.333, abs=0.001)
    assert car.amps() == pytest.approx(32, abs=0.05)
    pilot.offer(16)  # a new current changes the duty of the running PWM
    assert car.amps() == pytest.approx(16, abs=0.05)
    pilot.offer(5.9)  # below 6 A: no offer
    assert car.duty_u16 is None and car.level == 1 and pilot.duty is None
    pilot.offer(80.1)
    assert car.duty() == pytest.approx(96.0, abs=0.01)
    pilot.offer(None)
    assert car.duty_u16 is None and car.level == 1 and pilot.duty is None


def test_fault_drives_minus_12v_and_reads_f(ticks):
    car, pilot = board(ticks, "B")
    pilot.offer(16)
    pilot.fault()
    assert car.duty_u16 is None and car.level == 0 and pilot.duty is None
    assert pilot.state() == "F"
    pilot.offer(None)  # back to +12 V: the EV's state again
    ticks.advance(20)
    assert pilot.state() == "B"


@pytest.mark.parametrize("offer", [None, 16, 80])
@pytest.mark.parametrize("state", ["A", "B", "C", "D", "E"])
def test_each_state_is_read_through_noise(ticks, state, offer):
    car, pilot = board(ticks, state, noise_mv=500)
    pilot.offer(offer)
    assert run(pilot, ticks, 600) == state
    assert not pilot.diode_fault
    high, low = pilot.plateaus_mv()
    assert abs(high - ev.HIGH_MV[state]) <= 600
    if offer is not None and state != "E":
        assert abs(low + 12000) <= 600  # the burst caught the low half, even at 96 %


def test_calibration_and_thresholds_are_the_boards(ticks):
    cal = (200000, -12000, 2800000, 12000)  # another divider
    car = ev.EV("A", calibration=cal)
    machine.wire(PWM_PIN, car)
    machine.wire(ADC_PIN, car)
    assert Pilot(PWM_PIN, ADC_PIN, ticks_ms=ticks, calibration=cal).state() == "A"
    # with the default calibration the same 12 V reads 9.6 V: B
    assert Pilot(PWM_PIN, ADC_PIN, ticks_ms=ticks).state() == "B"
    # the board's own bands: A from 12.5 V makes 12 V a B
    pilot = Pilot(PWM_PIN, ADC_PIN, ticks_ms=ticks, calibration=cal, thresholds={"A": 12500})
    assert pilot.state() == "B"


def test_a_calibration_that_falls_is_refused(ticks):
    with pytest.raises(ValueError):
        Pilot(PWM_PIN, ADC_PIN, ticks_ms=ticks, calibration=(3100000, -12000, 100000, 12000))


def test_c_is_reported_after_500_ms_stable(ticks):
    car, pilot = board(ticks, "B", noise_mv=300)
    pilot.offer(16)
    assert pilot.state() == "B"
    car.state = "C"
    assert run(pilot, ticks, 20) == "B"  # first seen here: 500 ms from now it counts
    assert run(pilot, ticks, 480) == "B"
    assert pilot.state() == "B"
    assert run(pilot, ticks, 20) == "C"
    assert pilot.state() == "C"


def test_a_flicker_restarts_the_debounce(ticks):
    car, pilot = board(ticks, "B")
    pilot.offer(16)
    pilot.sample()
    car.state = "C"
    run(pilot, ticks, 400)
    car.state = "B"
    run(pilot, ticks, 20)
    car.state = "C"
    assert run(pilot, ticks, 500) == "B"
    assert run(pilot, ticks, 20) == "C"


def test_c_to_d_is_debounced_too(ticks):
    car, pilot = board(ticks, "C")
    pilot.offer(16)
    run(pilot, ticks, 520)
    car.state = "D"
    assert run(pilot, ticks, 500) == "C"
    assert run(pilot, ticks, 20) == "D"


@pytest.mark.parametrize("to", ["A", "B", "E"])
def test_leaving_c_is_reported_at_the_next_sample(ticks, to):
    car, pilot = board(ticks, "C", noise_mv=300)
    pilot.offer(16)
    run(pilot, ticks, 520)
    assert pilot.state() == "C"
    car.state = to
    ticks.advance(1)  # still fresh for state(): the next burst tells
    assert pilot.sample() == to
    assert pilot.state() == to


def test_state_samples_by_itself_when_the_last_burst_is_old(ticks):
    car, pilot = board(ticks, "B")
    assert pilot.state() == "B"
    car.state = "A"
    assert pilot.state() == "B"  # a burst 0 ms ago is fresh
    ticks.advance(20)
    assert pilot.state() == "A"


def test_a_passed_unplug_is_still_reported_once(ticks):
    """The guard may act on a short A; the model must see it too."""
    car, pilot = board(ticks, "B")
    pilot.offer(16)
    pilot.state()
    car.state = "A"
    pilot.sample()
    car.state = "B"
    pilot.sample()
    assert pilot.now == "B"
    assert pilot.state() == "A"
    assert pilot.state() == "B"


@pytest.mark.parametrize("state", ["B", "C", "D"])
@pytest.mark.parametrize("amps", [6, 32, 80])
def test_missing_diode_is_a_fault_until_unplugged(ticks, state, amps):
    car, pilot = board(ticks, state, noise_mv=300)
    car.diode = False
    pilot.state()
    assert not pilot.diode_fault  # no PWM: nothing to check
    pilot.offer(amps)
    ticks.advance(20)
    pilot.sample()
    assert pilot.diode_fault
    assert pilot.now in ("B", state)  # the EV's state stays what it is (C/D debounce)
    pilot.offer(None)  # the guard or the model withdraws the PWM: the fault stays
    run(pilot, ticks, 100)
    assert pilot.diode_fault
    car.state = "A"
    ticks.advance(20)
    pilot.sample()
    assert not pilot.diode_fault and pilot.state() == "A"


def test_a_diode_present_is_no_fault(ticks):
    car, pilot = board(ticks, "C", noise_mv=500)
    pilot.offer(32)
    run(pilot, ticks, 2000)
    assert not pilot.diode_fault


def test_a_shorted_pilot_is_e_and_no_diode_fault(ticks):
    car, pilot = board(ticks, "E", noise_mv=300)
    car.diode = False
    pilot.offer(16)
    assert run(pilot, ticks, 100) == "E"
    assert not pilot.diode_fault
