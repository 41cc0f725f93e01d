"""GetDiagnostics and DiagnosticsStatusNotification (the diagnostics half of OCPP 1.6 Firmware
Management): the firmware's log uploaded from a network thread, and the OCPP traffic worth
keeping written to that log. The uploads of GetLog (security extensions, chargepoint.model.getlog,
imported on the first GetLog) run here too, each kind in its own slot.

Wiring: `install(cp)` routes GetDiagnostics and GetLog and sets `cp.diagnostics`; the
composition root then gives it the log and the uploader with `cp.diagnostics.attach(log, upload)`:
  log            chargepoint.platform.log.Log: write(category, text), snapshot(since, until,
                 category) -> (path, size), discard(path)
  upload(url, path)  a blocking HTTP PUT of the file (chargepoint.platform.http.upload):
                 raises on failure
  run_in_thread(fn)  starts fn() on a network thread (default `_thread.start_new_thread`);
                 tests inject a synchronous runner
Without a log (the tests' default charge point) GetDiagnostics answers without a fileName,
which OCPP reserves for "no diagnostic information available", and nothing is uploaded.

GetDiagnostics answers at once with a fileName, "diagnostics-<UTC time>.txt". The upload:
- what: every log file, oldest first, concatenated into one body (log.1.txt then log.txt,
  at most 2 x 16 KB); with startTime/stopTime, only the lines stamped inside that window (and
  the lines of boots whose wall time was never known). The copy is made in the thread, for
  each attempt, and removed after it.
- where: `location` as given, with the fileName appended when it ends in "/"; HTTP PUT.
  http:// and https:// only (https unverified: what goes up is only our log): any other
  scheme (ftp://) is answered with the fileName and reported UploadFailed at once.
- retries: `retries` more attempts after the first (1 when not given), `retryInterval` s apart
  (60 when not given).
- reports: DiagnosticsStatusNotification Uploading when the first attempt starts, then
  Uploaded, or UploadFailed once the last attempt has failed. TriggerMessage gets Uploading
  while a request is being worked on (also between attempts), else Idle.
- a new GetDiagnostics replaces the one in progress: the older one gets no more attempts and
  no final report; an attempt of it still running ends first. A GetLog in progress is left
  alone (and the other way round): one attempt runs at a time, the other waits for it.
The thread never touches the charge point: it hands (job, error) over under a lock, and
`poll()`, called by the main loop, takes it from there.

Also logged: the transport's link coming up (it prints only its going down, which the log
gets from that print), and the OCPP traffic: every CALL both ways but the periodic
MeterValues and Heartbeat (GetDiagnostics, GetLog and UpdateFirmware without their payload:
URLs may carry credentials), the answers to those CALLs, and every CALLERROR, each cut at the log's
line length. A charging session is about 16 lines; hours of charging add none.
"""
import _thread

from micropython import const

from chargepoint.ocpp.timestamps import iso, parse_iso

_RETRIES = const(1)  # when GetDiagnostics says nothing
_RETRY_INTERVAL_S = const(60)
_ROUTINE = ("MeterValues", "Heartbeat")  # periodic: logging them would wear the flash
_PRIVATE = ("GetDiagnostics", "GetLog", "UpdateFirmware")  # their URLs may carry credentials
_HEAD = const(100)  # frame characters looked at for kind, message id and action
_DIAG = const(0)  # the slot of the GetDiagnostics in progress
LOG = const(1)  # the slot of the GetLog in progress


def install(cp):
    d = cp.diagnostics = Diagnostics(cp)
    cp.engine.route("GetDiagnostics", lambda p, s: d.request(p))
    cp.engine.route("GetLog", lambda p, s: _get_log(d, p))
    return d


def _get_log(d, p):
    # GetLog is rare: no heap for its module until the first one
    from chargepoint.model import getlog

    return getlog.request(d, p)


def _start_thread(fn):
    _thread.start_new_thread(fn, ())


def _error_text(e):
    return "%s: %s" % (type(e).__name__, e)


def public(url):
    # a pre-signed URL carries credentials in its query, an FTP one in user:password@:
    # keep them out of the log
    scheme, sep, rest = url.partition("?")[0].partition("://")
    host, slash, path = rest.partition("/")
    return scheme + sep + host.rpartition("@")[2] + slash + path


_LOGGED = const(250)  # characters of a frame worth a log line (the log cuts at 240 anyway)


def _head(text):
    """(kind, message id, action) of an OCPP-J frame from its first characters."""
    head = text[:_HEAD]
    parts = head.split('"', 4)
    kind = head.lstrip("[ ")[:1]
    uid = parts[1] if len(parts) > 2 else None
    action = parts[3] if kind == "2" and len(parts) > 4 else None
    return kind, uid, action


def target(location, name):
    """Where the file goes: `location`, with the file name appended when it ends in "/"."""
    return location + name if location.endswith("/") else location


class Job:
    """An upload request: where to, the attempts left, the window of lines; how it reports is
    GetDiagnostics's here, GetLog's in getlog.LogJob."""
    action = "DiagnosticsStatusNotification"
    category = None  # only the log lines of this category; None: every line

    def __init__(self, url, p, since, until):
        self.url = url
        self.attempts = 1 + max(0, p.get("retries", _RETRIES))  # left
        self.interval_ms = max(0, p.get("retryInterval", _RETRY_INTERVAL_S)) * 1000
        self.since = iso(parse_iso(since)) if since else None
        self.until = iso(parse_iso(until)) if until else None
        self.due = None  # ticks of the next attempt; None: now
        self.started = False

    def payload(self, status):
        return {"status": status}

    def failure(self, error):
        """The final status once every attempt failed, the last with `error`."""
        return "UploadFailed"


class Diagnostics:
    def __init__(self, cp):
        self.cp = cp
        self.log = None
        self.upload = None
        self.run_in_thread = _start_thread
        self._jobs = [None, None]  # the requests in progress: GetDiagnostics, GetLog
        self._busy = False  # an attempt is running in the network thread
        self._result = None  # (job, error or None), handed over by the thread
        self._lock = _thread.allocate_lock()
        self._observer = self._frame  # one bound method, compared by identity in poll()
        self._next_observer = None
        self._asked = [None, None]  # message id of the last logged CALL: ours, the CS's
        self._linked = False  # the transport's `connected` at the last poll

    def attach(self, log, upload, run_in_thread=None):
        self.log = log
        self.upload = upload
        if run_in_thread is not None:
            self.run_in_thread = run_in_thread
        self._observe()

    def state(self):
        """What TriggerMessage(DiagnosticsStatusNotification) reports."""
        return "Idle" if self._jobs[_DIAG] is None else "Uploading"

    def log_status(self):
        """What ExtendedTriggerMessage(LogStatusNotification) reports: Uploading with the
        requestId while a GetLog is worked on (also between attempts), else Idle."""
        job = self._jobs[LOG]
        return {"status": "Idle"} if job is None else job.payload("Uploading")

    def start(self, slot, job):
        """Make `job` (None: nothing) the request in progress in `slot` (LOG for GetLog);
        whether it replaces one."""
        replaced = self._jobs[slot] is not None
        self._jobs[slot] = job
        return replaced

    # -- GetDiagnostics ---------------------------------------------------------------------

    def request(self, p):
        log = self.log
        if log is None or self.upload is None:
            return {}
        location = p["location"]
        name = self.file_name("diagnostics")
        log.write("diag", "GetDiagnostics %s to %s" % (name, public(location)))
        job = Job(target(location, name), p, p.get("startTime"), p.get("stopTime"))
        scheme = location.partition("://")[0].lower()
        if scheme not in ("http", "https"):
            self._jobs[_DIAG] = None  # a new request replaces the one in progress
            log.write("diag", "upload failed: only http(s) locations are supported")
            self._report(job, "UploadFailed")
            return {"fileName": name}
        self._jobs[_DIAG] = job
        return {"fileName": name}

    def file_name(self, prefix):
        wall = self.cp.clock.wall()
        if wall is None:
            return "%s-boot%d-%d.txt" % (prefix, self.cp.boot, self.cp.clock.ticks_ms())
        return "%s-%s.txt" % (prefix, iso(wall).replace("-", "").replace(":", ""))

    def _report(self, job, status):
        self.cp.call(job.action, job.payload(status))

    # -- the main loop's side ---------------------------------------------------------------

    def poll(self):
        if self.log is None:
            return
        self.log.poll()  # buffered lines that have waited long go to the flash
        self._observe()
        connected = self.cp.transport.connected
        if connected != self._linked:  # the transport prints only its link going down
            self._linked = connected
            if connected:
                self.log.write("link", "up")
        if self._busy and not self._take():
            return
        clock = self.cp.clock
        for job in self._jobs:
            if job is not None and (job.due is None or clock.since(job.due) >= 0):
                break
        else:
            return
        if not job.started:
            job.started = True
            self._report(job, "Uploading")
        job.attempts -= 1
        self._busy = True
        try:
            self.run_in_thread(lambda: self._attempt(job))
        except (OSError, MemoryError, RuntimeError) as e:  # no thread to be had now
            self._busy = False
            self._finished(job, "no thread: " + _error_text(e))
            return
        self._take()  # a synchronous runner (tests) has finished already

    def _take(self):
        """Take the outcome the thread handed over, if there is one yet."""
        with self._lock:
            result = self._result
            self._result = None
        if result is None:
            return False
        self._busy = False
        self._finished(result[0], result[1])
        return True

    def _observe(self):
        engine = self.cp.engine
        # an observer set later (the simulated board's) is kept: ours calls it, from the
        # next loop on
        if engine.on_frame is not self._observer:
            self._next_observer = engine.on_frame
            engine.on_frame = self._observer

    def _finished(self, job, error):
        log = self.log
        if job not in self._jobs:
            log.write("diag", "an earlier request's upload %s" % (
                "done" if error is None else "failed: " + error))
            return
        if error is None:
            log.write("diag", "uploaded to %s" % public(job.url))
            self._end(job, "Uploaded")
        elif job.attempts > 0:
            job.due = self.cp.clock.after(job.interval_ms)
            log.write("diag", "upload failed: %s; %d more attempts, %d s apart" % (
                error, job.attempts, job.interval_ms // 1000))
        else:
            log.write("diag", "upload failed: %s" % error)
            self._end(job, job.failure(error))

    def _end(self, job, status):
        self._jobs[self._jobs.index(job)] = None
        self._report(job, status)

    # -- the network thread's side ----------------------------------------------------------

    def _attempt(self, job):
        error = "stopped"
        try:
            path = self.log.snapshot(job.since, job.until, job.category)[0]
            try:
                self.upload(job.url, path)
            finally:
                self.log.discard(path)
            error = None
        except Exception as e:  # HttpError, OSError (network, TLS, flash), MemoryError
            error = _error_text(e)
        finally:
            with self._lock:
                self._result = (job, error)

    # -- the OCPP traffic in the log ----------------------------------------------------------

    def _frame(self, direction, text):
        following = self._next_observer
        if following is not None:
            following(direction, text)
        kind, uid, action = _head(text)
        out = direction == "out"
        if kind == "2":
            if action in _ROUTINE:
                return
            self._asked[0 if out else 1] = uid
            if action in _PRIVATE:
                text = '[2, "%s", "%s", ...]' % (uid, action)
        elif kind == "3":
            if uid is None or uid != self._asked[1 if out else 0]:
                return  # the answer to a periodic call
        elif kind != "4":
            return
        # cut before joining: a frame may be KBs (GetConfiguration), the line is not
        self.log.write("ocpp", ("> " if out else "< ") + text[:_LOGGED])
