"""OCPP-J framing, the one-call-in-flight rule, timeouts, routing and every CALLERROR path."""
import json

import pytest

from chargepoint.ocpp.framing import MAX_FRAME, peek
from conftest import Rig


def last_error(msg):
    assert msg[0] == 4, msg
    return msg[2]


def test_boot_is_first_and_alone_until_accepted():
    r = Rig()
    r.cs.answers["BootNotification"] = None  # no answer yet
    r.board.rfid.present("04A1B2C3D4")
    r.step()
    r.step(5000)
    assert [a for a, _ in r.calls()] == ["BootNotification"]
    assert r.cp.engine.inflight.action == "BootNotification"


def test_message_ids_never_repeat_across_reboots():
    r = Rig()
    r.step()
    first = {m[1] for m in r.frames if m[0] == 2}
    r.power_cut()
    r.step()
    second = {m[1] for m in r.frames if m[0] == 2} - first
    assert second and not (first & second)


def test_one_call_in_flight_and_queue_behind_it():
    r = Rig()
    r.cs.answers["BootNotification"] = None
    r.step()
    uid = r.cp.engine.inflight.uid
    r.step(1000)
    assert len(r.calls()) == 1
    r.transport.deliver(json.dumps([3, uid, {"status": "Accepted",
                                             "currentTime": "2026-11-21T12:00:00Z",
                                             "interval": 300}]))
    r.step()
    actions = [a for a, _ in r.calls() if a != "SecurityEventNotification"]
    assert actions[:3] == ["BootNotification", "StatusNotification", "StatusNotification"]


def test_timeout_counts_from_sending_not_queueing():
    r = Rig(online=False)
    r.cs.answers["BootNotification"] = None
    r.step(60000)  # queued for a minute while offline: nothing sent, nothing timed out
    assert r.calls() == []
    r.transport.connected = True
    r.step()
    assert r.cp.engine.inflight is not None
    r.step(29000)
    assert r.cp.engine.inflight is not None
    r.step(1000)
    assert r.cp.engine.inflight is None
    assert r.cp.engine.stats["timeouts"] == 1


def test_answer_with_foreign_id_is_ignored():
    r = Rig()
    r.cs.answers["BootNotification"] = None
    r.step()
    r.transport.deliver(json.dumps([3, "not-ours", {"status": "Accepted",
                                                    "currentTime": "2026-11-21T12:00:00Z",
                                                    "interval": 300}]))
    r.step()
    assert r.cp.registration is None
    assert r.cp.engine.inflight.action == "BootNotification"


def test_inbound_call_answered_while_own_call_in_flight():
    r = Rig()
    r.cs.answers["BootNotification"] = {"status": "Pending",
                                        "currentTime": "2026-11-21T12:00:00Z", "interval": 60}
    r.step()
    r.cs.answers["BootNotification"] = None
    r.step(60000)
    assert r.cp.engine.inflight.action == "BootNotification"
    msg = r.send("GetConfiguration", {"key": ["HeartbeatInterval"]})
    assert msg[0] == 3 and msg[2]["configurationKey"][0]["key"] == "HeartbeatInterval"


def test_rejected_boot_retries_at_interval_and_answers_nothing():
    r = Rig()
    r.cs.answers["BootNotification"] = {"status": "Rejected",
                                        "currentTime": "2026-11-21T12:00:00Z", "interval": 30}
    r.step()
    r.transport.deliver(json.dumps([2, "x1", "GetConfiguration", {}]))
    r.step()
    assert [m for m in r.frames if m[0] != 2] == []
    r.step(29000)
    assert len(r.calls("BootNotification")) == 1
    r.cs.answers.pop("BootNotification")
    r.step(1000)
    assert len(r.calls("BootNotification")) == 2
    assert r.cp.registration == "Accepted"


def test_pending_boot_retries_and_sends_nothing_else():
    r = Rig()
    r.cs.answers["BootNotification"] = {"status": "Pending",
                                        "currentTime": "2026-11-21T12:00:00Z", "interval": 10}
    r.step()
    r.tap("04A1B2C3D4")
    r.step(9000)
    assert [a for a, _ in r.calls()] == ["BootNotification"]
    r.step(1000)
    assert [a for a, _ in r.calls()] == ["BootNotification", "BootNotification"]


def test_unknown_action_is_not_implemented(rig):
    assert last_error(rig.send("FlyToTheMoon", {})) == "NotImplemented"


# (the local list lives in files: on a store without a folder it is not there either)
@pytest.mark.parametrize("action", ["UpdateFirmware", "SendLocalList", "GetLocalListVersion"])
def test_known_unsupported_action_is_not_supported(rig, action):
    assert last_error(rig.send(action, {})) == "NotSupported"


@pytest.mark.parametrize("action,payload,code", [
    ("Reset", [], "FormationViolation"),
    ("Reset", {"type": "Soft", "extra": 1}, "FormationViolation"),
    ("Reset", {}, "OccurenceConstraintViolation"),
    ("Reset", {"type": 1}, "TypeConstraintViolation"),
    ("Reset", {"type": "Gentle"}, "PropertyConstraintViolation"),
    ("RemoteStartTransaction", {"idTag": "X" * 21}, "TypeConstraintViolation"),
    ("RemoteStartTransaction", {"idTag": "A", "connectorId": "1"}, "TypeConstraintViolation"),
    ("RemoteStartTransaction", {"idTag": "A", "connectorId": True}, "TypeConstraintViolation"),
    ("RemoteStartTransaction", {"idTag": "A", "connectorId": 1.5}, "TypeConstraintViolation"),
    ("RemoteStartTransaction", {"idTag": "A", "connectorId": -1}, "PropertyConstraintViolation"),
    ("RemoteStartTransaction", {"idTag": "A", "chargingProfile": {"chargingProfileId": 1}},
     "OccurenceConstraintViolation"),
    ("ChangeConfiguration", {"key": "K" * 51, "value": "1"}, "TypeConstraintViolation"),
    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "1" * 501},
     "TypeConstraintViolation"),
    ("DataTransfer", {"vendorId": "V" * 256}, "TypeConstraintViolation"),
    ("GetConfiguration", {"key": "HeartbeatInterval"}, "TypeConstraintViolation"),
    ("GetConfiguration", {"key": [1]}, "TypeConstraintViolation"),
    ("ChangeAvailability", {"connectorId": 1, "type": "Closed"}, "PropertyConstraintViolation"),
    ("TriggerMessage", {"requestedMessage": "Coffee"}, "PropertyConstraintViolation"),
    ("UnlockConnector", {"connectorId": None}, "TypeConstraintViolation"),
    ("ReserveNow", {"connectorId": 1, "expiryDate": "2026-11-21T13:00:00Z", "idTag": "A"},
     "OccurenceConstraintViolation"),
    ("ReserveNow", {"connectorId": 1, "expiryDate": "soon", "idTag": "A", "reservationId": 1},
     "PropertyConstraintViolation"),
    ("ReserveNow", {"connectorId": 1, "expiryDate": "2026-11-21T13:00:00Z", "idTag": "A",
                    "parentIdTag": "P" * 21, "reservationId": 1}, "TypeConstraintViolation"),
    ("CancelReservation", {"reservationId": "1"}, "TypeConstraintViolation"),
    ("CancelReservation", {"reservationId": 1, "connectorId": 1}, "FormationViolation"),
    ("GetDiagnostics", {}, "OccurenceConstraintViolation"),
    ("GetDiagnostics", {"location": "http://h/", "retries": "3"}, "TypeConstraintViolation"),
    ("GetDiagnostics", {"location": "http://h/", "startTime": "yesterday"},
     "PropertyConstraintViolation"),
])
def test_payload_rule_violations(rig, action, payload, code):
    assert last_error(rig.send(action, payload)) == code


def test_bad_datetime_in_charging_profile(rig):
    profile = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
               "chargingProfileKind": "Absolute", "validFrom": "yesterday",
               "chargingSchedule": {"chargingRateUnit": "A",
                                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}
    msg = rig.send("RemoteStartTransaction", {"idTag": "A", "chargingProfile": profile})
    assert last_error(msg) == "PropertyConstraintViolation"


def test_call_with_three_elements_is_protocol_error(rig):
    rig.transport.deliver('[2,"p1","Reset"]')
    rig.step()
    assert rig.frames[-1][:3] == [4, "p1", "ProtocolError"]


def test_handler_exception_becomes_internal_error(rig):
    def broken(payload, stale):
        raise KeyError("boom")
    rig.cp.engine.route("ClearCache", broken)
    assert last_error(rig.send("ClearCache", {})) == "InternalError"
    assert rig.send("GetConfiguration", {})[0] == 3  # and the firmware carries on


@pytest.mark.parametrize("garbage", ["", "nonsense", "{}", "[]", "[2]", '[9,"a"]', "[2,5,6,7]",
                                     "\x00\xff", '"text"', "[3]", "null", "[2,1,2,{}]",
                                     "[" * 5000 + "]" * 5000])
def test_garbage_never_stops_the_firmware(rig, garbage):
    rig.transport.deliver(garbage)
    rig.step()
    assert rig.send("GetConfiguration", {"key": ["NumberOfConnectors"]})[0] == 3


def test_huge_frame_refused_without_parsing(rig):
    rig.transport.deliver('[2,"big1","DataTransfer",{"vendorId":"x","data":"%s"}]' % ("a" * 20000))
    rig.step()
    assert rig.frames[-1][:3] == [4, "big1", "FormationViolation"]


def test_call_over_the_limit_answered_with_the_limit_from_its_head_alone(rig):
    # what a transport hands over for a frame it did not hold: the head and the size
    head = '[2, "big2", "DataTransfer", {"vendorId": "x", "data": "aaaaaaaa'
    rig.transport.inbox.append((head, False, 200000))
    rig.step()
    assert rig.frames[-1] == [4, "big2", "FormationViolation",
                              "message of 200000 bytes: this charge point takes at most %d"
                              % MAX_FRAME, {"size": 200000, "limit": MAX_FRAME}]
    assert rig.cp.engine.stats["oversize"] == 1


@pytest.mark.parametrize("head", ['[3,"x",{"a":"', '[4,"x","GenericError","', '{"a":[2,"x"',
                                  '[2,"x"', '[2,"x",{"vendorId":"', '', '\x00'])
def test_oversized_frame_that_is_not_a_call_is_dropped_unanswered(rig, head):
    n = len(rig.frames)
    rig.transport.inbox.append((head, False, 50000))
    rig.step()
    assert rig.frames[n:] == [] and rig.cp.engine.stats["oversize"] == 1
    assert rig.send("GetConfiguration", {"key": ["NumberOfConnectors"]})[0] == 3


def test_frame_exactly_at_the_limit_is_taken(rig):
    frame = '[2,"edge","DataTransfer",{"vendorId":"x","data":"%s"}]'
    frame %= "a" * (MAX_FRAME - len(frame) + 2)
    assert len(frame) == MAX_FRAME
    rig.inbound["edge"] = "DataTransfer"
    rig.transport.deliver(frame)
    rig.step()
    assert rig.frames[-1] == [3, "edge", {"status": "UnknownVendorId"}]


@pytest.mark.parametrize("head,expected", [
    ('[2,"u1","Reset",{', (2, "u1", "Reset")),
    ('[2, "u1", "Reset", {', (2, "u1", "Reset")),
    ('[2,"u1","Res', (2, "u1", None)),  # cut inside the action
    ('[3,"u1",{}]', (3, "u1", None)),
    ('[4,"u1","GenericError","",{}]', (4, "u1", None)),
    ('[5,"u1",{}]', (None, None, None)),
    ('[2,"%s","Reset",{' % ("x" * 37), (None, None, None)),  # id longer than 36
    ('[2,"","Reset",{', (None, None, None)),
    ('garbage', (None, None, None)),
])
def test_peek_reads_type_id_and_action_from_a_frame_head(head, expected):
    assert peek(head) == expected


def test_duplicate_delivery_answered_once_executed_once(rig):
    rig.tap("04A1B2C3D4")
    rig.ev("C")
    txid = rig.conn().tx["id"]
    first = rig.send("RemoteStopTransaction", {"transactionId": txid}, uid="dup-1")
    again = rig.send("RemoteStopTransaction", {"transactionId": txid}, uid="dup-1")
    assert first == again and first[2] == {"status": "Accepted"}
    rig.step()
    assert len(rig.payloads("StopTransaction")) == 1


def test_redelivery_after_twenty_more_calls_is_still_answered_from_memory(rig):
    # the remembered answers live in one buffer taken at boot; a small answer stays in it
    # through about twenty more, then the oldest goes and the CALL is carried out again
    first = rig.send("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "300"},
                     uid="mem-0")
    for i in range(20):
        rig.send("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "10"},
                 uid="m%d" % i)
    assert rig.send("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "400"},
                    uid="mem-0") == first  # the value is not changed again
    assert rig.cp.config.get("HeartbeatInterval") == 300
    for i in range(40):
        rig.send("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "10"},
                 uid="n%d" % i)
    rig.send("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "400"}, uid="mem-0")
    assert rig.cp.config.get("HeartbeatInterval") == 400


def test_recent_answers_push_the_oldest_out_and_keep_the_latest_of_an_id():
    from chargepoint.ocpp.engine import Recent

    r = Recent(64)
    r.add("a", '[3, "a", {}]')
    r.add("bb", "x" * 20)
    assert (r.find("a"), r.find("bb"), r.find("c")) == ('[3, "a", {}]', "x" * 20, None)
    r.add("c", "y" * 30)  # 64 bytes hold no more than two of these
    assert (r.find("a"), r.find("bb"), r.find("c")) == (None, "x" * 20, "y" * 30)
    r.add("d", "z" * 70)  # larger than the buffer: not kept, nothing pushed out
    assert (r.find("d"), r.find("c")) == (None, "y" * 30)
    r.add("c", "w")
    assert r.find("c") == "w"
    r.add("\u00e9", "\u00fc")  # ids and answers are UTF-8 in the buffer
    assert r.find("\u00e9") == "\u00fc"


def test_a_frame_nested_too_deep_is_refused_unparsed(rig, monkeypatch):
    import chargepoint.ocpp.engine as engine_mod

    parsed = []
    real = engine_mod.json.loads
    monkeypatch.setattr(engine_mod.json, "loads", lambda t: parsed.append(t) or real(t))
    deep = '[2, "d1", "DataTransfer", {"vendorId": "x", "data": ' + "[" * 2000 + "]" * 2000 + "}]"
    rig.transport.deliver(deep)
    rig.step()
    msg = rig.frames[-1]
    assert msg[:3] == [4, "d1", "FormationViolation"] and "nested deeper than 16" in msg[3]
    assert deep not in parsed  # refused before the parser built 2000 levels
    flat = '[2, "d3", "DataTransfer", {"vendorId": "x", "data": [' + ",".join(["[]"] * 1300) + "]}]"
    rig.transport.deliver(flat)
    rig.step()
    assert rig.frames[-1][:3] == [4, "d3", "FormationViolation"] and flat not in parsed
    # a string full of brackets is not nesting; 16 levels are taken
    ok = '[2, "d2", "DataTransfer", {"vendorId": "x", "data": "' + "[" * 100 + '"}]'
    rig.transport.deliver(ok)
    rig.step()
    assert rig.frames[-1][:2] == [3, "d2"] or rig.frames[-1][2] != "FormationViolation"


def test_callerror_for_our_call_reaches_its_failure_path():
    r = Rig()
    r.cs.answers["BootNotification"] = None
    r.step()
    uid = r.cp.engine.inflight.uid
    r.transport.deliver(json.dumps([4, uid, "InternalError", "sorry", {}]))
    r.step()
    assert r.cp.engine.inflight is None and r.cp.registration is None


def test_malformed_confirmation_is_treated_as_error():
    r = Rig()
    r.cs.answers["BootNotification"] = {"status": "Accepted"}  # no currentTime, no interval
    r.step()
    assert r.cp.registration is None


def test_out_of_memory_while_answering_gives_internal_error_and_carries_on(rig, monkeypatch):
    import chargepoint.ocpp.engine as engine_mod

    real = engine_mod.json.dumps
    raised = []

    def dumps(obj):
        if obj[:2] == [3, "cs-1"] and not raised:  # no room for the first CALL's answer
            raised.append(obj)
            raise MemoryError()
        return real(obj)
    monkeypatch.setattr(engine_mod.json, "dumps", dumps)
    answer = rig.send("GetConfiguration", {"key": ["NumberOfConnectors"]})
    assert answer[:4] == [4, answer[1], "InternalError", "out of memory"]
    assert rig.send("GetConfiguration", {"key": ["NumberOfConnectors"]})[0] == 3
