"""Hardware health as the charger model reports it: welded contactor, missing EV diode, meter
failure, reader failure; what each does to a running and to a new session."""
from conftest import Rig

TAG = "04A1B2C3D4"


def charging(rig):
    rig.tap(TAG)
    rig.ev("C")
    assert rig.hw().relay.closed


def last_status(rig, cid=1):
    p = [p for p in rig.payloads("StatusNotification") if p["connectorId"] == cid][-1]
    return p["status"], p["errorCode"]


def test_welded_contactor_faults_and_no_new_session_closes_the_relay(rig):
    charging(rig)
    rig.tap(TAG)
    rig.hw().relay.stuck = True  # the contact stayed closed after the open command
    rig.step()
    assert last_status(rig) == ("Faulted", "PowerSwitchFailure")
    rig.ev("A")
    rig.tap(TAG)
    rig.ev("C")
    rig.run(2)
    assert rig.conn().tx is None and len(rig.payloads("StartTransaction")) == 1
    assert rig.hw().relay.switches == 2  # closed once, opened once: never again


def test_missing_diode_opens_the_relay_and_faults(rig):
    charging(rig)
    rig.hw().pilot.diode_fault = True
    rig.step()
    assert not rig.hw().relay.closed and rig.hw().pilot.amps is None
    assert last_status(rig) == ("Faulted", "EVCommunicationError")


def test_meter_failure_lets_the_running_session_go_on_and_starts_no_new_one(rig):
    charging(rig)
    rig.hw().meter.ok = False
    rig.step()
    assert rig.hw().relay.closed and rig.conn().tx is not None
    assert last_status(rig) == ("Charging", "PowerMeterFailure")
    rig.tap(TAG)
    rig.ev("A")
    rig.tap(TAG)
    rig.ev("C")
    rig.run(2)
    assert not rig.hw().relay.closed and len(rig.payloads("StartTransaction")) == 1
    assert last_status(rig) == ("Preparing", "PowerMeterFailure")
    rig.hw().meter.ok = True  # the meter answers again: a session may start
    rig.tap(TAG)
    rig.step()
    assert rig.hw().relay.closed and last_status(rig) == ("Charging", "NoError")


def test_reader_failure_is_reported_on_connector_zero(rig):
    rig.board.rfid.failed = True
    rig.step()
    assert last_status(rig, 0) == ("Available", "ReaderFailure")
    rig.board.rfid.failed = False
    rig.step()
    assert last_status(rig, 0) == ("Available", "NoError")


def test_rcd_self_test_before_each_session_and_a_failed_one_starts_nothing(rig):
    rcd = rig.hw().rcd
    rcd.testable = True
    charging(rig)
    assert rcd.tests == 1
    rig.tap(TAG)
    rig.ev("A")
    rcd.test_passes = False
    rig.tap(TAG)
    rig.ev("C")
    rig.run(2)
    assert not rig.hw().relay.closed and len(rig.payloads("StartTransaction")) == 1
    assert last_status(rig) == ("Faulted", "GroundFailure")
    rig.ev("A")
    assert last_status(rig) == ("Available", "NoError")
