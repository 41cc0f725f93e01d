"""The upload runner behind GetDiagnostics and GetLog: one request in progress per kind (a
slot each), one attempt at a time in a network thread, retries, and the status
notifications each kind reports. chargepoint.model.diagnostics and chargepoint.model.getlog
make the jobs.

- what: the event log's files, oldest first, copied into one file in the thread for each
  attempt (only the lines of the job's window and category), removed after it.
- retries: `retries` more attempts after the first (1 when not given), `retryInterval` s
  apart (60 when not given).
- reports (the job's `action`): Uploading when the first attempt starts, then Uploaded, or
  the job's failure status once the last attempt has failed.
- a new request of a kind replaces the one in progress: the older one gets no more attempts
  and no final report; an attempt of it still running ends first. The other kind is left
  alone: one attempt runs at a time, the other waits for it.
The thread never touches the charge point: it hands (job, error) over under a lock, and
`poll()`, called by the main loop, takes it from there.
"""
import _thread

from micropython import const

from chargepoint.ocpp.timestamps import iso, parse_iso

_RETRIES = const(1)  # when the request says nothing
_RETRY_INTERVAL_S = const(60)
DIAGNOSTICS = const(0)  # the slot of the GetDiagnostics in progress
LOG = const(1)  # the slot of the GetLog in progress


def _start_thread(fn):
    _thread.start_new_thread(fn, ())


def _error_text(e):
    return "%s: %s" % (type(e).__name__, e)


def public(url):
    """`url` without credentials, for the log: a pre-signed URL carries them in its query,
    an FTP one in user:password@."""
    scheme, sep, rest = url.partition("?")[0].partition("://")
    host, slash, path = rest.partition("/")
    return scheme + sep + host.rpartition("@")[2] + slash + path


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


class Uploads:
    """`log`: chargepoint.platform.log.Log (snapshot, discard, write); `upload(url, path)`: a
    blocking HTTP PUT, raises on failure; `run_in_thread(fn)` starts fn on a network thread."""

    def __init__(self, cp, log, upload, run_in_thread=None):
        self.cp = cp
        self.log = log
        self.upload = upload
        self.run_in_thread = run_in_thread or _start_thread
        self._jobs = [None, None]  # the requests in progress, by slot
        self._busy = False  # an attempt is running in the network thread
        self._result = None  # (job, error or None), handed over by the thread
        self._lock = _thread.allocate_lock()

    def job(self, slot):
        return self._jobs[slot]

    def start(self, slot, job):
        """Make `job` (None: nothing) the request in progress in `slot`; whether it replaces
        one."""
        replaced = self._jobs[slot] is not None
        self._jobs[slot] = job
        return replaced

    def file_name(self, prefix):
        cp = self.cp
        wall = cp.clock.wall()
        if wall is None:
            return "%s-boot%d-%d.txt" % (prefix, cp.boot, cp.clock.ticks_ms())
        return "%s-%s.txt" % (prefix, iso(wall).replace("-", "").replace(":", ""))

    def report(self, job, status):
        self.cp.call(job.action, job.payload(status))

    # -- the main loop's side ---------------------------------------------------------------

    def poll(self):
        """Work the requests; whether nothing is left to do (no request, no attempt)."""
        if self._busy and not self._take():
            return False
        clock = self.cp.clock
        for job in self._jobs:
            if job is not None and (job.due is None or clock.since(job.due) >= 0):
                break
        else:
            return self._jobs[0] is None and self._jobs[1] is None
        if not job.started:
            job.started = True
            self.report(job, "Uploading")
        job.attempts -= 1
        self._busy = True
        try:
            self.run_in_thread(lambda: self._attempt(job))
        except (OSError, MemoryError, RuntimeError) as e:  # no thread to be had now
            self._busy = False
            self._finished(job, "no thread: " + _error_text(e))
            return False
        self._take()  # a synchronous runner (tests) has finished already
        return False

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
        self.report(job, status)

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
