"""GetLog and LogStatusNotification (chargepoint.model.getlog, on the diagnostics module's
uploads) over the real log: the answer, each status in order with its requestId, retries, the
time window, a SecurityLog of the security events only, ExtendedTriggerMessage. Every CALL
the Central System sends is checked against the official schema here, every frame the charge
point sends by the rig."""
import jsonschema
import pytest

from conftest import T0, attach, schema
from chargepoint.model import security
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.http import HttpError

DIAG_NAME = "diagnostics-20261121T120001Z.txt"  # the Rig's clock is set to T0 + 1 s at boot
SECURITY_NAME = "security-20261121T120001Z.txt"


@pytest.fixture
def logs(rig, tmp_path):
    log, up = attach(rig, tmp_path / "data")
    return rig, log, up


def get_log(rig, location="https://csms.example/logs/", log_type="DiagnosticsLog",
            request_id=7, **more):
    """GetLog.req, checked against the official schema: the GetLog.conf."""
    window = {"remoteLocation": location}
    for key in ("oldestTimestamp", "latestTimestamp"):
        if key in more:
            window[key] = more.pop(key)
    p = dict(logType=log_type, requestId=request_id, log=window, **more)
    jsonschema.validate(p, schema("GetLog"))
    msg = rig.send("GetLog", p)
    assert msg[0] == 3, msg
    return msg[2]


def reports(rig):
    return [(p["status"], p.get("requestId")) for p in rig.payloads("LogStatusNotification")]


def ext_trigger(rig):
    p = {"requestedMessage": "LogStatusNotification"}
    jsonschema.validate(p, schema("ExtendedTriggerMessage"))
    assert rig.send("ExtendedTriggerMessage", p)[2] == {"status": "Accepted"}
    rig.step()
    return rig.payloads("LogStatusNotification")[-1]


def test_diagnostics_log_is_accepted_with_its_filename_then_uploading_uploaded(logs):
    rig, log, up = logs
    log.write("test", "a line of the event log")
    assert get_log(rig) == {"status": "Accepted", "filename": DIAG_NAME}
    assert reports(rig) == [("Uploading", 7), ("Uploaded", 7)]
    [(url, body)] = up.calls
    assert url == "https://csms.example/logs/" + DIAG_NAME
    assert b" test a line of the event log\n" in body
    assert b" security StartupOfTheDevice: boot 2" in body  # every category
    assert b"diag GetLog DiagnosticsLog 7: %s to https://csms.example/logs/" % \
        DIAG_NAME.encode() in body


def test_security_log_holds_only_the_security_events(logs):
    rig, log, up = logs
    rig.cp.security.record("FirmwareUpdated", "1.2.3")
    log.write("test", "security in the text of another category")
    rig.send("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})
    answer = get_log(rig, "http://csms.example/upload?sig=SECRET", "SecurityLog", 8)
    assert answer == {"status": "Accepted", "filename": SECURITY_NAME}
    assert reports(rig) == [("Uploading", 8), ("Uploaded", 8)]
    [(url, body)] = up.calls
    assert url == "http://csms.example/upload?sig=SECRET"  # a location naming a file
    assert [line.split(" ", 1)[1] for line in body.decode().splitlines()] == [
        "security StartupOfTheDevice: boot 2, firmware 0.1.0",
        "security SettingSystemTime: BootNotification: clock set to 2026-11-21T12:00:01Z",
        "security FirmwareUpdated: 1.2.3"]
    log.flush()
    assert b"SECRET" not in b"".join(open(p, "rb").read() for p in log.paths())


def test_oldest_and_latest_timestamp_keep_only_the_lines_of_that_window(logs):
    rig, log, up = logs
    for minute in range(1, 6):
        rig.ticks.advance(60000)
        rig.cp.security.record("FirmwareUpdated", "minute %d" % minute)
        rig.step()
    get_log(rig, "http://h/", "SecurityLog", oldestTimestamp=iso(T0 + 121),
            latestTimestamp="2026-11-21T13:04:01+01:00")
    assert [line for line in up.calls[0][1].decode().splitlines()
            if not line.startswith("@")] == [  # (the boot's, before its wall time: kept)
        "2026-11-21T12:02:01Z security FirmwareUpdated: minute 2",
        "2026-11-21T12:03:01Z security FirmwareUpdated: minute 3",
        "2026-11-21T12:04:01Z security FirmwareUpdated: minute 4"]


def test_retries_wait_their_interval_and_a_late_success_is_uploaded(logs):
    rig, _, up = logs
    up.fails = 2
    get_log(rig, "http://h/", retries=2, retryInterval=30)
    assert len(up.calls) == 1 and reports(rig) == [("Uploading", 7)]
    rig.step(29999)
    assert len(up.calls) == 1
    rig.step(1)
    assert len(up.calls) == 2 and reports(rig) == [("Uploading", 7)]
    rig.step(30000)
    assert len(up.calls) == 3 and reports(rig) == [("Uploading", 7), ("Uploaded", 7)]
    rig.step(60000)
    assert len(up.calls) == 3


def test_without_retries_one_more_attempt_a_minute_later_then_upload_failure(logs):
    rig, _, up = logs
    up.fails = 99
    get_log(rig, "http://h/")
    rig.step(59000)
    assert len(up.calls) == 1
    rig.step(1000)
    assert len(up.calls) == 2 and reports(rig) == [("Uploading", 7), ("UploadFailure", 7)]


@pytest.mark.parametrize("error, status", [
    (HttpError("PUT: HTTP 403"), "PermissionDenied"),
    (HttpError("PUT: HTTP 401"), "PermissionDenied"),
    (HttpError("not an HTTP answer: b'SSH-2.0'"), "BadMessage"),
    (HttpError("PUT: HTTP 500"), "UploadFailure"),
])
def test_the_last_failure_names_the_final_status(logs, error, status):
    rig, log, up = logs
    up.fails = 99
    up.error = error
    get_log(rig, "http://h/", retries=0)
    assert len(up.calls) == 1 and reports(rig) == [("Uploading", 7), (status, 7)]


@pytest.mark.parametrize("location, status", [
    ("ftp://user:pw@h/logs/", "NotSupportedOperation"),
    ("csms.example/logs/", "BadMessage"),
    ("http:///logs/", "BadMessage"),
])
def test_a_location_that_cannot_be_used_is_reported_at_once(logs, location, status):
    rig, _, up = logs
    assert get_log(rig, location) == {"status": "Accepted", "filename": DIAG_NAME}
    rig.step(120000)
    assert reports(rig) == [(status, 7)] and up.calls == []
    assert ext_trigger(rig) == {"status": "Idle"}


def test_without_a_log_it_is_rejected_and_nothing_is_uploaded(rig):
    assert get_log(rig) == {"status": "Rejected"}
    rig.step(60000)
    assert reports(rig) == []


def test_a_new_request_cancels_the_one_in_progress(rig, tmp_path):
    threads = []  # the "network thread": attempts wait here until the test runs them
    log, up = attach(rig, tmp_path, threads.append)
    assert get_log(rig, "http://first/", request_id=1)["status"] == "Accepted"
    assert len(threads) == 1 and reports(rig) == [("Uploading", 1)]
    assert get_log(rig, "http://second/", request_id=2)["status"] == "AcceptedCanceled"
    rig.step(60000)
    assert len(threads) == 1  # one attempt at a time: the second waits for the first
    threads[0]()
    rig.step()
    assert len(threads) == 2 and reports(rig) == [("Uploading", 1), ("Uploading", 2)]
    threads[1]()
    rig.step()
    assert [u for u, _ in up.calls] == ["http://first/" + DIAG_NAME,
                                       "http://second/" + DIAG_NAME]
    assert reports(rig) == [("Uploading", 1), ("Uploading", 2), ("Uploaded", 2)]
    assert get_log(rig, "http://third/", request_id=3)["status"] == "Accepted"


def test_get_log_and_get_diagnostics_do_not_cancel_each_other(rig, tmp_path):
    threads = []
    log, up = attach(rig, tmp_path, threads.append)
    get_log(rig, "http://log/")
    rig.send("GetDiagnostics", {"location": "http://diag/"})
    while threads:
        threads.pop(0)()
        rig.step()
    assert sorted(u for u, _ in up.calls) == ["http://diag/" + DIAG_NAME,
                                             "http://log/" + DIAG_NAME]
    assert reports(rig) == [("Uploading", 7), ("Uploaded", 7)]
    assert [p["status"] for p in rig.payloads("DiagnosticsStatusNotification")] == [
        "Uploading", "Uploaded"]


def test_extended_trigger_reports_idle_then_uploading_with_the_request_id_then_idle(logs):
    rig, _, up = logs
    assert ext_trigger(rig) == {"status": "Idle"}
    up.fails = 1
    get_log(rig, "http://h/", request_id=42, retries=1, retryInterval=10)
    assert ext_trigger(rig) == {"status": "Uploading", "requestId": 42}  # between attempts
    rig.step(10000)
    assert reports(rig) == [("Idle", None), ("Uploading", 42), ("Uploading", 42),
                            ("Uploaded", 42)]
    assert ext_trigger(rig) == {"status": "Idle"}


@pytest.mark.parametrize("payload, code", [
    ({"logType": "DiagnosticsLog", "requestId": 1}, "OccurenceConstraintViolation"),
    ({"logType": "DiagnosticsLog", "requestId": 1, "log": {}}, "OccurenceConstraintViolation"),
    ({"logType": "EventLog", "requestId": 1, "log": {"remoteLocation": "http://h/"}},
     "PropertyConstraintViolation"),
    ({"logType": "DiagnosticsLog", "requestId": 1,
      "log": {"remoteLocation": "http://h/", "oldestTimestamp": "yesterday"}},
     "PropertyConstraintViolation"),
    ({"logType": "DiagnosticsLog", "requestId": 1,
      "log": {"remoteLocation": "http://h/" + "x" * 510}}, "TypeConstraintViolation"),
    ({"logType": "DiagnosticsLog", "requestId": 1,
      "log": {"remoteLocation": "http://h/", "user": "x"}}, "FormationViolation"),
])
def test_a_malformed_request_is_refused_as_the_schema_would(logs, payload, code):
    rig, _, up = logs
    if "oldestTimestamp" not in payload.get("log", {}):  # no date-time format checker here
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(payload, schema("GetLog"))
    msg = rig.send("GetLog", payload)
    assert msg[0] == 4 and msg[2] == code, msg
    assert up.calls == [] and reports(rig) == []
