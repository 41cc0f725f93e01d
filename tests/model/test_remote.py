"""Central System initiated operations of the Core profile and TriggerMessage."""
from conftest import Rig

TAG = "04A1B2C3D4"


def charging(rig):
    rig.tap(TAG)
    rig.ev("C")
    return rig.conn().tx["id"]


def test_change_availability_idle_connector(rig):
    assert rig.send("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})[2] == \
        {"status": "Accepted"}
    assert rig.conn().status == "Unavailable" and rig.statuses()[-1] == "Unavailable"
    rig.tap(TAG)
    rig.ev("C")
    assert rig.conn().tx is None and not rig.hw().relay.closed
    rig.power_cut()
    rig.step()
    assert rig.conn().status == "Unavailable"  # persisted
    assert rig.send("ChangeAvailability", {"connectorId": 1, "type": "Operative"})[2] == \
        {"status": "Accepted"}
    rig.step()
    assert rig.conn().status == "Preparing"


def test_change_availability_scheduled_during_transaction(rig):
    charging(rig)
    assert rig.send("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})[2] == \
        {"status": "Scheduled"}
    assert rig.hw().relay.closed
    rig.tap(TAG)
    rig.step()
    assert rig.conn().status == "Unavailable"
    zero = [p["status"] for p in rig.payloads("StatusNotification") if p["connectorId"] == 0]
    assert zero == ["Available", "Unavailable"]
    assert rig.statuses()[-1] == "Unavailable"


def test_change_availability_unknown_connector(rig):
    assert rig.send("ChangeAvailability", {"connectorId": 3, "type": "Inoperative"})[2] == \
        {"status": "Rejected"}


def test_whole_charge_point_unavailable_reports_connector_zero(rig):
    rig.send("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    rig.step()
    zero = [p["status"] for p in rig.payloads("StatusNotification") if p["connectorId"] == 0]
    assert zero == ["Available", "Unavailable"]


def zero(rig):
    return [p["status"] for p in rig.payloads("StatusNotification") if p["connectorId"] == 0]


def test_connector_availability_is_its_own_and_zero_stays_available():
    # OCTT TC_013/TC_014: one connector Inoperative does not make the charge point so
    r = Rig(connectors=2)
    r.step()
    assert r.send("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})[2] == \
        {"status": "Accepted"}
    assert r.send("ChangeAvailability", {"connectorId": 2, "type": "Inoperative"})[2] == \
        {"status": "Accepted"}
    r.send("Reset", {"type": "Soft"})
    r.run(4)
    assert r.reboots == [False]
    r.boot()
    r.step()
    assert r.statuses(1)[-1] == "Unavailable" and r.statuses(2)[-1] == "Unavailable"
    assert zero(r) == ["Available", "Available"]  # before and after the reset


def test_charge_point_inoperative_schedules_the_busy_connector_and_follows_it():
    r = Rig(connectors=2)
    r.step()
    charging(r)
    assert r.send("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})[2] == \
        {"status": "Scheduled"}
    r.step()
    assert r.statuses(2)[-1] == "Unavailable"  # the idle one at once
    assert r.statuses(1)[-1] == "Charging" and zero(r) == ["Available"]
    r.tap(TAG)  # the transaction ends: connector 1, then the charge point, unavailable
    r.step()
    assert r.statuses(1)[-1] == "Unavailable" and zero(r) == ["Available", "Unavailable"]
    r.power_cut()
    r.step()
    assert zero(r)[-1] == "Unavailable" and r.statuses(1)[-1] == "Unavailable"  # persisted
    assert r.send("ChangeAvailability", {"connectorId": 0, "type": "Operative"})[2] == \
        {"status": "Accepted"}
    r.step()
    assert zero(r)[-1] == "Available"
    assert r.statuses(1)[-1] == "Preparing" and r.statuses(2)[-1] == "Available"


def test_a_scheduled_change_survives_a_power_cut_during_the_transaction():
    r = Rig(connectors=2)
    r.step()
    charging(r)
    assert r.send("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})[2] == \
        {"status": "Scheduled"}
    r.step()
    r.power_cut()  # the transaction ends with the power (PowerLoss): the change applies now
    r.step()
    assert r.payloads("StopTransaction")[-1]["reason"] == "PowerLoss"
    assert r.statuses(1)[-1] == "Unavailable" and zero(r)[-1] == "Unavailable"
    r.power_cut()  # and it stays, no longer scheduled
    r.step()
    assert r.statuses(1)[-1] == "Unavailable" and "s" not in r.store.read("availability")


def test_soft_reset_stops_transaction_and_reboots(rig):
    charging(rig)
    assert rig.send("Reset", {"type": "Soft"})[2] == {"status": "Accepted"}
    assert not rig.hw().relay.closed
    assert rig.payloads("StopTransaction")[0]["reason"] == "SoftReset"
    assert rig.reboots == []
    rig.run(3)
    assert rig.reboots == [False]


def test_hard_reset_reason(rig):
    charging(rig)
    rig.send("Reset", {"type": "Hard"})
    rig.run(3)
    assert rig.payloads("StopTransaction")[0]["reason"] == "HardReset"
    assert rig.reboots == [True]


def test_soft_reset_waits_for_stop_to_be_delivered(rig):
    charging(rig)
    rig.cs.answers["StopTransaction"] = None
    rig.send("Reset", {"type": "Soft"})
    rig.run(5)
    assert rig.reboots == []
    rig.run(6)
    assert rig.reboots == [False]  # gives up waiting; the stop is persisted for after boot


def test_unlock_connector_stops_transaction_then_unlocks():
    r = Rig(lock=True)
    r.step()
    charging(r)
    assert r.hw().lock.locked and r.hw().relay.closed  # a socket outlet locks its cable
    assert r.send("UnlockConnector", {"connectorId": 1})[2] == {"status": "Unlocked"}
    assert r.payloads("StopTransaction")[0]["reason"] == "UnlockCommand"
    assert not r.hw().lock.locked and not r.hw().relay.closed
    r.step()
    assert r.statuses()[-1] == "Finishing"


def test_unlock_without_a_lock_is_not_supported_and_the_session_goes_on(rig):
    charging(rig)
    assert rig.send("UnlockConnector", {"connectorId": 1})[2] == {"status": "NotSupported"}
    rig.step()
    assert rig.conn().tx is not None and rig.hw().relay.closed
    assert rig.payloads("StopTransaction") == []


def test_unlock_unknown_connector_is_not_supported():
    r = Rig(lock=True)
    r.step()
    for cid in (0, 2):
        assert r.send("UnlockConnector", {"connectorId": cid})[2] == {"status": "NotSupported"}


def test_unlock_failure_reported_and_the_transaction_stopped_all_the_same():
    r = Rig(lock=True)
    r.step()
    charging(r)
    r.hw().lock.works = False
    assert r.send("UnlockConnector", {"connectorId": 1})[2] == {"status": "UnlockFailed"}
    assert r.payloads("StopTransaction")[0]["reason"] == "UnlockCommand"
    assert not r.hw().relay.closed and r.hw().lock.locked


def test_lock_failure_at_start_faults_and_never_goes_live():
    r = Rig(lock=True)
    r.step()
    r.hw().lock.works = False
    r.tap(TAG)
    r.ev("C")
    r.run(2)
    assert r.conn().tx is None and not r.hw().relay.closed and r.hw().pilot.amps is None
    assert r.payloads("StartTransaction") == []
    faulted = r.payloads("StatusNotification")[-1]
    assert (faulted["status"], faulted["errorCode"]) == ("Faulted", "ConnectorLockFailure")
    r.hw().lock.works = True
    r.ev("A")  # the cable out clears it
    r.step()
    assert r.statuses()[-1] == "Available"
    charging(r)
    assert r.hw().relay.closed and r.hw().lock.locked


def test_cable_released_when_the_transaction_stops_and_at_boot():
    r = Rig(lock=True)
    r.step()
    charging(r)
    r.tap(TAG)
    assert not r.hw().lock.locked and r.statuses()[-1] == "Finishing"
    charging(r)
    r.power_cut()
    r.step()
    assert not r.hw().lock.locked  # the transaction ended with the power: cable released
    assert r.payloads("StopTransaction")[-1]["reason"] == "PowerLoss"


def test_unlock_on_ev_side_disconnect_follows_its_key():
    r = Rig(lock=True)
    r.step()
    charging(r)
    r.ev("A")
    assert not r.hw().lock.locked
    r.send("ChangeConfiguration", {"key": "UnlockConnectorOnEVSideDisconnect",
                                   "value": "false"})
    charging(r)
    r.ev("A")  # unplugged at the car: the cable stays locked at the charger
    assert r.hw().lock.locked and r.payloads("StopTransaction")[-1]["reason"] == "EVDisconnected"
    assert r.send("UnlockConnector", {"connectorId": 1})[2] == {"status": "Unlocked"}
    assert not r.hw().lock.locked


def test_clear_cache(rig):
    charging(rig)
    assert rig.cp.cache.status(TAG) == "Accepted"
    assert rig.send("ClearCache", {})[2] == {"status": "Accepted"}
    assert rig.cp.cache.status(TAG) is None
    rig.send("ChangeConfiguration", {"key": "AuthorizationCacheEnabled", "value": "false"})
    assert rig.send("ClearCache", {})[2] == {"status": "Rejected"}


def test_data_transfer_to_an_unknown_vendor(rig):
    # (a vendor's own DataTransfer is a feature: tests/model/test_features.py)
    assert rig.send("DataTransfer", {"vendorId": "com.example"})[2] == \
        {"status": "UnknownVendorId"}


def test_data_transfer_from_charge_point(rig):
    got = []
    rig.cp.call("DataTransfer", {"vendorId": "com.example", "messageId": "m", "data": "x"},
                got.append)
    rig.step()
    assert got == [{"status": "Accepted"}]


def test_trigger_messages(rig):
    for what in ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues",
                 "DiagnosticsStatusNotification"):
        n = len(rig.calls(what))
        assert rig.send("TriggerMessage", {"requestedMessage": what})[2] == {"status": "Accepted"}
        rig.step()
        assert len(rig.calls(what)) > n, what
    assert rig.cp.registration == "Accepted"


def test_trigger_of_a_message_no_feature_offers_is_not_implemented(rig):
    # this charge point has no updater: no FirmwareManagement (test_firmware.py has one)
    assert rig.cp.firmware is None
    assert rig.send("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})[2] == \
        {"status": "NotImplemented"}


def test_trigger_status_for_one_connector_and_bad_connector(rig):
    n = len(rig.payloads("StatusNotification"))
    rig.send("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1})
    rig.step()
    assert [p["connectorId"] for p in rig.payloads("StatusNotification")[n:]] == [1]
    assert rig.send("TriggerMessage", {"requestedMessage": "MeterValues",
                                       "connectorId": 9})[2] == {"status": "Rejected"}


def test_trigger_meter_values_in_transaction(rig):
    txid = charging(rig)
    rig.send("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    rig.step()
    mv = rig.payloads("MeterValues")[-1]
    assert mv["transactionId"] == txid
    assert mv["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


def test_stale_actuating_calls_are_answered_not_executed(rig):
    txid = charging(rig)
    assert rig.send("RemoteStopTransaction", {"transactionId": txid}, stale=True)[2] == \
        {"status": "Rejected"}
    assert rig.send("Reset", {"type": "Hard"}, stale=True)[2] == {"status": "Rejected"}
    assert rig.hw().relay.closed and rig.reboots == []
    assert rig.send("GetConfiguration", {"key": ["HeartbeatInterval"]}, stale=True)[0] == 3
    assert rig.cp.stale_rejected == 2
