"""The Smart Charging profile on a charge point: SetChargingProfile, ClearChargingProfile,
GetCompositeSchedule (OCPP 1.6 §3.13, §5.5, §5.7, §5.16) and the limit on the pilot.

Every request sent and every answer is checked against the official schemas, with decimals
read as decimal.Decimal: jsonschema's multipleOf 0.1 is wrong for binary floats (8.6 / 0.1 is
85.99999999999999), which is how mobilityhouse/ocpp reads them too.
"""
import json
import os
from decimal import Decimal

import jsonschema
import pytest

from conftest import SCHEMAS, T0, Rig
from chargepoint.ocpp.timestamps import iso

TAG = "04A1B2C3D4"
OTHER = "CAFE0001"
NOON = iso(T0)  # 2026-11-21T12:00:00Z; the charge point's clock is set to 12:00:01
_schemas = {}


def valid(payload, name):
    if name not in _schemas:
        with open(os.path.join(SCHEMAS, name + ".json")) as f:
            _schemas[name] = json.load(f, parse_float=Decimal)
    jsonschema.validate(json.loads(json.dumps(payload), parse_float=Decimal), _schemas[name])


def call(rig, action, payload):
    """The Central System sends a CALL; the charge point's answer (a CALLRESULT payload, or
    the CALLERROR as a list)."""
    valid(payload, action)
    uid = "sc-%d" % len(rig.inbound)
    rig.inbound[uid] = action
    sent = rig.transport.sent
    n = len(sent)
    rig.cp.engine.feed(json.dumps([2, uid, action, payload]))
    answers = [f for f in sent[n:] if json.loads(f)[1] == uid]
    assert len(answers) == 1
    sent.remove(answers[0])  # checked here, not again by the rig with float decimals
    msg = json.loads(answers[0])
    if msg[0] == 4:
        return msg
    valid(msg[2], action + "Response")
    return msg[2]


def profile(pid, purpose="TxDefaultProfile", periods=((0, 10),), stack=0, kind="Absolute",
            unit="A", **extra):
    sched = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        dict(zip(("startPeriod", "limit", "numberPhases"), p)) for p in periods]}
    p = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
         "chargingProfileKind": kind, "chargingSchedule": sched}
    for key, value in extra.items():
        (sched if key in ("startSchedule", "duration", "minChargingRate") else p)[key] = value
    return p


def set_profile(rig, cid, p):
    return call(rig, "SetChargingProfile", {"connectorId": cid, "csChargingProfiles": p})["status"]


def composite(rig, cid, duration, unit=None):
    payload = {"connectorId": cid, "duration": duration}
    if unit:
        payload["chargingRateUnit"] = unit
    return call(rig, "GetCompositeSchedule", payload)


def periods(answer):
    return [(p["startPeriod"], p["limit"])
            for p in answer["chargingSchedule"]["chargingSchedulePeriod"]]


def start(connectors=1, **kw):
    r = Rig(connectors=connectors, **kw)
    r.step()
    return r


@pytest.fixture
def rig():
    return start()


def run(rig, ms=0):
    """One loop step with the limits applied first, as the charge point will do it."""
    rig.ticks.advance(ms)
    rig.cp.smartcharging.before()
    rig.step()


def charging(rig, cid=1, tag=TAG):
    rig.ev("B", cid)
    rig.tap(tag)
    rig.ev("C", cid)
    run(rig)
    return rig.conn(cid).tx["id"]


def now(rig):
    return rig.cp.clock.wall()


# -- configuration ------------------------------------------------------------------------

def test_configuration_keys_of_the_profile_are_reported_read_only(rig):
    keys = ["ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
            "ChargingScheduleMaxPeriods", "ConnectorSwitch3to1PhaseSupported",
            "MaxChargingProfilesInstalled"]
    answer = call(rig, "GetConfiguration", {"key": keys})
    assert answer == {"configurationKey": [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True,
         "value": "Current,Power"},
        {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
        {"key": "ConnectorSwitch3to1PhaseSupported", "readonly": True, "value": "false"},
        {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "10"}]}
    assert call(rig, "ChangeConfiguration", {"key": "MaxChargingProfilesInstalled",
                                             "value": "20"}) == {"status": "Rejected"}


# -- SetChargingProfile -------------------------------------------------------------------

def test_charge_point_max_profile_only_on_connector_zero(rig):
    cap = profile(1, "ChargePointMaxProfile")
    assert set_profile(rig, 1, cap) == "Rejected"
    assert set_profile(rig, 0, cap) == "Accepted"


def test_tx_profile_only_for_the_running_transaction_of_its_connector(rig):
    tx = profile(1, "TxProfile")
    assert set_profile(rig, 1, tx) == "Rejected"  # no transaction
    txid = charging(rig)
    assert set_profile(rig, 0, tx) == "Rejected"
    assert set_profile(rig, 1, dict(tx, transactionId=txid + 1)) == "Rejected"
    assert set_profile(rig, 1, dict(tx, transactionId=txid)) == "Accepted"
    assert set_profile(rig, 1, profile(2, "TxProfile", stack=1)) == "Accepted"  # the running one
    assert [p[0] for p in rig.cp.smartcharging.profiles] == [1, 2]


def test_unknown_connector_is_rejected(rig):
    assert set_profile(rig, 2, profile(1)) == "Rejected"


def test_same_purpose_and_stack_level_on_a_connector_replaces(rig):
    assert set_profile(rig, 1, profile(1, periods=((0, 6),))) == "Accepted"
    assert set_profile(rig, 1, profile(2, periods=((0, 8),))) == "Accepted"
    assert set_profile(rig, 0, profile(3, periods=((0, 12),))) == "Accepted"  # connector 0
    assert set_profile(rig, 1, profile(4, stack=1)) == "Accepted"
    assert sorted(p[0] for p in rig.cp.smartcharging.profiles) == [2, 3, 4]


def test_same_charging_profile_id_replaces(rig):
    assert set_profile(rig, 1, profile(7, stack=2)) == "Accepted"
    assert set_profile(rig, 0, profile(7, "ChargePointMaxProfile", periods=((0, 13),))) == \
        "Accepted"
    (only,) = rig.cp.smartcharging.profiles
    assert only[1:4] == (0, 0, 0)  # connector 0, ChargePointMaxProfile, stack level 0


def test_limits_of_the_configuration_are_enforced(rig):
    assert set_profile(rig, 1, profile(1, stack=9)) == "Rejected"
    assert set_profile(rig, 1, profile(1, stack=8)) == "Accepted"
    many = tuple((60 * i, 6) for i in range(25))
    assert set_profile(rig, 0, profile(2, periods=many)) == "Rejected"
    assert set_profile(rig, 0, profile(2, periods=many[:24])) == "Accepted"
    for pid in range(3, 11):
        assert set_profile(rig, 1, profile(pid, stack=pid - 3)) == "Accepted"
    assert len(rig.cp.smartcharging.profiles) == 10
    assert set_profile(rig, 0, profile(11, "ChargePointMaxProfile")) == "Rejected"
    assert set_profile(rig, 1, profile(12, stack=7)) == "Accepted"  # replaces: still 10


def test_rate_unit_outside_the_allowed_list_is_rejected(rig):
    rig.cp.config.override("ChargingScheduleAllowedChargingRateUnit", "Current")
    assert set_profile(rig, 1, profile(1, unit="W", periods=((0, 6900),))) == "Rejected"
    assert set_profile(rig, 1, profile(1, unit="A")) == "Accepted"


def test_switching_phases_within_a_schedule_is_rejected(rig):
    # ConnectorSwitch3to1PhaseSupported is false
    mixed = profile(1, unit="W", periods=((0, 11000, 3), (600, 3600, 1)))
    assert set_profile(rig, 1, mixed) == "Rejected"
    single = profile(1, unit="W", periods=((0, 3600, 1), (600, 2300, 1)))
    assert set_profile(rig, 1, single) == "Accepted"


def test_schedules_breaking_the_rules_are_rejected(rig):
    assert set_profile(rig, 1, profile(1, periods=((60, 6),))) == "Rejected"
    assert set_profile(rig, 1, profile(1, periods=((0, 6), (0, 8)))) == "Rejected"
    assert set_profile(rig, 1, profile(1, periods=((0, -6),))) == "Rejected"
    assert set_profile(rig, 1, profile(1, kind="Recurring", recurrencyKind="Daily")) == \
        "Rejected"  # a recurrence needs its startSchedule
    assert set_profile(rig, 1, profile(1, kind="Recurring", startSchedule=NOON)) == "Rejected"
    assert set_profile(rig, 1, profile(1, validFrom=NOON, validTo=NOON)) == "Rejected"
    assert rig.cp.smartcharging.profiles == ()


def test_malformed_request_is_a_call_error(rig):
    # the PDU rules install() adds to the engine's
    def error(payload):
        uid = "bad-%d" % len(rig.inbound)
        rig.inbound[uid] = "SetChargingProfile"
        rig.cp.engine.feed(json.dumps([2, uid, "SetChargingProfile", payload]))
        answer = json.loads(rig.transport.sent.pop())
        assert answer[:2] == [4, uid]
        return answer[2]

    assert error({"connectorId": 1}) == "OccurenceConstraintViolation"
    bad = profile(1)
    bad["chargingProfileKind"] = "Sometimes"
    assert error({"connectorId": 1, "csChargingProfiles": bad}) == "PropertyConstraintViolation"
    assert error({"connectorId": 1, "csChargingProfiles": profile(1), "x": 1}) == \
        "FormationViolation"


# -- ClearChargingProfile -----------------------------------------------------------------

def install_three(rig):
    set_profile(rig, 0, profile(1, "ChargePointMaxProfile"))
    set_profile(rig, 0, profile(2, stack=1))
    set_profile(rig, 1, profile(3, stack=2))


def test_clear_by_id(rig):
    install_three(rig)
    assert call(rig, "ClearChargingProfile", {"id": 2}) == {"status": "Accepted"}
    assert call(rig, "ClearChargingProfile", {"id": 2}) == {"status": "Unknown"}
    assert [p[0] for p in rig.cp.smartcharging.profiles] == [1, 3]


def test_clear_by_connector_purpose_and_stack_level(rig):
    install_three(rig)
    assert call(rig, "ClearChargingProfile", {"connectorId": 1, "stackLevel": 1}) == \
        {"status": "Unknown"}
    assert call(rig, "ClearChargingProfile",
                {"connectorId": 0, "chargingProfilePurpose": "TxDefaultProfile"}) == \
        {"status": "Accepted"}
    assert call(rig, "ClearChargingProfile", {"stackLevel": 2}) == {"status": "Accepted"}
    assert [p[0] for p in rig.cp.smartcharging.profiles] == [1]


def test_clear_without_criteria_clears_all(rig):
    install_three(rig)
    assert call(rig, "ClearChargingProfile", {}) == {"status": "Accepted"}
    assert call(rig, "ClearChargingProfile", {}) == {"status": "Unknown"}
    assert json.loads(rig.store.files["chargingprofiles"]) == []


# -- GetCompositeSchedule -----------------------------------------------------------------

def test_composite_schedule_of_an_unknown_connector_is_rejected(rig):
    assert composite(rig, 2, 600) == {"status": "Rejected"}


def test_composite_without_profiles_is_the_connector_maximum(rig):
    stamp = iso(now(rig))
    assert composite(rig, 1, 600) == {
        "status": "Accepted", "connectorId": 1, "scheduleStart": stamp,
        "chargingSchedule": {"duration": 600, "startSchedule": stamp, "chargingRateUnit": "A",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}


SPEC_EXAMPLE = profile(100, kind="Recurring", recurrencyKind="Daily", unit="W", duration=86400,
                       startSchedule="2013-01-01T00:00:00Z",
                       periods=((0, 11000, 3), (28800, 6000, 3), (72000, 11000, 3)))


def test_spec_example_daily_profile_six_kw_by_day(rig):
    # OCPP 1.6 §3.13.7: 11 kW, but 6 kW between 08:00 and 20:00, every day; now is 12:00:01
    assert set_profile(rig, 0, SPEC_EXAMPLE) == "Accepted"
    answer = composite(rig, 1, 86400, "W")
    assert answer["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 6000.0, "numberPhases": 3},
        {"startPeriod": 28799, "limit": 11000.0, "numberPhases": 3},  # 20:00
        {"startPeriod": 71999, "limit": 6000.0, "numberPhases": 3}]  # 08:00 the next day
    # in amps per phase: W / (230 V x 3), down to the tenth
    assert periods(composite(rig, 1, 86400, "A")) == [(0, 8.6), (28799, 15.9), (71999, 8.6)]
    charging(rig)
    assert rig.hw().pilot.amps == 8.695
    run(rig, 28799 * 1000)
    assert rig.hw().pilot.amps == 15.942


def test_stacked_profiles_fall_back_when_the_higher_one_ends(rig):
    # the shape of OCTT TC_072: two TxDefaultProfiles, the higher one shorter
    t = iso(now(rig))
    window = dict(validFrom=t, validTo=iso(now(rig) + 401), startSchedule=t)
    assert set_profile(rig, 1, profile(1, stack=0, duration=400,
                                       periods=((0, 6), (100, 8), (200, 10)), **window)) == \
        "Accepted"
    assert set_profile(rig, 1, profile(2, stack=1, duration=150, periods=((0, 7), (100, 9)),
                                       **window)) == "Accepted"
    assert periods(composite(rig, 1, 400)) == [(0, 7.0), (100, 9.0), (150, 8.0), (200, 10.0)]
    assert periods(composite(rig, 1, 500)) == \
        [(0, 7.0), (100, 9.0), (150, 8.0), (200, 10.0), (400, 16.0)]


def test_composite_combines_the_purposes(rig):
    # the shape of OCTT TC_066: ChargePointMaxProfile, TxDefaultProfile and TxProfile
    t = iso(now(rig))
    assert set_profile(rig, 0, profile(1, "ChargePointMaxProfile", startSchedule=t,
                                       duration=86400, periods=((0, 10),))) == "Accepted"
    assert set_profile(rig, 1, profile(2, startSchedule=t, periods=((0, 6), (100, 12)))) == \
        "Accepted"
    assert periods(composite(rig, 1, 400)) == [(0, 6.0), (100, 10.0)]
    txid = charging(rig)
    assert set_profile(rig, 1, profile(3, "TxProfile", transactionId=txid, startSchedule=t,
                                       duration=300, periods=((0, 8), (200, 11)))) == "Accepted"
    assert periods(composite(rig, 1, 400)) == [(0, 8.0), (200, 10.0)]
    assert rig.hw().pilot.amps == 6.0  # not applied yet
    run(rig)
    assert rig.hw().pilot.amps == 8.0


def test_replacement_valid_from_later_leaves_a_gap_until_then(rig):
    # §3.13.2: the replaced profile is gone; nothing limits until validFrom
    assert set_profile(rig, 1, profile(1, periods=((0, 10),))) == "Accepted"
    later = iso(now(rig) + 100)
    assert set_profile(rig, 1, profile(2, validFrom=later, periods=((0, 6),))) == "Accepted"
    assert periods(composite(rig, 1, 600)) == [(0, 16.0), (100, 6.0)]


def test_relative_default_counts_from_the_transaction_start(rig):
    assert set_profile(rig, 0, profile(1, kind="Relative", periods=((0, 8), (3600, 16)))) == \
        "Accepted"
    assert periods(composite(rig, 1, 7200)) == [(0, 8.0), (3600, 16.0)]  # if it started now
    charging(rig)
    run(rig, 600 * 1000)
    assert periods(composite(rig, 1, 7200)) == [(0, 8.0), (3000, 16.0)]


def test_composite_in_watts_of_a_current_profile(rig):
    set_profile(rig, 1, profile(1, periods=((0, 10),)))
    assert periods(composite(rig, 1, 60, "W")) == [(0, 6900.0)]  # 10 A x 230 V x 3


def test_composite_of_the_charge_point_is_its_max_profile_within_the_connectors():
    rig = start(connectors=2)
    set_profile(rig, 0, profile(1, "ChargePointMaxProfile", startSchedule=iso(now(rig)),
                                periods=((0, 20), (60, 40))))
    set_profile(rig, 1, profile(2, periods=((0, 6),)))
    assert periods(composite(rig, 0, 120)) == [(0, 20.0), (60, 32.0)]  # 2 x 16 A
    assert periods(composite(rig, 1, 120)) == [(0, 6.0)]
    assert periods(composite(rig, 2, 120)) == [(0, 16.0)]


def test_composite_beyond_max_periods_is_shortened(rig):
    steps = tuple((60 * i, 6 + i % 2) for i in range(24))
    set_profile(rig, 1, profile(1, startSchedule=iso(now(rig)), duration=1440, periods=steps))
    answer = composite(rig, 1, 3600)
    assert len(answer["chargingSchedule"]["chargingSchedulePeriod"]) == 24
    assert answer["chargingSchedule"]["duration"] == 1440  # where the 25th would begin


def test_composite_is_rejected_while_the_clock_is_unknown():
    rig = Rig()
    rig.cs.answers["BootNotification"] = None  # connected, never told the time
    rig.step()
    assert composite(rig, 1, 60) == {"status": "Rejected"}


# -- the limit on the pilot ---------------------------------------------------------------

def test_limit_follows_the_schedule_and_below_6_amps_suspends(rig):
    set_profile(rig, 1, profile(1, startSchedule=iso(now(rig)),
                                periods=((0, 10), (60, 4), (120, 13.5))))
    charging(rig)
    assert rig.hw().pilot.amps == 10.0 and rig.conn().status == "Charging"
    run(rig, 60000)
    assert rig.hw().pilot.amps is None and rig.conn().status == "SuspendedEVSE"
    run(rig, 3000)
    assert not rig.hw().relay.closed
    run(rig, 57000)
    assert rig.hw().pilot.amps == 13.5 and rig.conn().status == "Charging"


def test_limit_is_in_place_when_the_transaction_starts(rig):
    set_profile(rig, 0, profile(1, periods=((0, 7),)))
    run(rig)
    assert rig.conn().limit == 7.0
    rig.ev("C")
    rig.tap(TAG)  # the transaction starts in this step: the first offer is already limited
    assert rig.hw().pilot.amps == 7.0 and rig.hw().relay.closed


def test_watts_are_amps_per_phase_at_230_volts(rig):
    set_profile(rig, 1, profile(1, unit="W", periods=((0, 2300, 1),)))
    run(rig)
    assert rig.conn().limit == 10.0
    assert rig.cp.smartcharging.limit_at(rig.conn(), now(rig)) == 10.0
    set_profile(rig, 1, profile(1, unit="W", periods=((0, 6900),)))  # three phases
    assert rig.cp.smartcharging.limit_at(rig.conn(), now(rig)) == 10.0
    call(rig, "ClearChargingProfile", {})
    assert rig.cp.smartcharging.limit_at(rig.conn(), now(rig)) is None
    run(rig)
    assert rig.conn().limit is None


def test_charge_point_max_profile_caps_the_transaction_profile(rig):
    set_profile(rig, 0, profile(1, "ChargePointMaxProfile", periods=((0, 9),)))
    txid = charging(rig)
    set_profile(rig, 1, profile(2, "TxProfile", transactionId=txid, periods=((0, 12),)))
    run(rig)
    assert rig.hw().pilot.amps == 9.0


def test_below_min_charging_rate_nothing_is_offered(rig):
    set_profile(rig, 0, profile(1, "ChargePointMaxProfile", periods=((0, 8),)))
    set_profile(rig, 1, profile(2, minChargingRate=10.0, periods=((0, 16),)))
    charging(rig)
    assert rig.hw().pilot.amps is None and rig.conn().status == "SuspendedEVSE"
    assert periods(composite(rig, 1, 60)) == [(0, 0.0)]


def test_max_profile_is_shared_by_the_connectors_charging():
    # §3.13.3: the ChargePointMaxProfile limits all connectors combined
    rig = start(connectors=2)
    set_profile(rig, 0, profile(1, "ChargePointMaxProfile", periods=((0, 24),)))
    charging(rig, 1)
    assert rig.hw(1).pilot.amps == 16.0
    charging(rig, 2, OTHER)
    assert rig.hw(1).pilot.amps == 12.0 and rig.hw(2).pilot.amps == 12.0
    assert periods(composite(rig, 1, 60)) == [(0, 12.0)]
    rig.tap(TAG)  # the first one stops: the whole limit for the other
    run(rig)
    assert rig.hw(2).pilot.amps == 16.0


def test_remote_start_profile_becomes_the_tx_profile_and_ends_with_the_transaction(rig):
    # §5.16.2, OCTT TC_059
    tx_profile = profile(5, "TxProfile", kind="Relative", periods=((0, 6), (300, 11)))
    set_profile(rig, 0, profile(1, periods=((0, 16),)))
    assert call(rig, "RemoteStartTransaction", {"idTag": TAG, "chargingProfile": tx_profile}) \
        == {"status": "Accepted"}
    run(rig)
    assert rig.conn().limit == 6.0  # waiting for the cable, already in place
    rig.ev("C")
    assert rig.hw().pilot.amps == 6.0 and rig.hw().relay.closed
    run(rig)
    assert periods(composite(rig, 1, 600)) == [(0, 6.0), (300, 11.0)]
    txid = rig.conn().tx["id"]
    # the same stack level for this transaction replaces it
    set_profile(rig, 1, profile(6, "TxProfile", transactionId=txid, periods=((0, 7),)))
    assert [p[0] for p in rig.cp.smartcharging.profiles] == [1, 6]
    run(rig)
    assert rig.hw().pilot.amps == 7.0
    call(rig, "RemoteStopTransaction", {"transactionId": txid})
    run(rig)
    assert [p[0] for p in rig.cp.smartcharging.profiles] == [1]
    assert rig.conn().limit == 16.0


def test_remote_start_profile_goes_when_the_cable_never_comes(rig):
    tx_profile = profile(5, "TxProfile", kind="Relative", periods=((0, 6),))
    call(rig, "RemoteStartTransaction", {"idTag": TAG, "chargingProfile": tx_profile})
    run(rig)
    assert rig.conn().limit == 6.0
    run(rig, 60000)  # ConnectionTimeOut: the authorisation lapses
    run(rig)
    assert rig.conn().auth is None
    assert rig.cp.smartcharging.profiles == () and rig.conn().limit is None


def test_remote_start_with_a_profile_beyond_the_limits_is_rejected(rig):
    tx_profile = profile(5, "TxProfile", kind="Relative", stack=9, periods=((0, 6),))
    assert not rig.cp.smartcharging.accepts(tx_profile)
    assert rig.cp.smartcharging.accepts(dict(tx_profile, stackLevel=8))
    answer = call(rig, "RemoteStartTransaction", {"idTag": TAG, "chargingProfile": tx_profile})
    assert answer == {"status": "Rejected"}
    rig.ev("C")
    run(rig)
    assert rig.conn().tx is None and rig.cp.smartcharging.profiles == ()


def test_tx_profile_is_deleted_when_the_transaction_ends(rig):
    set_profile(rig, 1, profile(1, periods=((0, 8),)))
    txid = charging(rig)
    set_profile(rig, 1, profile(2, "TxProfile", transactionId=txid, periods=((0, 12),)))
    run(rig)
    assert rig.hw().pilot.amps == 12.0
    rig.tap(TAG)
    run(rig)
    assert [p[0] for p in rig.cp.smartcharging.profiles] == [1]
    assert periods(composite(rig, 1, 60)) == [(0, 8.0)]
    charging(rig)
    assert rig.hw().pilot.amps == 8.0


# -- persistence and offline --------------------------------------------------------------

def test_profiles_survive_a_power_cut_in_one_record_but_tx_profiles_do_not(rig):
    set_profile(rig, 0, profile(1, "ChargePointMaxProfile", periods=((0, 10),)))
    set_profile(rig, 0, SPEC_EXAMPLE)
    txid = charging(rig)
    set_profile(rig, 1, profile(3, "TxProfile", transactionId=txid, periods=((0, 6),)))
    assert [p[0] for p in json.loads(rig.store.files["chargingprofiles"])] == [1, 100, 3]
    rig.power_cut()
    rig.step()
    sc = rig.cp.smartcharging
    assert [p[0] for p in sc.profiles] == [1, 100]
    assert [p[0] for p in json.loads(rig.store.files["chargingprofiles"])] == [1, 100]
    assert periods(composite(rig, 1, 60, "W")) == [(0, 6000.0)]


def test_a_corrupted_record_is_left_out(rig):
    rig.store.write("chargingprofiles", [[1, 0], "x", {"a": 1}])
    rig.boot()
    sc = rig.cp.smartcharging
    assert sc.profiles == ()
    assert json.loads(rig.store.files["chargingprofiles"]) == []


def offline_after_a_power_cut(rig, estimate):
    # §3.13.6: offline, the profiles received before are used
    set_profile(rig, 0, profile(1, kind="Relative", periods=((0, 8), (120, 12))))
    set_profile(rig, 0, profile(2, "ChargePointMaxProfile",
                                startSchedule="2026-01-01T00:00:00Z", periods=((0, 6),)))
    charging(rig)
    assert rig.hw().pilot.amps == 6.0
    rig.tap(TAG)
    rig.ev("A")
    rig.transport.connected = False
    if not estimate:
        rig.files.pop("wall")  # no wall time ever kept on this charger's flash
    rig.power_cut()
    rig.step()
    assert rig.cp.clock.wall() is None
    charging(rig)  # the card is in the authorisation cache
    assert rig.conn().tx is not None


def test_offline_after_a_power_cut_profiles_hold_on_the_estimated_wall_time(rig):
    offline_after_a_power_cut(rig, True)
    assert rig.hw().pilot.amps == 6.0  # the ChargePointMaxProfile still caps the Relative
    run(rig, 120000)
    assert rig.hw().pilot.amps == 6.0


def test_offline_without_any_wall_time_only_relative_profiles_apply(rig):
    # without even an estimate of the date, only the profiles not placed in calendar time
    offline_after_a_power_cut(rig, False)
    assert rig.cp.clock.estimate() is None
    assert rig.hw().pilot.amps == 8.0
    run(rig, 119000)
    assert rig.hw().pilot.amps == 8.0
    run(rig, 1000)
    assert rig.hw().pilot.amps == 12.0
    assert rig.cp.smartcharging.limit_at(rig.conn(), None) == 12.0
