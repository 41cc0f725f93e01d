"""GetLog and LogStatusNotification (OCPP 1.6 security extensions, whitepaper edition 3): the
event log, or only its security events, uploaded the way GetDiagnostics uploads it.

Imported on the first GetLog (chargepoint.model.diagnostics routes it): the request becomes a
job of the upload runner (chargepoint.model.uploads), with the same network thread, uploader,
retries and one-attempt-at-a-time as GetDiagnostics; the diagnostics feature answers
ExtendedTriggerMessage(LogStatusNotification) from it.

GetLog answers at once:
  Rejected          no log or no uploader attached (the tests' default charge point)
  Accepted          with the filename, "diagnostics-<UTC time>.txt" (DiagnosticsLog) or
                    "security-<UTC time>.txt" (SecurityLog)
  AcceptedCanceled  the same, replacing the GetLog in progress: that one gets no more attempts
                    and no final report (an attempt of it still running ends first)
The upload:
- what: DiagnosticsLog: every line of the event log; SecurityLog: only its "security" lines,
  one per event the security module records (type and techInfo). With log.oldestTimestamp
  and/or log.latestTimestamp, only the lines stamped inside that window (and those of boots
  whose wall time was never known).
- where: log.remoteLocation, the filename appended when it ends in "/"; HTTP PUT, http(s).
- retries: `retries` more attempts after the first (1 when not given), `retryInterval` s apart
  (60 when not given).
- reports, LogStatusNotification with the requestId: Uploading when the first attempt starts,
  then Uploaded; once the last attempt has failed, PermissionDenied (the server answered HTTP
  401 or 403), BadMessage (its answer was not HTTP), else UploadFailure. A remoteLocation
  that is no URL is reported BadMessage at once, one of another scheme (ftp://)
  NotSupportedOperation, without an attempt.
"""
from chargepoint.model.uploads import LOG, Job, public, target


class LogJob(Job):
    action = "LogStatusNotification"

    def __init__(self, url, p, request_id, category):
        window = p["log"]
        super().__init__(url, p, window.get("oldestTimestamp"), window.get("latestTimestamp"))
        self.request_id = request_id
        self.category = category

    def payload(self, status):
        return {"status": status, "requestId": self.request_id}

    def failure(self, error):
        # error: "HttpError: PUT: HTTP 403", "HttpError: not an HTTP answer: ...", "OSError: ..."
        if error.endswith(" HTTP 401") or error.endswith(" HTTP 403"):
            return "PermissionDenied"
        if "not an HTTP answer" in error:
            return "BadMessage"
        return "UploadFailure"


def _unusable(location):
    """Why `location` cannot be uploaded to, as a LogStatusNotification status, or None."""
    scheme, sep, rest = location.partition("://")
    if not sep or not rest.partition("/")[0]:
        return "BadMessage"
    if scheme.lower() not in ("http", "https"):
        return "NotSupportedOperation"
    return None


def request(d, p):
    """GetLog.req to `d` (the charge point's Diagnostics): its GetLog.conf."""
    uploads = d.runner()
    if uploads is None:
        return {"status": "Rejected"}
    log = d.log
    security = p["logType"] == "SecurityLog"
    location = p["log"]["remoteLocation"]
    name = uploads.file_name("security" if security else "diagnostics")
    log.write("diag", "GetLog %s %d: %s to %s" % (p["logType"], p["requestId"], name,
                                                 public(location)))
    job = LogJob(target(location, name), p, p["requestId"], "security" if security else None)
    status = "AcceptedCanceled" if uploads.start(LOG, job) else "Accepted"
    problem = _unusable(location)
    if problem is not None:
        uploads.start(LOG, None)
        log.write("diag", "upload failed: %s location" % problem)
        uploads.report(job, problem)
    return {"status": status, "filename": name}
