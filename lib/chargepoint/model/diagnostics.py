"""GetDiagnostics and DiagnosticsStatusNotification (the diagnostics half of OCPP 1.6 Firmware
Management): the firmware's log uploaded from a network thread, and the OCPP traffic worth
keeping written to that log.

Wiring: `install(cp)` routes GetDiagnostics and sets `cp.diagnostics`; the composition root
then gives it the log and the uploader with `cp.diagnostics.attach(log, upload)`:
  log            chargepoint.platform.log.Log: write(category, text), snapshot(since, until)
                 -> (path, size), discard(path)
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
  no final report; an attempt of it still running ends first.
The thread never touches the charge point: it hands (job, error) over under a lock, and
`poll()`, called by the main loop, takes it from there.

Also logged: the transport's link coming up (it prints only its going down, which the log
gets from that print), and the OCPP traffic: every CALL both ways but the periodic
MeterValues and Heartbeat (GetDiagnostics and UpdateFirmware without their payload: URLs may
carry credentials), the answers to those CALLs, and every CALLERROR, each cut at the log's
line length. A charging session is about 16 lines; hours of charging add none.
"""
import _thread

from micropython import const

from chargepoint.ocpp.timestamps import iso, parse_iso

_RETRIES = const(1)  # when GetDiagnostics says nothing
_RETRY_INTERVAL_S = const(60)
_ROUTINE = ("MeterValues", "Heartbeat")  # periodic: logging them would wear the flash
_PRIVATE = ("GetDiagnostics", "UpdateFirmware")  # their URLs may carry credentials
_HEAD = const(100)  # frame characters looked at for kind, message id and action


def install(cp):
    d = cp.diagnostics = Diagnostics(cp)
    cp.engine.route("GetDiagnostics", lambda p, s: d.request(p))
    return d


def _start_thread(fn):
    _thread.start_new_thread(fn, ())


def _error_text(e):
    return "%s: %s" % (type(e).__name__, e)


def _public(url):
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


class _Job:
    def __init__(self, url, attempts, interval_ms, since, until):
        self.url = url
        self.attempts = attempts  # left
        self.interval_ms = interval_ms
        self.since = since
        self.until = until
        self.due = None  # ticks of the next attempt; None: now
        self.started = False


class Diagnostics:
    def __init__(self, cp):
        self.cp = cp
        self.log = None
        self.upload = None
        self.run_in_thread = _start_thread
        self._job = None
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
        return "Idle" if self._job is None else "Uploading"

    # -- GetDiagnostics ---------------------------------------------------------------------

    def request(self, p):
        log = self.log
        if log is None or self.upload is None:
            return {}
        location = p["location"]
        name = self._file_name()
        log.write("diag", "GetDiagnostics %s to %s" % (name, _public(location)))
        self._job = None  # a new request replaces the one in progress
        scheme = location.partition("://")[0].lower()
        if scheme not in ("http", "https"):
            log.write("diag", "upload failed: only http(s) locations are supported")
            self._report("UploadFailed")
            return {"fileName": name}
        since = p.get("startTime")
        until = p.get("stopTime")
        self._job = _Job(location + name if location.endswith("/") else location,
                         1 + max(0, p.get("retries", _RETRIES)),
                         max(0, p.get("retryInterval", _RETRY_INTERVAL_S)) * 1000,
                         iso(parse_iso(since)) if since else None,
                         iso(parse_iso(until)) if until else None)
        return {"fileName": name}

    def _file_name(self):
        wall = self.cp.clock.wall()
        if wall is None:
            return "diagnostics-boot%d-%d.txt" % (self.cp.boot, self.cp.clock.ticks_ms())
        return "diagnostics-%s.txt" % iso(wall).replace("-", "").replace(":", "")

    def _report(self, status):
        self.cp.call("DiagnosticsStatusNotification", {"status": status})

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
        job = self._job
        if job is None or (job.due is not None and self.cp.clock.since(job.due) < 0):
            return
        if not job.started:
            job.started = True
            self._report("Uploading")
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
        if job is not self._job:
            log.write("diag", "an earlier request's upload %s" % (
                "done" if error is None else "failed: " + error))
            return
        if error is None:
            log.write("diag", "uploaded to %s" % _public(job.url))
            self._end("Uploaded")
        elif job.attempts > 0:
            job.due = self.cp.clock.after(job.interval_ms)
            log.write("diag", "upload failed: %s; %d more attempts, %d s apart" % (
                error, job.attempts, job.interval_ms // 1000))
        else:
            log.write("diag", "upload failed: %s" % error)
            self._end("UploadFailed")

    def _end(self, status):
        self._job = None
        self._report(status)

    # -- the network thread's side ----------------------------------------------------------

    def _attempt(self, job):
        error = "stopped"
        try:
            path = self.log.snapshot(job.since, job.until)[0]
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
