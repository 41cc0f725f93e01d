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

Signed updates (OCPP 1.6 security whitepaper: SignedUpdateFirmware, reported with
SignedFirmwareStatusNotification and its requestId): the same course, with the signature checks
of chargepoint.model.signing (imported for the update, dropped after). At the request, a
signing certificate that is unreadable, not valid now, or not issued by (named as the subject
of) an installed ManufacturerRootCertificate is InvalidCertificate, with the security event
InvalidFirmwareSigningCertificate; else Accepted (AcceptedCanceled when it replaces an update
not yet installed). Then, in slices (chargepoint.crypto) started for up to _CHECK_MS per loop:
the certificate's signature by the root (a certificate that does not check out ends the update:
InvalidSignature and InvalidFirmwareSigningCertificate); DownloadScheduled when
retrieveDateTime is ahead; Downloading, Downloaded (or DownloadFailed after the retries); the
package's signature (InvalidSignature and the event InvalidFirmwareSignature, nothing
installed; else SignatureVerified); a package for another board InstallVerificationFailed (and
InvalidFirmwarePackage); InstallScheduled while installDateTime is ahead or a transaction runs;
Installing, InstallRebooting, and after the boot Installed (or InstallationFailed: rolled
back). RevokedCertificate is never answered (no revocation lists on the charger) nor
DownloadPaused sent.

SignedFirmwareOnly (BOOL, RW, default true): while a ManufacturerRootCertificate is
installed, an unsigned UpdateFirmware is refused with the CALLERROR SecurityError (its
confirmation has no status to say Rejected with); production chargers take signed firmware
only. With no manufacturer root (development) unsigned updates go on as before.

Choices where the specification leaves room: the whitepaper answers a signing certificate
that does not check out with InvalidCertificate, but the answer goes out from the handler,
and checking the certificate's signature takes up to half a second on an ESP32, which the
loop may not wait for: what the certificate's fields tell is answered at once, its signature
is checked after Accepted, and one the root did not make ends the update with the status
InvalidSignature (the list has none for a certificate) and InvalidFirmwareSigningCertificate.
The signature covers the whole package file, header included, so the version and the
payload's SHA-256 are signed too. The whitepaper's list of security events has
none for a package that is sound but for another board (InvalidFirmwareSignature is about a
signature, and an unsigned package carries none), and the list is not closed (the type is a
CiString50): REFUSED_EVENT, "InvalidFirmwarePackage", named as the whitepaper names the
firmware checks that fail. A security event, as someone may be trying to put foreign code
on the charger; a Central System that sends the wrong package by mistake learns why.
"""
from micropython import const

from chargepoint.model import Feature, unload
from chargepoint.ocpp.config import BOOL
from chargepoint.ocpp.errors import CallError
from chargepoint.ocpp.timestamps import parse_iso

_JOB = "fwjob"
_REQUEST = "fwreq"  # {"id"}: the requestId of a signed update, across its reboot
TRIAL_MS = const(600000)  # the new firmware's time to be accepted by the Central System
REFUSED_EVENT = "InvalidFirmwarePackage"  # a sound package of a kind or target not this board's
# A signature check's share of a loop: slices (each at most ~7 ms on an ESP32, README) until
# this much time has passed, and never more than so many (a fake clock does not move)
_CHECK_MS = const(4)
_CHECK_SLICES = const(32)
SIGNATURE_EVENT = "InvalidFirmwareSignature"
CERTIFICATE_EVENT = "InvalidFirmwareSigningCertificate"


class Firmware(Feature):
    name = "firmware"
    profile = "FirmwareManagement"
    needs = ("updater",)
    triggers = ("FirmwareStatusNotification",)
    routes = ("UpdateFirmware", "SignedUpdateFirmware")
    keys = (("SignedFirmwareOnly", BOOL, True),)

    def __init__(self, cp, services):
        self.cp = cp
        self.log = services.get("log")  # why a download or an install failed
        updater = self.updater = services["updater"]
        self.status = "Idle"
        # {"url", "at" (unix), "retries", "interval", "tries"}; a signed update's also "id"
        # (requestId), "cert" (signing certificate, PEM), "sig" (base64), "install" (unix)
        self.job = cp.store.read(_JOB)
        self.phase = None
        self.request_id = None  # a signed update's: its statuses are SignedFirmwareStatus...
        self.work = None  # the signature check under way (chargepoint.crypto.Work)
        if self.job is not None:
            self.request_id = self.job.get("id")
            self.phase = "check" if "cert" in self.job else "wait"
        self.due = None  # ticks of the next try
        outcome = updater.outcome()
        if outcome is not None:
            self.request_id = (cp.store.read(_REQUEST) or {}).get("id")
        if outcome == "trying":
            self.phase = "trial"
            self.since = cp.clock.ticks_ms()
        elif outcome == "failed":
            self.phase = "failed"

    def update_firmware(self, p, stale):
        # Carried out even when stale: nothing is installed before it has been checked.
        cp = self.cp
        if cp.config.get("SignedFirmwareOnly"):
            from chargepoint.model import signing

            try:
                refused = signing.installed(cp.store)
            finally:
                _drop_signing()
            if refused:
                self._log("unsigned UpdateFirmware refused: SignedFirmwareOnly")
                raise CallError("SecurityError", "unsigned firmware refused: a "
                                "ManufacturerRootCertificate is installed (SignedFirmwareOnly)")
        self._start({"url": p["location"], "at": parse_iso(p["retrieveDate"]) or 0,
                     "retries": p.get("retries", 0), "interval": p.get("retryInterval", 60),
                     "tries": 0}, "wait")
        return {}

    def signed_update_firmware(self, p, stale):
        cp = self.cp
        fw = p["firmware"]
        from chargepoint.model import signing

        try:
            why = signing.check(cp.store, cp.clock.wall(), fw["signingCertificate"])
        finally:
            _drop_signing()
        if why is not None:
            self._log(why)
            cp.security.record(CERTIFICATE_EVENT, why)
            return {"status": "InvalidCertificate"}
        status = "AcceptedCanceled" if self.job is not None else "Accepted"
        self._start({"url": fw["location"], "at": parse_iso(fw["retrieveDateTime"]) or 0,
                     "retries": p.get("retries", 0), "interval": p.get("retryInterval", 60),
                     "tries": 0, "id": p["requestId"], "cert": fw["signingCertificate"],
                     "sig": fw["signature"],
                     "install": parse_iso(fw.get("installDateTime")) or 0}, "check")
        return {"status": status}

    def _start(self, job, phase):
        if self.work is not None:  # the check of the update this one replaces
            _drop_signing()
        self.job = job
        self.request_id = job.get("id")
        self.status = "Idle"  # until this update reports (a trigger meanwhile says Idle)
        self.cp.store.write(_JOB, job)
        self.phase = phase
        self.due = None
        self.work = None

    def trigger(self, message, cid, extended):
        busy = self.phase is not None
        if extended:  # the whitepaper's: the signed update's status, else Idle
            p = {"status": "Idle"}
            if busy and self.request_id is not None:
                p = {"status": self.status, "requestId": self.request_id}
            self.cp.call("SignedFirmwareStatusNotification", p)
        else:  # the status of the (unsigned) update under way, else Idle
            busy = busy and self.request_id is None
            self.cp.call(message, {"status": self.status if busy else "Idle"})

    def report(self, status):
        self.status = status
        if self.request_id is None:
            self.cp.call("FirmwareStatusNotification", {"status": status})
        else:
            self.cp.call("SignedFirmwareStatusNotification",
                         {"status": status, "requestId": self.request_id})

    def _end(self, status):
        self.report(status)
        self.job = None
        self.phase = None
        self.request_id = None
        self.cp.store.remove(_JOB)

    def _verdict(self, make):
        """This loop's slices of a signature check (`make(signing)` gives its generator): None
        while it runs, then whether the signature checked out."""
        if self.work is None:
            from chargepoint import crypto
            from chargepoint.model import signing

            self.work = crypto.Work(make(signing))
        clock = self.cp.clock
        start = clock.ticks_ms()
        for _ in range(_CHECK_SLICES):
            if self.work.step():
                break
            if clock.since(start) >= _CHECK_MS:
                return None
        else:
            return None
        ok = self.work.result is True
        if self.work.error is not None:
            self._log("signature check: %s" % self.work.error)
        self.work = None
        _drop_signing()
        return ok

    def _finished(self, status):
        """The update on trial is over (Installed or InstallationFailed)."""
        self.phase = None
        self.report(status)
        if self.request_id is not None:
            self.request_id = None
            self.cp.store.remove(_REQUEST)

    def tick(self):
        phase = self.phase
        if phase is None:
            return
        cp = self.cp
        up = self.updater
        if phase == "trial":
            if cp.registration == "Accepted":
                up.commit()
                self._finished("Installed")
                cp.security.record("FirmwareUpdated", "now running %s" % up.version)
            elif cp.clock.since(self.since) > TRIAL_MS:
                self.phase = None
                # not accepted: the old firmware comes back
                cp.reboot(True, "firmware update not accepted: rolling back")
            return
        if phase == "failed":
            if cp.registration == "Accepted":
                up.forget()
                self._finished("InstallationFailed")
            return
        if up.busy:
            return
        job = self.job
        if phase == "check":  # the signing certificate's signature by its root
            wall = cp.clock.wall()
            if wall is None:
                return  # (after a power cut) until the clock is known
            ok = self._verdict(lambda s: s.certificate_steps(cp.store, wall, job["cert"]))
            if ok is None:
                return
            if not ok:
                why = "signing certificate not signed by an installed ManufacturerRootCertificate"
                self._log(why)
                cp.security.record(CERTIFICATE_EVENT, why)
                self._end("InvalidSignature")
                return
            self.phase = "wait"
            if wall < job["at"]:
                self.report("DownloadScheduled")
        elif phase == "verify":  # the package's signature
            ok = self._verdict(lambda s: s.package_steps(job["cert"], job["sig"], up.digest))
            if ok is None:
                return
            if not ok:
                self._log("the package's signature does not check out")
                cp.security.record(SIGNATURE_EVENT, "package %s: signature does not check out"
                                   % job["url"])
                self._end("InvalidSignature")
                return
            self.phase = "downloaded"
            self.report("SignatureVerified")
        elif phase == "wait":
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
                self.phase = "verify" if "cert" in job else "downloaded"
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
                wall = cp.clock.wall()
                later = wall is not None and wall < job.get("install", 0)
                for c in cp.connectors:
                    if c.tx is not None:
                        later = True  # installing waits for the transactions to end
                if later:
                    if self.request_id is not None and self.status != "InstallScheduled":
                        self.report("InstallScheduled")
                    return
                self.report("Installing")
            self.phase = "install"
            up.install()
        elif phase == "install":
            if up.error is not None:
                self._log("install failed: %s" % up.error)
                refused = up.refused is not None
                self._end("InstallVerificationFailed" if refused and self.request_id is not None
                          else "InstallationFailed")
                if refused:
                    cp.security.record(REFUSED_EVENT, up.error)
                return
            self.job = None
            self.phase = None
            cp.store.remove(_JOB)
            if self.request_id is not None:  # its statuses after the reboot carry it too
                cp.store.write(_REQUEST, {"id": self.request_id})
                self.report("InstallRebooting")
            # the Installing notification goes first
            cp.request_reset(True, "firmware update to %s" % up.new_version)

    def _log(self, line):
        if self.log is not None:
            self.log.write("update", line)


def _drop_signing():
    """Give back the heap of the signature checks' modules (imported for a signed update)."""
    for name in ("der", "p256", "ecdsa", "rsa", "keys", "csr"):
        unload("chargepoint.crypto", name)
    unload("chargepoint", "crypto")
    unload("chargepoint.model", "signing")
    unload("chargepoint.model", "certificates")
    unload("chargepoint.ocpp", "x509")
