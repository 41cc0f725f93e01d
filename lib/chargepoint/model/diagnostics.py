"""GetDiagnostics and DiagnosticsStatusNotification (the diagnostics half of OCPP 1.6 Firmware
Management): the firmware's event log uploaded by the upload runner
(chargepoint.model.uploads); GetLog (security extensions, chargepoint.model.getlog) goes the
same way; and the OCPP traffic worth keeping written to that log. Uploads are rare: the
runner's and GetLog's modules are imported for a request and dropped once the runner has
nothing left to do (about 1 KB of idle heap on the ESP32, measured on the twin).

A feature, `cp.diagnostics`, with the services "log" (chargepoint.platform.log.Log), "upload"
(url, path: a blocking HTTP PUT, chargepoint.platform.http.upload) and "run_in_thread" (fn;
default _thread.start_new_thread; tests inject a synchronous runner). Without a log and an
uploader (the tests' default charge point) GetDiagnostics answers without a fileName, which
OCPP reserves for "no diagnostic information available", nothing is uploaded and GetLog is
Rejected.

GetDiagnostics answers at once with a fileName, "diagnostics-<UTC time>.txt". The upload:
- what: every log file, oldest first, concatenated into one body (log.1.txt then log.txt,
  at most 2 x 16 KB); with startTime/stopTime, only the lines stamped inside that window (and
  the lines of boots whose wall time was never known).
- where: `location` as given, with the fileName appended when it ends in "/"; HTTP PUT.
  http:// and https:// only (https unverified: what goes up is only our log): any other
  scheme (ftp://) is answered with the fileName and reported UploadFailed at once.
- retries and reports as the runner's: Uploading, then Uploaded or UploadFailed.
  TriggerMessage gets Uploading while a request is being worked on (also between
  attempts), else Idle; ExtendedTriggerMessage(LogStatusNotification) the GetLog's.

Also logged: the transport's link coming up (it says only its going down, which the log gets
from the transport's `say`), and the OCPP traffic (a frame listener of the engine): every CALL
both ways but the periodic MeterValues and Heartbeat (GetDiagnostics, GetLog and
UpdateFirmware without their payload: URLs may carry credentials), the answers to those
CALLs, and every CALLERROR, each cut at the log's line length. A charging session is about 16
lines; hours of charging add none.
"""
from micropython import const

from chargepoint.model import Feature, unload
from chargepoint.ocpp.framing import peek

_ROUTINE = ("MeterValues", "Heartbeat")  # periodic: logging them would wear the flash
_PRIVATE = ("GetDiagnostics", "GetLog", "UpdateFirmware")  # their URLs may carry credentials
_LOGGED = const(250)  # characters of a frame worth a log line (the log cuts at 240 anyway)


class Diagnostics(Feature):
    name = "diagnostics"
    triggers = ("DiagnosticsStatusNotification", "LogStatusNotification")
    routes = ("GetDiagnostics", "GetLog")

    def __init__(self, cp, services):
        self.cp = cp
        log = self.log = services.get("log")
        self._upload = services.get("upload")
        self._run_in_thread = services.get("run_in_thread")
        self.uploads = None  # the upload runner while a request is worked on (runner())
        self._asked = [None, None]  # message id of the last logged CALL: ours, the CS's
        self._linked = False  # the transport's `connected` at the last tick
        if log is not None:
            cp.engine.frame_listeners.append(self._frame)

    def get_log(self, p, stale):
        # GetLog is rare: no heap for its module until the first one
        from chargepoint.model import getlog

        return getlog.request(self, p)

    def runner(self):
        """The upload runner (chargepoint.model.uploads), None without a log and an uploader.
        Requests are rare: its module is imported for one and dropped once it has nothing
        left to do (tick)."""
        if self.uploads is None and self.log is not None and self._upload is not None:
            from chargepoint.model.uploads import Uploads

            self.uploads = Uploads(self.cp, self.log, self._upload, self._run_in_thread)
        return self.uploads

    def trigger(self, message, cid, extended):
        # the runner's slots: 0 GetDiagnostics, 1 GetLog (uploads.DIAGNOSTICS, uploads.LOG)
        job = self.uploads.job(1 if message == "LogStatusNotification" else 0) \
            if self.uploads is not None else None
        # Uploading (with the GetLog's requestId) while a request is worked on, else Idle
        self.cp.call(message, {"status": "Idle"} if job is None else job.payload("Uploading"))

    def get_diagnostics(self, p, stale):
        uploads = self.runner()
        if uploads is None:
            return {}
        from chargepoint.model.uploads import DIAGNOSTICS, Job, public, target

        log = self.log
        location = p["location"]
        name = uploads.file_name("diagnostics")
        log.write("diag", "GetDiagnostics %s to %s" % (name, public(location)))
        job = Job(target(location, name), p, p.get("startTime"), p.get("stopTime"))
        scheme = location.partition("://")[0].lower()
        if scheme not in ("http", "https"):
            uploads.start(DIAGNOSTICS, None)  # a new request replaces the one in progress
            log.write("diag", "upload failed: only http(s) locations are supported")
            uploads.report(job, "UploadFailed")
            return {"fileName": name}
        uploads.start(DIAGNOSTICS, job)
        return {"fileName": name}

    def tick(self):
        log = self.log
        if log is None:
            return
        log.poll()  # buffered lines that have waited long go to the flash
        connected = self.cp.transport.connected
        if connected != self._linked:  # the transport says only its link going down
            self._linked = connected
            if connected:
                log.write("link", "up")
        uploads = self.uploads
        if uploads is not None and uploads.poll():  # nothing left: its heap back
            self.uploads = None
            unload("chargepoint.model", "getlog")
            unload("chargepoint.model", "uploads")

    def _frame(self, direction, text):
        kind, uid, action = peek(text)
        out = direction == "out"
        if kind == 2:
            if action in _ROUTINE:
                return
            self._asked[0 if out else 1] = uid
            if action in _PRIVATE:
                text = '[2, "%s", "%s", ...]' % (uid, action)
        elif kind == 3:
            if uid is None or uid != self._asked[1 if out else 0]:
                return  # the answer to a periodic call
        elif kind != 4:
            return
        # cut before joining: a frame may be KBs (GetConfiguration), the line is not
        self.log.write("ocpp", ("> " if out else "< ") + text[:_LOGGED])
