"""Firmware update (OCPP 1.6 UpdateFirmware, FirmwareStatusNotification): when to fetch, retry,
install and confirm; the platform's updater (chargepoint.platform.update) does the work.

A feature (`cp.firmware`, FirmwareManagement) installed where the platform gives the
"updater" service (chargepoint.platform.update); its tick() runs every loop. It keeps the
state of an update; the requests and the course of an update (chargepoint.model.updating) are
imported for a request and stay while an update is under way. The updater: `download(url)`
and `install()` start work in a thread, `busy` and `error` say how it went, `refused` after
a download says why a sound package is not for this board (its kind or target; None when it
is: then install() fails at once with it as `error`), `outcome()` at start tells whether this
firmware is an update on trial ("trying") or one was rolled back ("failed"), `commit()` keeps
the firmware on trial, `forget()` clears a failed one.

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
from chargepoint.model import Feature, unload
from chargepoint.ocpp.config import BOOL

JOB = "fwjob"
REQUEST = "fwreq"  # {"id"}: the requestId of a signed update, across its reboot


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
        self.job = cp.store.read(JOB)
        self.phase = None
        self.request_id = None  # a signed update's: its statuses are SignedFirmwareStatus...
        self.work = None  # the signature check under way (chargepoint.crypto.Work)
        self.course = None  # chargepoint.model.updating while an update is under way
        if self.job is not None:
            self.request_id = self.job.get("id")
            self.phase = "check" if "cert" in self.job else "wait"
        self.due = None  # ticks of the next try
        outcome = updater.outcome()
        if outcome is not None:
            self.request_id = (cp.store.read(REQUEST) or {}).get("id")
        if outcome == "trying":
            self.phase = "trial"
            self.since = cp.clock.ticks_ms()
        elif outcome == "failed":
            self.phase = "failed"

    def _course(self):
        if self.course is None:
            from chargepoint.model import updating

            self.course = updating
        return self.course

    def _done(self):
        """With no update under way the course goes."""
        if self.phase is None and self.course is not None:
            self.course = None
            unload("chargepoint.model", "updating")

    def update_firmware(self, p, stale):
        # Carried out even when stale: nothing is installed before it has been checked.
        try:
            return self._course().update_firmware(self, p)
        finally:
            self._done()

    def signed_update_firmware(self, p, stale):
        try:
            return self._course().signed_update_firmware(self, p)
        finally:
            self._done()

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

    def tick(self):
        if self.phase is None:
            return
        try:
            self._course().tick(self)
        finally:
            self._done()
