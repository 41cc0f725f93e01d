"""The course of a firmware update (chargepoint.model.firmware, the feature, keeps its state and
says how it goes): UpdateFirmware and SignedUpdateFirmware answered, then, loop by loop, the
download, the signature checks, the install and the trial. Imported by the feature for a
request and kept while an update is under way; dropped when none is (the feature's _done()).
`fw` below is the feature."""
from micropython import const

from chargepoint.model import unload
from chargepoint.model.firmware import JOB, REQUEST
from chargepoint.ocpp.errors import CallError
from chargepoint.ocpp.timestamps import parse_iso

TRIAL_MS = const(600000)  # the new firmware's time to be accepted by the Central System
REFUSED_EVENT = "InvalidFirmwarePackage"  # a sound package of a kind or target not this board's
# A signature check's share of a loop: slices (each at most ~7 ms on an ESP32, README) until
# this much time has passed, and never more than so many (a fake clock does not move)
_CHECK_MS = const(4)
_CHECK_SLICES = const(32)
SIGNATURE_EVENT = "InvalidFirmwareSignature"
CERTIFICATE_EVENT = "InvalidFirmwareSigningCertificate"


def update_firmware(fw, p):
    """UpdateFirmware.conf (a SecurityError while unsigned firmware is refused)."""
    cp = fw.cp
    if cp.config.get("SignedFirmwareOnly"):
        from chargepoint.model import signing

        try:
            refused = signing.installed(cp.store)
        finally:
            _drop_signing()
        if refused:
            _log(fw, "unsigned UpdateFirmware refused: SignedFirmwareOnly")
            raise CallError("SecurityError", "unsigned firmware refused: a "
                            "ManufacturerRootCertificate is installed (SignedFirmwareOnly)")
    _start(fw, {"url": p["location"], "at": parse_iso(p["retrieveDate"]) or 0,
                "retries": p.get("retries", 0), "interval": p.get("retryInterval", 60),
                "tries": 0}, "wait")
    return {}


def signed_update_firmware(fw, p):
    """SignedUpdateFirmware.conf."""
    cp = fw.cp
    wire = p["firmware"]
    from chargepoint.model import signing

    try:
        why = signing.check(cp.store, cp.clock.wall(), wire["signingCertificate"])
    finally:
        _drop_signing()
    if why is not None:
        _log(fw, why)
        cp.security.record(CERTIFICATE_EVENT, why)
        return {"status": "InvalidCertificate"}
    status = "AcceptedCanceled" if fw.job is not None else "Accepted"
    _start(fw, {"url": wire["location"], "at": parse_iso(wire["retrieveDateTime"]) or 0,
                "retries": p.get("retries", 0), "interval": p.get("retryInterval", 60),
                "tries": 0, "id": p["requestId"], "cert": wire["signingCertificate"],
                "sig": wire["signature"],
                "install": parse_iso(wire.get("installDateTime")) or 0}, "check")
    return {"status": status}


def _start(fw, job, phase):
    if fw.work is not None:  # the check of the update this one replaces
        _drop_signing()
    fw.job = job
    fw.request_id = job.get("id")
    fw.status = "Idle"  # until this update reports (a trigger meanwhile says Idle)
    fw.cp.store.write(JOB, job)
    fw.phase = phase
    fw.due = None
    fw.work = None


def report(fw, status):
    fw.status = status
    if fw.request_id is None:
        fw.cp.call("FirmwareStatusNotification", {"status": status})
    else:
        fw.cp.call("SignedFirmwareStatusNotification",
                   {"status": status, "requestId": fw.request_id})


def _end(fw, status):
    report(fw, status)
    fw.job = None
    fw.phase = None
    fw.request_id = None
    fw.cp.store.remove(JOB)


def _verdict(fw, make):
    """This loop's slices of a signature check (`make(signing)` gives its generator): None
    while it runs, then whether the signature checked out."""
    if fw.work is None:
        from chargepoint import crypto
        from chargepoint.model import signing

        fw.work = crypto.Work(make(signing))
    clock = fw.cp.clock
    start = clock.ticks_ms()
    for _ in range(_CHECK_SLICES):
        if fw.work.step():
            break
        if clock.since(start) >= _CHECK_MS:
            return None
    else:
        return None
    ok = fw.work.result is True
    if fw.work.error is not None:
        _log(fw, "signature check: %s" % fw.work.error)
    fw.work = None
    _drop_signing()
    return ok


def _finished(fw, status):
    """The update on trial is over (Installed or InstallationFailed)."""
    fw.phase = None
    report(fw, status)
    if fw.request_id is not None:
        fw.request_id = None
        fw.cp.store.remove(REQUEST)


def tick(fw):
    """The feature's tick while an update is under way (its phase not None)."""
    phase = fw.phase
    if phase is None:
        return
    cp = fw.cp
    up = fw.updater
    if phase == "trial":
        if cp.registration == "Accepted":
            up.commit()
            _finished(fw, "Installed")
            cp.security.record("FirmwareUpdated", "now running %s" % up.version)
        elif cp.clock.since(fw.since) > TRIAL_MS:
            fw.phase = None
            # not accepted: the old firmware comes back
            cp.reboot(True, "firmware update not accepted: rolling back")
        return
    if phase == "failed":
        if cp.registration == "Accepted":
            up.forget()
            _finished(fw, "InstallationFailed")
        return
    if up.busy:
        return
    job = fw.job
    if phase == "check":  # the signing certificate's signature by its root
        wall = cp.clock.wall()
        if wall is None:
            return  # (after a power cut) until the clock is known
        ok = _verdict(fw, lambda s: s.certificate_steps(cp.store, wall, job["cert"]))
        if ok is None:
            return
        if not ok:
            why = "signing certificate not signed by an installed ManufacturerRootCertificate"
            _log(fw, why)
            cp.security.record(CERTIFICATE_EVENT, why)
            _end(fw, "InvalidSignature")
            return
        fw.phase = "wait"
        if wall < job["at"]:
            report(fw, "DownloadScheduled")
    elif phase == "verify":  # the package's signature
        ok = _verdict(fw, lambda s: s.package_steps(job["cert"], job["sig"], up.digest))
        if ok is None:
            return
        if not ok:
            _log(fw, "the package's signature does not check out")
            cp.security.record(SIGNATURE_EVENT, "package %s: signature does not check out"
                               % job["url"])
            _end(fw, "InvalidSignature")
            return
        fw.phase = "downloaded"
        report(fw, "SignatureVerified")
    elif phase == "wait":
        wall = cp.clock.wall()
        if wall is not None and wall < fw.job["at"]:
            return
        if fw.due is not None and cp.clock.since(fw.due) < 0:
            return
        fw.phase = "download"
        if fw.job["tries"] == 0:  # a retry is still Downloading
            report(fw, "Downloading")
        up.download(fw.job["url"])
    elif phase == "download":
        if up.error is None:
            fw.phase = "verify" if "cert" in job else "downloaded"
            report(fw, "Downloaded")
            return
        job = fw.job
        job["tries"] += 1
        _log(fw, "download failed: %s" % up.error)
        if job["tries"] > job["retries"]:
            _end(fw, "DownloadFailed")
            return
        cp.store.write(JOB, job)
        fw.phase = "wait"
        fw.due = cp.clock.after(job["interval"] * 1000)
    elif phase == "downloaded":
        if up.refused is None:  # (a refused package fails at once: nothing installs)
            wall = cp.clock.wall()
            later = wall is not None and wall < job.get("install", 0)
            for c in cp.connectors:
                if c.tx is not None:
                    later = True  # installing waits for the transactions to end
            if later:
                if fw.request_id is not None and fw.status != "InstallScheduled":
                    report(fw, "InstallScheduled")
                return
            report(fw, "Installing")
        fw.phase = "install"
        up.install()
    elif phase == "install":
        if up.error is not None:
            _log(fw, "install failed: %s" % up.error)
            refused = up.refused is not None
            _end(fw, "InstallVerificationFailed" if refused and fw.request_id is not None
                      else "InstallationFailed")
            if refused:
                cp.security.record(REFUSED_EVENT, up.error)
            return
        fw.job = None
        fw.phase = None
        cp.store.remove(JOB)
        if fw.request_id is not None:  # its statuses after the reboot carry it too
            cp.store.write(REQUEST, {"id": fw.request_id})
            report(fw, "InstallRebooting")
        # the Installing notification goes first
        cp.request_reset(True, "firmware update to %s" % up.new_version)


def _log(fw, line):
    if fw.log is not None:
        fw.log.write("update", line)


def _drop_signing():
    """Give back the heap of the signature checks' modules (imported for a signed update)."""
    for name in ("der", "p256", "ecdsa", "rsa", "keys", "csr"):
        unload("chargepoint.crypto", name)
    unload("chargepoint", "crypto")
    unload("chargepoint.model", "signing")
    unload("chargepoint.model", "certificates")
    unload("chargepoint.ocpp", "x509")
