"""The Reservation profile: ReserveNow, CancelReservation, expiry, Reserved, reservationId."""
import jsonschema
import pytest

from conftest import T0, Rig, schema
from chargepoint.ocpp.timestamps import iso

TAG = "04A1B2C3D4"
OTHER = "CAFE0001"
STRANGER = "0BADCAFE"  # accepted by the Central System, no reservation of its own


@pytest.fixture
def two():
    r = Rig(connectors=2)
    r.cs.authorized.add(STRANGER)
    r.step()
    return r


def reserve(rig, connector=1, rid=1, tag=TAG, expires=600, parent=None):
    """ReserveNow as the Central System sends it (checked against the official schema), for a
    reservation ending `expires` seconds after T0; the status answered."""
    p = {"connectorId": connector, "expiryDate": iso(T0 + expires), "idTag": tag,
         "reservationId": rid}
    if parent is not None:
        p["parentIdTag"] = parent
    jsonschema.validate(p, schema("ReserveNow"))
    msg = rig.send("ReserveNow", p)
    assert msg[0] == 3, msg
    return msg[2]["status"]


def cancel(rig, rid):
    p = {"reservationId": rid}
    jsonschema.validate(p, schema("CancelReservation"))
    msg = rig.send("CancelReservation", p)
    assert msg[0] == 3, msg
    return msg[2]["status"]


def remote_start(rig, tag, connector=None):
    p = {"idTag": tag}
    if connector is not None:
        p["connectorId"] = connector
    jsonschema.validate(p, schema("RemoteStartTransaction"))
    return rig.send("RemoteStartTransaction", p)[2]["status"]


def start(rig, tag, connector=1, reservation=None):
    """The StartTransaction payload a session of `tag` begun at wall time T0 + 1 s sends."""
    p = {"connectorId": connector, "idTag": tag, "meterStart": 0, "timestamp": iso(T0 + 1)}
    if reservation is not None:
        p["reservationId"] = reservation
    return p


def record(rid=1, connector=1, tag=TAG, parent=None, expires=600):
    return [rid, connector, tag, parent, T0 + expires]


# -- ReserveNow accepted and honoured --------------------------------------------------------


def test_reserve_now_accepted_shows_reserved_and_is_persisted(rig):
    assert reserve(rig) == "Accepted"
    assert rig.conn().status == "Reserved"
    assert rig.statuses() == ["Available", "Reserved"]
    assert rig.store.read("reservations") == [record()]


def test_reserved_card_starts_with_the_reservation_id_and_ends_it(rig):
    reserve(rig)
    rig.tap(TAG)
    assert rig.payloads("Authorize") == [{"idTag": TAG}]
    assert rig.conn().status == "Preparing"
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, TAG, reservation=1)]
    assert rig.hw().relay.closed
    assert rig.statuses() == ["Available", "Reserved", "Preparing", "Charging"]
    assert rig.store.read("reservations") == []
    assert rig.store.read("tx1")["resv"] == 1


def test_reserved_idtag_starts_by_remote_start_with_the_reservation_id(rig):
    reserve(rig)
    assert remote_start(rig, TAG, 1) == "Accepted"
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, TAG, reservation=1)]
    assert rig.store.read("reservations") == []


def test_remote_start_without_connector_takes_the_one_reserved_for_it(two):
    reserve(two, connector=2)
    assert remote_start(two, TAG) == "Accepted"
    two.ev("C", 2)
    assert two.payloads("StartTransaction") == [start(two, TAG, 2, reservation=1)]
    assert two.statuses(1) == ["Available"]


def test_reserved_card_takes_its_connector_before_a_plugged_one(two):
    reserve(two, connector=2)
    two.ev("B", 1)
    two.tap(TAG)
    assert two.conn(2).auth[0] == TAG and two.conn(1).auth is None
    assert two.statuses(1) == ["Available", "Preparing"]
    assert two.statuses(2) == ["Available", "Reserved", "Preparing"]


def test_plugging_in_on_a_reserved_connector_starts_nothing(rig):
    reserve(rig)
    rig.ev("C")
    rig.run(5)
    assert rig.payloads("StartTransaction") == [] and not rig.hw().relay.closed
    assert rig.hw().pilot.amps is None
    assert rig.statuses() == ["Available", "Reserved"]
    rig.tap(TAG)  # the reserved card then starts at once
    assert rig.payloads("StartTransaction")[0]["reservationId"] == 1
    assert rig.hw().relay.closed


def test_reserved_idtag_is_matched_case_insensitively(rig):
    reserve(rig, tag=TAG.lower())  # IdToken is a CiString
    rig.tap(TAG)
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, TAG, reservation=1)]


def test_reservation_outlives_a_change_to_unavailable(rig):
    reserve(rig)
    rig.send("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    rig.send("ChangeAvailability", {"connectorId": 1, "type": "Operative"})
    assert rig.statuses() == ["Available", "Reserved", "Unavailable", "Reserved"]


# -- other idTags ----------------------------------------------------------------------------


def test_card_of_another_idtag_is_refused_on_a_reserved_connector(rig):
    reserve(rig)
    rig.tap(OTHER)
    rig.ev("C")
    assert rig.payloads("Authorize") == []  # no connector for it: not even asked
    assert rig.payloads("StartTransaction") == [] and not rig.hw().relay.closed
    assert rig.conn().status == "Reserved"
    assert rig.statuses() == ["Available", "Reserved"]


def test_remote_start_for_another_idtag_is_rejected(rig):
    reserve(rig)
    assert remote_start(rig, OTHER, 1) == "Rejected"
    assert remote_start(rig, OTHER) == "Rejected"
    rig.ev("C")
    assert rig.payloads("StartTransaction") == []
    assert rig.store.read("reservations") == [record()]


def test_other_idtag_takes_a_connector_that_is_not_reserved(two):
    reserve(two, connector=1)
    two.tap(OTHER)
    two.ev("C", 2)
    assert two.payloads("StartTransaction") == [start(two, OTHER, 2)]
    assert two.conn(1).status == "Reserved"


def test_card_of_the_reservation_group_is_accepted(rig):
    rig.cs.parents = {OTHER: "FLEET1"}
    reserve(rig, parent="FLEET1")
    rig.tap(OTHER)  # its parent comes with the Authorize answer
    assert rig.payloads("Authorize") == [{"idTag": OTHER}]
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, OTHER, reservation=1)]
    assert rig.store.read("reservations") == []


def test_remote_start_for_the_group_uses_the_parent_in_the_cache(rig):
    rig.cp.cache.put(OTHER, {"status": "Accepted", "parentIdTag": "FLEET1"})
    reserve(rig, parent="FLEET1")
    assert remote_start(rig, STRANGER, 1) == "Rejected"  # parent not known: not of the group
    assert remote_start(rig, OTHER, 1) == "Accepted"
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, OTHER, reservation=1)]


def test_card_of_unknown_group_prefers_a_connector_that_is_not_reserved(two):
    two.cs.parents = {OTHER: "FLEET1"}
    reserve(two, connector=1, parent="FLEET1")
    two.tap(OTHER)  # perhaps of the group, but connector 2 is surely free
    assert two.conn(2).auth[0] == OTHER and two.conn(1).status == "Reserved"


def test_card_of_another_group_is_refused_after_its_authorize(rig):
    rig.cs.parents = {OTHER: "FLEET2"}
    reserve(rig, parent="FLEET1")
    rig.tap(OTHER)
    assert rig.payloads("Authorize") == [{"idTag": OTHER}]
    assert rig.conn().auth is None
    rig.ev("C")
    assert rig.payloads("StartTransaction") == []
    assert rig.statuses() == ["Available", "Reserved"]


# -- ReserveNow refused ----------------------------------------------------------------------


def test_reserve_now_on_a_preparing_connector_is_occupied(rig):
    rig.ev("B")
    assert reserve(rig) == "Occupied"
    assert rig.store.read("reservations") is None
    assert rig.statuses() == ["Available", "Preparing"]


def test_reserve_now_on_a_charging_connector_is_occupied(rig):
    rig.tap(OTHER)
    rig.ev("C")
    assert reserve(rig) == "Occupied"


def test_reserve_now_on_a_connector_reserved_by_another_reservation_is_occupied(rig):
    reserve(rig, rid=1)
    assert reserve(rig, rid=2, tag=OTHER) == "Occupied"
    assert rig.store.read("reservations") == [record()]


def test_reserve_now_on_a_faulted_connector_is_faulted(rig):
    rig.hw().rcd.trip = True
    rig.step()
    assert reserve(rig) == "Faulted"


def test_reserve_now_on_an_unavailable_connector_is_unavailable(rig):
    rig.send("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
    assert reserve(rig) == "Unavailable"


def test_reserve_now_on_an_unknown_connector_is_rejected(rig):
    assert reserve(rig, connector=2) == "Rejected"


def test_reserve_now_already_expired_is_rejected(rig):
    assert reserve(rig, expires=1) == "Rejected"  # the wall clock is at T0 + 1 s
    assert rig.statuses() == ["Available"]


# -- replace, cancel, expiry -------------------------------------------------------------------


def test_reserve_now_with_the_same_id_replaces_the_reservation(two):
    reserve(two, connector=1, rid=7)
    assert reserve(two, connector=1, rid=7, expires=900) == "Accepted"  # not Occupied by itself
    assert two.store.read("reservations") == [record(7, expires=900)]
    assert reserve(two, connector=2, rid=7, tag=OTHER) == "Accepted"
    assert two.store.read("reservations") == [record(7, 2, OTHER)]
    assert two.statuses(1) == ["Available", "Reserved", "Available"]
    assert two.statuses(2) == ["Available", "Reserved"]


def test_refused_replacement_keeps_the_old_reservation(two):
    reserve(two, connector=1, rid=7)
    two.ev("B", 2)
    assert reserve(two, connector=2, rid=7) == "Occupied"
    assert two.store.read("reservations") == [record(7)]
    assert two.conn(1).status == "Reserved"


def test_cancel_reservation_frees_the_connector(rig):
    reserve(rig, rid=3)
    assert cancel(rig, 3) == "Accepted"
    assert rig.statuses() == ["Available", "Reserved", "Available"]
    assert rig.store.read("reservations") == []
    rig.tap(OTHER)
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, OTHER)]


def test_cancel_reservation_of_an_unknown_id_is_rejected(rig):
    reserve(rig, rid=3)
    assert cancel(rig, 4) == "Rejected"
    assert rig.conn().status == "Reserved"


def test_reservation_expires_at_its_expiry_date(rig):
    reserve(rig, expires=61)  # the wall clock is at T0 + 1 s
    rig.run(59)
    assert rig.conn().status == "Reserved"
    rig.step(1000)  # T0 + 61 s
    assert rig.conn().status == "Available"
    assert rig.statuses() == ["Available", "Reserved", "Available"]
    assert rig.store.read("reservations") == []
    rig.tap(OTHER)
    rig.ev("C")
    assert rig.payloads("StartTransaction")[0]["idTag"] == OTHER


# -- power cut -------------------------------------------------------------------------------


def test_reservation_survives_a_power_cut(rig):
    reserve(rig)
    rig.power_cut()
    rig.step()
    assert rig.statuses() == ["Available", "Reserved", "Reserved"]
    rig.tap(OTHER)
    assert rig.payloads("Authorize") == []
    rig.tap(TAG)
    rig.ev("C")
    assert rig.payloads("StartTransaction") == [start(rig, TAG, reservation=1)]


def test_reservation_expired_during_a_power_cut_is_dropped(rig):
    reserve(rig, expires=61)
    rig.power_cut()
    rig.ticks.advance(120000)
    rig.step()
    assert rig.statuses() == ["Available", "Reserved", "Available"]
    assert rig.store.read("reservations") == []


def test_start_transaction_sent_after_a_power_cut_keeps_the_reservation_id(rig):
    reserve(rig)
    rig.tap(TAG)
    rig.auto = False  # the StartTransaction goes unanswered, then the power goes
    rig.ev("C")
    rig.power_cut()
    rig.auto = True
    rig.cs.calls.clear()
    rig.step()
    assert rig.payloads("StartTransaction") == [start(rig, TAG, reservation=1)]
    assert rig.payloads("StopTransaction")[0]["reason"] == "PowerLoss"
    assert rig.store.read("reservations") == []


# -- connector 0 -----------------------------------------------------------------------------


def test_reserve_connector_zero_supported_is_declared_read_only(rig):
    got = rig.send("GetConfiguration", {"key": ["ReserveConnectorZeroSupported"]})[2]
    assert got == {"configurationKey": [{"key": "ReserveConnectorZeroSupported",
                                         "readonly": True, "value": "true"}]}


def test_connector_zero_keeps_one_connector_for_the_reserved_idtag(two):
    assert reserve(two, connector=0) == "Accepted"
    assert two.statuses(1) == ["Available"] and two.statuses(2) == ["Available"]
    two.tap(OTHER)  # one of two free: granted, the other one is then held
    assert two.conn(1).auth[0] == OTHER
    assert two.statuses(2) == ["Available", "Reserved"]
    two.tap(STRANGER)
    assert remote_start(two, STRANGER, 2) == "Rejected"
    assert two.payloads("Authorize") == [{"idTag": OTHER}]
    two.tap(TAG)
    two.ev("C", 2)
    assert two.payloads("StartTransaction") == [start(two, TAG, 2, reservation=1)]
    assert two.store.read("reservations") == []


def test_connector_zero_reservation_taken_up_by_a_group_card_on_any_connector(two):
    two.cs.parents = {OTHER: "FLEET1"}
    reserve(two, connector=0, parent="FLEET1")
    two.tap(OTHER)
    two.ev("C", 1)
    assert two.payloads("StartTransaction") == [start(two, OTHER, 1, reservation=1)]
    assert two.statuses(2) == ["Available"]


def test_connector_zero_needs_a_free_connector_per_reservation(rig):
    assert reserve(rig, connector=0, rid=1) == "Accepted"
    assert rig.statuses() == ["Available", "Reserved"]  # the only free one is held
    assert reserve(rig, connector=0, rid=2, tag=OTHER) == "Occupied"
    assert reserve(rig, connector=1, rid=3, tag=OTHER) == "Occupied"
    rig.tap(OTHER)
    assert rig.payloads("Authorize") == []


def test_connector_zero_rejected_when_not_supported(rig):
    rig.cp.config.override("ReserveConnectorZeroSupported", False)
    assert reserve(rig, connector=0) == "Rejected"


def test_connector_zero_unavailable_when_the_charge_point_is(rig):
    rig.send("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert reserve(rig, connector=0) == "Unavailable"


def test_connector_zero_faulted_when_every_connector_is(two):
    two.hw(1).rcd.trip = True
    two.hw(2).rcd.trip = True
    two.step()
    assert reserve(two, connector=0) == "Faulted"


def test_connector_zero_occupied_when_no_connector_is_free(two):
    two.tap(OTHER)
    two.ev("C", 1)
    two.tap(STRANGER)
    two.ev("C", 2)
    assert reserve(two, connector=0) == "Occupied"


def test_connector_zero_holds_a_connector_with_an_ev_plugged_but_not_authorised(two):
    two.tap(OTHER)
    two.ev("C", 1)
    two.ev("B", 2)  # plugged, nobody authorised: still free for the reservation
    assert reserve(two, connector=0) == "Accepted"
    assert two.statuses(2) == ["Available", "Preparing", "Reserved"]
    assert reserve(two, connector=0, rid=2, tag=STRANGER) == "Occupied"
    two.tap(TAG)
    assert two.payloads("StartTransaction")[-1] == start(two, TAG, 2, reservation=1)
