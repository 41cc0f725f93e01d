"""GetDiagnostics and DiagnosticsStatusNotification (chargepoint.model.diagnostics) over the real
log: the answer, each status in order, retries, failures, TriggerMessage, the time window, the
OCPP traffic kept in the log. On CPython the network thread is a synchronous runner and the
uploader a fake; the last test runs the real upload on the MicroPython twin."""
import http.server
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import ROOT, T0, attach, validate_outgoing
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.http import HttpError

TAG = "04A1B2C3D4"
NAME = "diagnostics-20261121T120001Z.txt"  # the Rig's clock is set to T0 + 1 s at boot


@pytest.fixture
def diag(rig, tmp_path):
    log, up = attach(rig, tmp_path / "data")
    return rig, log, up


def statuses(rig):
    return [p["status"] for p in rig.payloads("DiagnosticsStatusNotification")]


def trigger(rig):
    rig.send("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"})
    rig.step()
    return statuses(rig)[-1]


def on_flash(log):
    """What the log files hold now (the lines still in the log's buffer not among them)."""
    return b"".join(open(p, "rb").read() for p in log.paths())


def log_text(log):
    """Every line logged: the buffer flushed first, as before a reset."""
    log.flush()
    return on_flash(log)


def test_answers_the_file_name_then_uploads_every_log_file_oldest_first(rig, tmp_path):
    log, up = attach(rig, tmp_path, max_bytes=1024)
    for i in range(14):  # (the boot's lines came first: the rate limit leaves room for 14)
        log.write("test", "line %02d " % i + "x" * 70)
    log.flush()
    assert len(log.paths()) == 2
    up.log = log
    answer = rig.send("GetDiagnostics", {"location": "https://csms.example/diag/"})
    assert answer[2] == {"fileName": NAME}
    assert statuses(rig) == ["Uploading", "Uploaded"]
    [(url, body)] = up.calls
    assert url == "https://csms.example/diag/" + NAME
    assert len(up.files) == 2 and body == b"".join(up.files)  # log.1.txt, then log.txt
    assert b"test line 13 " in body
    assert b"diag GetDiagnostics %s to https://csms.example/diag/" % NAME.encode() in body
    assert sorted(os.listdir(tmp_path)) == ["log.1.txt", "log.txt"]  # the copy is gone


def test_a_location_naming_a_file_is_used_as_it_is(diag):
    rig, _, up = diag
    rig.send("GetDiagnostics", {"location": "http://csms.example/upload?sig=SECRET"})
    assert up.calls[0][0] == "http://csms.example/upload?sig=SECRET"
    assert b"SECRET" not in log_text(diag[1])  # a pre-signed URL's credentials stay out


def test_retries_wait_their_interval_and_a_late_success_is_uploaded(diag):
    rig, _, up = diag
    up.fails = 2
    rig.send("GetDiagnostics", {"location": "http://h/", "retries": 2, "retryInterval": 30})
    assert len(up.calls) == 1 and statuses(rig) == ["Uploading"]
    rig.step(29999)
    assert len(up.calls) == 1
    rig.step(1)
    assert len(up.calls) == 2 and statuses(rig) == ["Uploading"]
    rig.step(30000)
    assert len(up.calls) == 3 and statuses(rig) == ["Uploading", "Uploaded"]
    rig.step(60000)
    assert len(up.calls) == 3


def test_the_upload_runner_is_in_memory_only_while_a_request_is_worked_on(diag):
    import sys

    rig, _, up = diag
    runner = ("chargepoint.model.uploads", "chargepoint.model.getlog")
    assert not [m for m in runner if m in sys.modules]
    up.fails = 1
    rig.send("GetDiagnostics", {"location": "http://h/", "retries": 1, "retryInterval": 10})
    rig.send("GetLog", {"logType": "SecurityLog", "requestId": 7,
                        "log": {"remoteLocation": "http://h/"}})
    assert all(m in sys.modules for m in runner)  # a retry is due in 10 s
    rig.step(10000)
    assert statuses(rig) == ["Uploading", "Uploaded"]
    assert [p["status"] for p in rig.payloads("LogStatusNotification")][-1] == "Uploaded"
    assert not [m for m in runner if m in sys.modules]
    assert rig.cp.diagnostics.uploads is None
    rig.send("GetDiagnostics", {"location": "http://h/"})  # and back for the next one
    assert statuses(rig)[-1] == "Uploaded" and len(up.calls) == 4


def test_upload_failed_once_every_attempt_failed(diag):
    rig, log, up = diag
    up.fails = 99
    up.error = HttpError("PUT: HTTP 403")
    rig.send("GetDiagnostics", {"location": "http://h/", "retries": 1, "retryInterval": 10})
    rig.step(10000)
    rig.step(60000)
    assert len(up.calls) == 2 and statuses(rig) == ["Uploading", "UploadFailed"]
    assert b"diag upload failed: HttpError: PUT: HTTP 403\n" in log_text(log)


def test_without_retries_one_more_attempt_a_minute_later(diag):
    rig, _, up = diag
    up.fails = 99
    rig.send("GetDiagnostics", {"location": "http://h/"})
    rig.step(59000)
    assert len(up.calls) == 1
    rig.step(1000)
    assert len(up.calls) == 2 and statuses(rig) == ["Uploading", "UploadFailed"]


def test_trigger_reports_idle_then_uploading_while_a_retry_waits_then_idle(diag):
    rig, _, up = diag
    assert trigger(rig) == "Idle"
    up.fails = 1
    rig.send("GetDiagnostics", {"location": "http://h/", "retries": 1, "retryInterval": 10})
    assert trigger(rig) == "Uploading"
    rig.step(10000)
    assert statuses(rig) == ["Idle", "Uploading", "Uploading", "Uploaded"]
    assert trigger(rig) == "Idle"


def test_ftp_is_answered_with_the_file_name_and_reported_failed(diag):
    rig, _, up = diag
    assert rig.send("GetDiagnostics", {"location": "ftp://user:pw@h/diag/"})[2] == \
        {"fileName": NAME}
    rig.step(120000)
    assert statuses(rig) == ["UploadFailed"] and up.calls == []
    assert trigger(rig) == "Idle"


def test_without_a_log_there_is_no_file_and_nothing_is_uploaded(rig):
    assert rig.send("GetDiagnostics", {"location": "http://h/"})[2] == {}
    rig.step(60000)
    assert statuses(rig) == []
    assert trigger(rig) == "Idle"


def test_start_and_stop_time_keep_only_the_lines_of_that_window(diag):
    rig, log, up = diag
    for minute in range(1, 6):
        rig.ticks.advance(60000)
        log.write("test", "minute %d" % minute)
    rig.send("GetDiagnostics", {"location": "http://h/", "startTime": iso(T0 + 121),
                                "stopTime": "2026-11-21T13:04:01+01:00"})
    lines = up.calls[0][1].decode().splitlines()
    assert [line for line in lines if " test " in line] == [
        "2026-11-21T12:02:01Z test minute 2", "2026-11-21T12:03:01Z test minute 3",
        "2026-11-21T12:04:01Z test minute 4"]
    # the rest: lines of the boot from before its wall time was known, kept in any window
    assert all(line.startswith("@") or " test " in line for line in lines), lines


def test_a_new_request_replaces_the_one_in_progress(rig, tmp_path):
    threads = []  # the "network thread": attempts wait here until the test runs them
    log, up = attach(rig, tmp_path, threads.append)
    rig.send("GetDiagnostics", {"location": "http://first/"})
    assert len(threads) == 1 and statuses(rig) == ["Uploading"]
    rig.send("GetDiagnostics", {"location": "http://second/"})
    rig.step(60000)
    assert len(threads) == 1  # one attempt at a time: the second waits for the first
    threads[0]()
    rig.step()
    assert len(threads) == 2 and statuses(rig) == ["Uploading", "Uploading"]
    threads[1]()
    rig.step()
    assert [u for u, _ in up.calls] == ["http://first/" + NAME, "http://second/" + NAME]
    assert statuses(rig) == ["Uploading", "Uploading", "Uploaded"]
    assert b"diag an earlier request's upload done" in log_text(log)


def test_no_thread_to_be_had_counts_as_a_failed_attempt(rig, tmp_path):
    def no_thread(fn):
        raise RuntimeError("can't start new thread")

    log, up = attach(rig, tmp_path, no_thread)
    rig.send("GetDiagnostics", {"location": "http://h/", "retries": 0})
    assert statuses(rig) == ["Uploading", "UploadFailed"] and up.calls == []
    assert b"no thread: RuntimeError: can't start new thread" in log_text(log)


def test_an_hour_of_charging_logs_the_session_not_its_meter_values(diag):
    rig, log, _ = diag
    rig.send("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "10"})
    rig.tap(TAG)
    rig.ev("C")
    for _ in range(360):
        rig.board.connectors[0].meter.wh += 20
        rig.step(10000)
    rig.tap(TAG)
    rig.ev("A")
    assert len(rig.payloads("MeterValues")) >= 350
    rig.step(10000)  # the loop's poll writes what the log buffered, without a flush
    assert log._fill == 0
    text = on_flash(log).decode()
    assert "MeterValues" not in text and "Heartbeat" not in text
    for action in ("ChangeConfiguration", "Authorize", "StartTransaction", "StopTransaction",
                   "StatusNotification"):
        assert '"%s"' % action in text, action
    assert '< [3, "' in text and '> [3, "cs-' in text  # the answers to those calls
    assert len(text.splitlines()) < 30 and log.written < 5000 and log.dropped == 0


def test_the_link_coming_up_is_logged(diag):
    rig, log, _ = diag
    rig.step()
    rig.transport.connected = False
    rig.step(1000)
    rig.transport.connected = True
    rig.step(1000)
    assert [line.split(b" ", 1)[1] for line in log_text(log).splitlines()
            if b" link " in line] == [b"link up", b"link up"]


def test_a_frame_listener_registered_after_the_journal_sees_every_frame_too(diag):
    rig, log, _ = diag
    seen = []
    rig.cp.engine.frame_listeners.append(lambda direction, text: seen.append(direction))
    rig.send("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})
    assert seen == ["in", "out"]
    assert log_text(log).count(b"ChangeConfiguration") == 1
    assert b'> [3, "cs-1", {"status": "Accepted"}]' in log_text(log)


# -- on the MicroPython twin: the real thread, the real HTTP client, a local server --------

STOCK = os.path.join(ROOT, "build", "twin-stock", "micropython")
TWIN_SCRIPT = r"""
import gc, json, sys, time
from chargepoint.model.chargepoint import ChargePoint
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform import http
from chargepoint.platform.clock import Clock
from chargepoint.platform.log import Log
from chargepoint.platform.store import FileStore
from fakes import FakeBoard, FakeTicks, LoopbackTransport, ScriptedCentralSystem

ticks = FakeTicks()
transport = LoopbackTransport()
cs = ScriptedCentralSystem(transport, lambda: iso(1795262400 + ticks.now // 1000))
clock = Clock(ticks_ms=ticks)
gc.collect()
before = gc.mem_alloc()
log = Log("data", clock, max_bytes=4096)
gc.collect()
log_bytes = gc.mem_alloc() - before
for i in range(150):
    ticks.advance(20000)  # the log's rate limit
    log.write("test", "line %03d" % i)
cp = ChargePoint(FakeBoard(1), transport, FileStore("data"), clock,
                 services={"log": log, "upload": http.upload})
frames = []
def step():
    for _ in range(4):
        cp.loop()
        cs.handle(frames.append)
step()
gc.collect()
idle = gc.mem_alloc()
transport.deliver(json.dumps([2, "gd1", "GetDiagnostics", {"location": sys.argv[1]}]))
# live heap while the thread works: the commonest reading (a reading can also catch garbage
# the thread made between this thread's collect and its count)
seen = {}
gaps = 0
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 20000:
    t = time.ticks_ms()
    step()
    gaps = max(gaps, time.ticks_diff(time.ticks_ms(), t))
    if cp.diagnostics.uploads is not None and cp.diagnostics.uploads._busy:
        gc.collect()
        used = (gc.mem_alloc() - idle) // 256 * 256
        seen[used] = seen.get(used, 0) + 1
    if [f for f in frames if '"Uploaded"' in f or '"UploadFailed"' in f]:
        break
    time.sleep_ms(2)
step()
upload = max((n, used) for used, n in seen.items())[1] if seen else None
print(json.dumps({"frames": frames, "log": log_bytes, "upload": upload, "gap_ms": gaps}))
"""


class SlowPut(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = []

    def log_message(self, *args):
        pass

    def do_PUT(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.5)  # the thread waits for this answer while the loop goes on
        SlowPut.received.append((self.path, body))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.skipif(not os.path.exists(STOCK), reason="no stock twin (python3 -m tools.twin "
                                                       "--stock)")
def test_upload_from_a_network_thread_on_the_twin(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowPut)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = subprocess.run(
            [STOCK, "-X", "heapsize=400000", "-c", TWIN_SCRIPT,
             "http://127.0.0.1:%d/diag/" % server.server_port],
            cwd=str(tmp_path), capture_output=True, text=True, timeout=60,
            env=dict(os.environ, MICROPYPATH=".frozen:%s/lib:%s/tools" % (ROOT, ROOT)))
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    inbound = {"gd1": "GetDiagnostics"}
    msgs = [validate_outgoing(f, inbound) for f in out["frames"]]
    answer = [m for m in msgs if m[0] == 3 and m[1] == "gd1"][0]
    name = answer[2]["fileName"]
    assert [m[3]["status"] for m in msgs if m[0] == 2
            and m[2] == "DiagnosticsStatusNotification"] == ["Uploading", "Uploaded"]
    [(path, body)] = SlowPut.received
    assert path == "/diag/" + name
    files = (tmp_path / "data" / "log.1.txt").read_bytes() + (tmp_path / "data" /
                                                             "log.txt").read_bytes()
    assert body.split(b"\n")[0].endswith(b" test line 000") and files.startswith(body)
    assert b'ocpp < [2, "gd1", "GetDiagnostics"' in body
    assert not (tmp_path / "data" / "diagnostics.tmp").exists()
    # the asyncio side never waited for the network: the loop ran through the 0.5 s answer
    assert out["gap_ms"] < 200
    assert out["upload"] < 8192
    print("twin heap: log %d B, upload in progress +%d B" % (out["log"], out["upload"]))
