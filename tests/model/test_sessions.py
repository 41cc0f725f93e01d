"""Charging sessions on the Core profile: RFID and remote start/stop, relay safety, statuses."""
from conftest import Rig

TAG = "04A1B2C3D4"
OTHER = "CAFE0001"


def charging(rig, tag=TAG):
    rig.tap(tag)
    rig.ev("B")
    rig.ev("C")
    assert rig.conn().status == "Charging"
    return rig.conn().tx["id"]


def test_rfid_session_end_to_end(rig):
    rig.tap(TAG)
    assert rig.payloads("Authorize") == [{"idTag": TAG}]
    assert rig.conn().status == "Preparing" and not rig.hw().relay.closed
    rig.ev("B")
    start = rig.payloads("StartTransaction")[0]
    assert start["idTag"] == TAG and start["connectorId"] == 1 and start["meterStart"] == 0
    assert rig.hw().pilot.amps == 16.0 and not rig.hw().relay.closed
    assert rig.conn().status == "SuspendedEV"
    rig.ev("C")
    assert rig.hw().relay.closed and rig.conn().status == "Charging"
    assert "begin" not in rig.conn().tx  # its Transaction.Begin sample waits on the flash
    rig.hw().meter.wh = 1234
    rig.tap(TAG)
    assert not rig.hw().relay.closed and rig.hw().pilot.amps is None
    stop = rig.payloads("StopTransaction")[0]
    assert stop["reason"] == "Local" and stop["meterStop"] == 1234 and stop["idTag"] == TAG
    assert stop["transactionId"] == 101
    assert [sv["sampledValue"][0]["context"] for sv in stop["transactionData"]] == \
        ["Transaction.Begin", "Transaction.End"]
    assert rig.conn().status == "Finishing"
    rig.ev("A")
    assert rig.statuses() == ["Available", "Preparing", "SuspendedEV", "Charging", "Finishing",
                              "Available"]


def test_plug_first_then_tap(rig):
    rig.ev("C")
    assert rig.conn().status == "Preparing" and not rig.hw().relay.closed
    rig.tap(TAG)
    assert rig.hw().relay.closed and rig.conn().status == "Charging"


def test_different_tag_is_refused(rig):
    charging(rig)
    rig.tap(OTHER)
    assert rig.hw().relay.closed and rig.conn().tx["tag"] == TAG
    assert rig.payloads("Authorize") == [{"idTag": TAG}]
    assert rig.payloads("StopTransaction") == []


def test_card_of_the_same_group_stops_the_transaction(rig):
    # OCTT TC_069: the parentIdTag of the new card equals that of the starting card
    rig.cs.parents = {TAG: "FLEET1", OTHER: "FLEET1"}
    charging(rig)
    assert rig.conn().tx["parent"] == "FLEET1"
    rig.tap(OTHER)
    assert not rig.hw().relay.closed and rig.conn().tx is None
    stop = rig.payloads("StopTransaction")[0]
    assert stop["idTag"] == OTHER and stop["reason"] == "Local"
    assert rig.statuses()[-1] == "Finishing"
    assert rig.payloads("Authorize")[-1] == {"idTag": OTHER}


def test_card_of_another_group_or_of_none_leaves_the_transaction_running(rig):
    rig.cs.parents = {TAG: "FLEET1", OTHER: "FLEET2"}
    charging(rig)
    rig.tap(OTHER)
    rig.cs.authorized.add("0BADCAFE")  # accepted, no parent at all
    rig.tap("0BADCAFE")
    rig.cs.authorized.discard(OTHER)
    rig.cs.parents[OTHER] = "FLEET1"  # the right group, but no longer accepted
    rig.tap(OTHER)
    rig.run(2)
    assert rig.hw().relay.closed and rig.conn().tx["tag"] == TAG
    assert rig.payloads("StopTransaction") == []
    assert len(rig.payloads("Authorize")) == 4


def test_group_stop_from_the_cache_while_offline(rig):
    rig.cs.parents = {TAG: "FLEET1", OTHER: "FLEET1"}
    rig.tap(OTHER)  # known to the cache, with its parent
    rig.tap(OTHER)  # and cancelled again
    charging(rig)
    rig.transport.connected = False
    rig.tap(OTHER)
    assert not rig.hw().relay.closed and rig.conn().tx is None
    assert len(rig.payloads("Authorize")) == 2  # no round trip: the cache knew the group
    rig.transport.connected = True
    rig.step()
    stop = rig.payloads("StopTransaction")[0]
    assert stop["idTag"] == OTHER and stop["reason"] == "Local"


def test_parent_learned_from_start_transaction_is_kept_with_the_transaction(rig):
    rig.cs.parents = {TAG: "FLEET1", OTHER: "FLEET1"}
    rig.send("RemoteStartTransaction", {"idTag": TAG, "connectorId": 1})
    rig.ev("C")
    assert rig.conn().tx["parent"] == "FLEET1"
    assert rig.store.read("tx1")["parent"] == "FLEET1"  # on flash: survives a power cut
    rig.tap(OTHER)
    assert rig.payloads("StopTransaction")[0]["idTag"] == OTHER


def test_unknown_tag_not_authorised(rig):
    rig.tap("DEADBEEF")
    rig.ev("C")
    assert rig.conn().tx is None and not rig.hw().relay.closed
    assert rig.payloads("StartTransaction") == []


def test_unplug_stops_and_opens_relay_at_once(rig):
    charging(rig)
    rig.hw().pilot.ev = "A"
    rig.cp.loop()  # a single loop step, no network round trip needed
    assert not rig.hw().relay.closed
    rig.step()
    assert rig.payloads("StopTransaction")[0]["reason"] == "EVDisconnected"
    assert rig.conn().status == "Available"


def test_ev_pauses_suspended_ev_and_relay_opens(rig):
    charging(rig)
    rig.ev("B")
    assert not rig.hw().relay.closed and rig.conn().status == "SuspendedEV"
    rig.ev("C")
    assert rig.hw().relay.closed and rig.conn().status == "Charging"


def test_rcd_trip_opens_relay_and_ends_the_session(rig):
    charging(rig)
    rig.hw().rcd.trip = True
    rig.cp.loop()
    assert not rig.hw().relay.closed and rig.hw().pilot.amps is None
    rig.step()
    sn = rig.payloads("StatusNotification")[-1]
    assert sn["status"] == "Faulted" and sn["errorCode"] == "GroundFailure"
    assert rig.payloads("StopTransaction")[0]["reason"] == "Other"
    rig.hw().rcd.trip = False
    rig.step()
    assert not rig.hw().relay.closed and rig.conn().status == "Finishing"
    rig.tap(TAG)  # a new session needs a new authorisation
    assert rig.hw().relay.closed and rig.conn().status == "Charging"


def test_pilot_error_state_faults(rig):
    charging(rig)
    rig.ev("F")
    assert not rig.hw().relay.closed
    assert rig.payloads("StatusNotification")[-1]["errorCode"] == "EVCommunicationError"


def test_relay_never_closes_without_authorisation(rig):
    for state in ("B", "C", "D", "C"):
        rig.ev(state)
        assert not rig.hw().relay.closed
    assert rig.hw().relay.switches == 0


def test_invalid_start_stops_transaction_deauthorized(rig):
    rig.cs.answers["Authorize"] = {"idTagInfo": {"status": "Accepted"}}
    rig.cs.authorized = set()  # StartTransaction.conf says Invalid
    rig.tap(TAG)
    rig.ev("C")
    stop = rig.payloads("StopTransaction")[0]
    assert stop["reason"] == "DeAuthorized" and not rig.hw().relay.closed


def test_invalid_start_suspends_when_not_stopping():
    r = Rig()
    r.step()
    r.send("ChangeConfiguration", {"key": "StopTransactionOnInvalidId", "value": "false"})
    r.cs.answers["Authorize"] = {"idTagInfo": {"status": "Accepted"}}
    r.cs.authorized = set()
    r.tap(TAG)
    r.ev("C")
    assert r.conn().tx is not None and not r.hw().relay.closed
    assert r.conn().status == "SuspendedEVSE"


def test_authorisation_expires_after_connection_timeout(rig):
    rig.tap(TAG)
    rig.run(59)
    assert rig.conn().auth is not None
    rig.run(2)
    assert rig.conn().auth is None and rig.conn().status == "Available"
    rig.ev("C")
    assert rig.conn().tx is None


def test_remote_start_and_stop(rig):
    assert rig.send("RemoteStartTransaction", {"idTag": TAG, "connectorId": 1})[2] == \
        {"status": "Accepted"}
    assert rig.payloads("Authorize") == []  # AuthorizeRemoteTxRequests is false
    rig.ev("C")
    txid = rig.conn().tx["id"]
    assert rig.hw().relay.closed
    assert rig.send("RemoteStopTransaction", {"transactionId": txid + 7})[2] == \
        {"status": "Rejected"}
    assert rig.send("RemoteStopTransaction", {"transactionId": txid})[2] == {"status": "Accepted"}
    assert not rig.hw().relay.closed
    assert rig.payloads("StopTransaction")[0]["reason"] == "Remote"


def test_remote_start_authorises_first_when_configured(rig):
    rig.send("ChangeConfiguration", {"key": "AuthorizeRemoteTxRequests", "value": "true"})
    rig.send("RemoteStartTransaction", {"idTag": "DEADBEEF"})
    assert rig.payloads("Authorize") == [{"idTag": "DEADBEEF"}]
    rig.ev("C")
    assert rig.conn().tx is None


def test_remote_start_keeps_charging_profile(rig):
    profile = {"chargingProfileId": 7, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "A",
                                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]}}
    assert rig.send("RemoteStartTransaction", {"idTag": TAG, "chargingProfile": profile})[2] == \
        {"status": "Accepted"}
    rig.ev("C")
    assert rig.conn().tx["profile"] == profile
    assert rig.store.read("tx1")["profile"] == profile


def test_remote_start_rejections(rig):
    bad_profile = {"chargingProfileId": 7, "stackLevel": 0,
                   "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
                   "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": []}}
    assert rig.send("RemoteStartTransaction", {"idTag": TAG, "connectorId": 2})[2]["status"] \
        == "Rejected"
    assert rig.send("RemoteStartTransaction",
                    {"idTag": TAG, "chargingProfile": bad_profile})[2]["status"] == "Rejected"
    charging(rig)
    assert rig.send("RemoteStartTransaction", {"idTag": OTHER})[2]["status"] == "Rejected"


def test_offline_authorisation_from_cache(rig):
    charging(rig)
    rig.tap(TAG)
    rig.ev("A")
    rig.transport.connected = False
    rig.tap(TAG)  # known Accepted in the cache, LocalAuthorizeOffline true
    rig.ev("C")
    assert rig.hw().relay.closed
    rig.tap("DEADBEEF")  # another card while busy: refused
    rig.tap(TAG)
    assert not rig.hw().relay.closed


def test_offline_unknown_tag_refused_unless_allowed(rig):
    rig.transport.connected = False
    rig.tap("DEADBEEF")
    rig.ev("C")
    assert rig.conn().tx is None
    rig.cp.config.change("AllowOfflineTxForUnknownId", "true")
    rig.tap("DEADBEEF")
    assert rig.conn().tx is not None and rig.hw().relay.closed


def test_local_pre_authorize_skips_round_trip(rig):
    charging(rig)
    rig.tap(TAG)
    rig.ev("A")
    rig.send("ChangeConfiguration", {"key": "LocalPreAuthorize", "value": "true"})
    rig.cs.answers["Authorize"] = None  # would hang
    rig.tap(TAG)
    rig.ev("C")
    assert rig.hw().relay.closed
    assert len(rig.payloads("Authorize")) == 1


def test_authorize_timeout_falls_back_to_offline_rules(rig):
    rig.cs.answers["Authorize"] = None
    rig.cp.config.change("AllowOfflineTxForUnknownId", "true")
    rig.tap("DEADBEEF")
    assert rig.conn().auth is None
    rig.step(10000)
    assert rig.conn().auth is not None


def test_two_connectors_two_sessions():
    r = Rig(connectors=2)
    r.step()
    r.ev("B", 2)
    r.tap(TAG)  # goes to the plugged connector
    assert r.conn(2).tx is not None and r.conn(1).tx is None
    r.tap(OTHER)
    r.ev("C", 1)
    r.ev("C", 2)
    assert r.hw(1).relay.closed and r.hw(2).relay.closed
    assert {p["connectorId"] for p in r.payloads("StartTransaction")} == {1, 2}
    assert [p["connectorId"] for p in r.payloads("StatusNotification")][:3] == [0, 1, 2]


def test_minimum_status_duration_suppresses_flapping(rig):
    rig.send("ChangeConfiguration", {"key": "MinimumStatusDuration", "value": "5"})
    rig.ev("B")
    rig.step(1000)
    rig.ev("A")
    rig.run(10)
    assert rig.statuses() == ["Available"]
    rig.ev("B")
    rig.run(6)
    assert rig.statuses() == ["Available", "Preparing"]


def test_status_sent_once_while_its_answer_is_slow(rig):
    rig.cs.answers["StatusNotification"] = None
    rig.ev("B")
    call = rig.cp.engine.inflight
    assert call.action == "StatusNotification"
    rig.step(100)
    rig.transport.deliver('[3,"%s",{}]' % call.uid)
    rig.step(100)
    assert rig.statuses() == ["Available", "Preparing"]


def test_status_resent_after_timeout(rig):
    rig.cs.answers["StatusNotification"] = None
    rig.ev("B")
    rig.step(30000)
    rig.cs.answers.pop("StatusNotification")
    rig.step()
    assert rig.statuses() == ["Available", "Preparing", "Preparing"]


def test_a_limit_below_6_amps_withdraws_the_offer_and_the_relay_follows_within_3_s(rig):
    charging(rig)
    rig.conn().limit = 10.0
    rig.step()
    assert rig.hw().pilot.amps == 10.0 and rig.hw().relay.closed
    rig.conn().limit = 4.0  # below 6 A: no charging (SmartCharging will set this)
    rig.step()
    assert rig.hw().pilot.amps is None and rig.conn().status == "SuspendedEVSE"
    assert rig.hw().relay.closed  # the EV has 3 s to stop drawing: not opened under load
    rig.step(2900)
    assert rig.hw().relay.closed
    rig.step(100)
    assert not rig.hw().relay.closed and rig.conn().tx is not None
    rig.conn().limit = None  # the offer comes back and so does charging
    rig.step()
    assert rig.hw().pilot.amps == 16.0 and rig.hw().relay.closed
    assert rig.conn().status == "Charging"


def test_the_relay_opens_as_soon_as_the_ev_stops_drawing_after_the_offer_is_withdrawn(rig):
    charging(rig)
    rig.conn().limit = 0.0
    rig.step(500)
    assert rig.hw().relay.closed
    rig.ev("B")  # the EV answers the withdrawn PWM
    assert not rig.hw().relay.closed


def test_a_fault_or_unplug_during_the_wait_opens_at_once(rig):
    charging(rig)
    rig.conn().limit = 0.0
    rig.step(100)
    rig.hw().rcd.trip = True
    rig.step()
    assert not rig.hw().relay.closed
