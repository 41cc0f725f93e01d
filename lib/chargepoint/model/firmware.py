"""Firmware update (OCPP 1.6 UpdateFirmware, FirmwareStatusNotification): when to fetch, retry,
install and confirm; the platform's updater (chargepoint.platform.update) does the work.

A feature (`cp.firmware`, FirmwareManagement) installed where the platform gives the
"updater" service (chargepoint.platform.update); its tick() runs every loop. The updater: `download(url)` and `install()` start work in a thread, `busy`
and `error` say how it went, `refused` after a download says why a sound package is not for
this board (its kind or target; None when it is: then install() fails at once with it as
`error`), `outcome()` at start tells whether this firmware is an update on trial ("trying")
or one was rolled back ("failed"), `commit()` keeps the firmware on trial, `forget()` clears
a failed one.

The course of an update, each step reported as FirmwareStatusNotification:
  at retrieveDate (at once if it is past or the clock is not known) Downloading; the package
  is fetched and its SHA-256 checked (a package that does not check out is never installed);
  after `retries` more tries `retryInterval` apart DownloadFailed; else Downloaded. A package
  that checked out but is not for this board (an .mpy package on our image, say) is then
  InstallationFailed at once, whether a transaction runs or not (nothing was written, nothing
  resets), with the security event REFUSED_EVENT, techInfo the reason ("a mpy package for
  twin: this board takes image for twin"), which is also its line in the event log. Else,
  once no transaction runs: Installing, the package is put in place, and the
  board resets. The new firmware is on trial until the Central System accepts its
  BootNotification: then it is kept, Installed. If it has not been accepted within
  TRIAL_MS it resets, and the old firmware comes back (boot.py for .mpy files, the bootloader
  for an image), reporting InstallationFailed. The job is kept on flash: a power cut before
  the install resumes it.

Choices where the specification leaves room: the whitepaper's list of security events has
none for a package that is sound but for another board (InvalidFirmwareSignature is about a
signature, and these packages carry none), and the list is not closed (the type is a
CiString50): REFUSED_EVENT, "InvalidFirmwarePackage", named as the whitepaper names the
firmware checks that fail. A security event, as someone may be trying to put foreign code
on the charger; a Central System that sends the wrong package by mistake learns why.
"""
from micropython import const

from chargepoint.model import Feature
from chargepoint.ocpp.timestamps import parse_iso

_JOB = "fwjob"
TRIAL_MS = const(600000)  # the new firmware's time to be accepted by the Central System
REFUSED_EVENT = "InvalidFirmwarePackage"  # a sound package of a kind or target not this board's


class Firmware(Feature):
    name = "firmware"
    profile = "FirmwareManagement"
    needs = ("updater",)
    triggers = ("FirmwareStatusNotification",)
    routes = ("UpdateFirmware",)

    def __init__(self, cp, services):
        self.cp = cp
        self.log = services.get("log")  # why a download or an install failed
        updater = self.updater = services["updater"]
        self.status = "Idle"
        self.job = cp.store.read(_JOB)  # {"url", "at" (unix), "retries", "interval", "tries"}
        self.phase = "wait" if self.job is not None else None
        self.due = None  # ticks of the next try
        outcome = updater.outcome()
        if outcome == "trying":
            self.phase = "trial"
            self.since = cp.clock.ticks_ms()
        elif outcome == "failed":
            self.phase = "failed"

    def update_firmware(self, p, stale):
        # Carried out even when stale: nothing is installed before it has been checked.
        self.job = {"url": p["location"], "at": parse_iso(p["retrieveDate"]) or 0,
                    "retries": p.get("retries", 0), "interval": p.get("retryInterval", 60),
                    "tries": 0}
        self.cp.store.write(_JOB, self.job)
        self.phase = "wait"
        self.due = None
        return {}

    def trigger(self, message, cid, extended):
        if extended:  # the whitepaper's: a signed update's status (none exists yet)
            self.cp.call("SignedFirmwareStatusNotification", {"status": "Idle"})
        else:  # the status of the update under way, else Idle
            self.cp.call(message, {"status": self.status if self.phase is not None else "Idle"})

    def report(self, status):
        self.status = status
        self.cp.call("FirmwareStatusNotification", {"status": status})

    def _end(self, status):
        self.report(status)
        self.job = None
        self.phase = None
        self.cp.store.remove(_JOB)

    def tick(self):
        phase = self.phase
        if phase is None:
            return
        cp = self.cp
        up = self.updater
        if phase == "trial":
            if cp.registration == "Accepted":
                up.commit()
                self.phase = None
                self.report("Installed")
                cp.security.record("FirmwareUpdated", "now running %s" % up.version)
            elif cp.clock.since(self.since) > TRIAL_MS:
                self.phase = None
                # not accepted: the old firmware comes back
                cp.reboot(True, "firmware update not accepted: rolling back")
            return
        if phase == "failed":
            if cp.registration == "Accepted":
                up.forget()
                self.phase = None
                self.report("InstallationFailed")
            return
        if up.busy:
            return
        if phase == "wait":
            wall = cp.clock.wall()
            if wall is not None and wall < self.job["at"]:
                return
            if self.due is not None and cp.clock.since(self.due) < 0:
                return
            self.phase = "download"
            if self.job["tries"] == 0:  # a retry is still Downloading
                self.report("Downloading")
            up.download(self.job["url"])
        elif phase == "download":
            if up.error is None:
                self.phase = "downloaded"
                self.report("Downloaded")
                return
            job = self.job
            job["tries"] += 1
            self._log("download failed: %s" % up.error)
            if job["tries"] > job["retries"]:
                self._end("DownloadFailed")
                return
            cp.store.write(_JOB, job)
            self.phase = "wait"
            self.due = cp.clock.after(job["interval"] * 1000)
        elif phase == "downloaded":
            if up.refused is None:  # (a refused package fails at once: nothing installs)
                for c in cp.connectors:
                    if c.tx is not None:
                        return  # installing waits for the transactions to end
                self.report("Installing")
            self.phase = "install"
            up.install()
        elif phase == "install":
            if up.error is not None:
                self._log("install failed: %s" % up.error)
                self._end("InstallationFailed")
                if up.refused is not None:
                    cp.security.record(REFUSED_EVENT, up.error)
                return
            self.job = None
            self.phase = None
            cp.store.remove(_JOB)
            # the Installing notification goes first
            cp.request_reset(True, "firmware update to %s" % up.new_version)

    def _log(self, line):
        if self.log is not None:
            self.log.write("update", line)
