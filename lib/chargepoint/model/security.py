"""OCPP 1.6 security extensions (whitepaper edition 3): security events, ExtendedTriggerMessage,
and the routes of certificate management (chargepoint.model.certificates, imported on use).

Security events (SecurityEventNotification), recorded where the firmware sees them:
  StartupOfTheDevice                 every boot (techInfo: boot number, firmware version)
  ResetOrReboot                      every reboot the firmware does (cp.reboot is wrapped);
                                     techInfo `cp.security.why` (Reset.req sets it), else
                                     "Hard/Soft reboot"; a soft reset at the console
  SettingSystemTime                  the wall clock set from BootNotification/Heartbeat (the
                                     first time in a boot, or moved by >= 10 s), and NTP
                                     moving the RTC by >= 10 s (`ntp_stepped`, TimeSync's hook)
  InvalidCentralSystemCertificate    the TLS handshake refused the server: the transport's
                                     status["last_error"] is mbedTLS's verdict; once per
                                     distinct error until a connect succeeds
  ReconfigurationOfSecurityParameters  InstallCertificate/DeleteCertificate done, or a
                                     ChangeConfiguration of a key in SECURITY_KEYS
  FirmwareUpdated                    the firmware on trial accepted (chargepoint.model.firmware)
  InvalidFirmwarePackage             not in the whitepaper's list: a package that checked out
                                     but is of another kind or target than this board's;
                                     techInfo the reason (chargepoint.model.firmware says why)
  anything else                      `event(cp, kind, tech_info)` (InvalidFirmwareSignature,
                                     ... should signed updates come)
Each is also a "security" line of the event log ("<type>: <techInfo>"): what GetLog's SecurityLog
uploads (chargepoint.model.getlog); one recorded before the log is attached waits for it.

Delivery: one small store record per event ("sev.<seq>": the payload, its timestamp a clock
marker until sent), so a power cut keeps them; at most 20, past that the oldest goes. They
leave one at a time through the charge point's outbox, so only once BootNotification is
Accepted. A CALLERROR (a Central System without the extension says NotImplemented) or a bad
answer drops the event; no answer (offline, timeout) hands it over again 10 s later. Not the
TxQueue: a refused event would be retried TransactionMessageAttempts times while holding up
the StopTransactions behind it, it would count as a transaction message a soft Reset waits
for, and its bound sheds only MeterValues.
"""
from micropython import const

from chargepoint.model import remote
from chargepoint.ocpp.config import INT, RO
from chargepoint.ocpp.timestamps import iso, parse_iso

_MAX_EVENTS = const(20)
_RETRY_MS = const(10000)
_JUMP_S = const(10)  # a clock moved by less is drift being corrected, not an event
_STORE_MAX = const(4)  # CertificateStoreMaxLength: certificates installed over OCPP
_EVENT = "sev.%d"

CERT_INDEX = "certs"  # [{"n", "type", "hash": CertificateHashData}] of installed certificates
CERT_RECORD = "cert.%d"  # certificate n: its DER in base64
# ChangeConfiguration of one of these is ReconfigurationOfSecurityParameters (whoever declares
# them: none is declared today). The value is never put in techInfo: it may be a secret.
SECURITY_KEYS = ("AdditionalRootCertificateCheck", "AuthorizationKey", "CpoName",
                 "SecurityProfile")

_ACCEPTED = {"status": "Accepted"}


def install(cp):
    """Attach cp.security, declare CertificateStoreMaxLength, route the security messages,
    wrap cp.reboot and record StartupOfTheDevice."""
    sec = Security(cp)
    cp.security = sec
    cp.config.declare("CertificateStoreMaxLength", INT, _STORE_MAX, RO)
    cp.config.listeners.append(sec.config_changed)
    r = cp.engine.route
    r("ExtendedTriggerMessage", lambda p, s: extended_trigger(cp, p))
    r("InstallCertificate", lambda p, s: _certificates("install_certificate", cp, p))
    r("GetInstalledCertificateIds", lambda p, s: _certificates("installed_ids", cp, p))
    r("DeleteCertificate", lambda p, s: _certificates("delete_certificate", cp, p))
    reboot = cp.reboot
    if reboot is not None:
        def rebooting(hard):
            sec.record("ResetOrReboot", sec.why or ("Hard reboot" if hard else "Soft reboot"))
            sec.why = None
            reboot(hard)
        cp.reboot = rebooting
    version = cp.boot_info.get("firmwareVersion")
    sec.record("StartupOfTheDevice", "boot %d, firmware %s" % (cp.boot, version or "?"))
    return sec


def _certificates(operation, cp, p):
    # Certificate management is rare, and its modules take about 7.5 KB of heap as .mpy files:
    # they are imported for the request and dropped after it (as app.py drops devconfig).
    from chargepoint.model import certificates

    try:
        return getattr(certificates, operation)(cp, p)
    finally:
        _unload("chargepoint.model", "certificates")
        _unload("chargepoint.ocpp", "x509")


def _unload(package, name):
    import sys

    sys.modules.pop(package + "." + name, None)
    parent = sys.modules.get(package)
    if parent is not None and hasattr(parent, name):
        delattr(parent, name)


def event(cp, kind, tech_info=None):
    """Record security event `kind` now; it reaches the Central System however long that
    takes (persisted, see the module docstring). For the firmware update code:
    event(cp, "FirmwareUpdated", "1.2.3"), event(cp, "InvalidFirmwareSignature", why)."""
    cp.security.record(kind, tech_info)


def set_clock(cp, text, source):
    """Set the wall clock from a Central System's currentTime (`source`: the message it came
    with); a first setting in this boot, or a jump, is SettingSystemTime."""
    clock = cp.clock
    was = clock.wall()
    clock.set_wall(*parse_iso(text, True))
    now = clock.wall()
    if was is None:
        cp.security.record("SettingSystemTime", "%s: clock set to %s" % (source, iso(now)))
    elif abs(now - was) >= _JUMP_S:
        cp.security.record("SettingSystemTime", "%s: clock moved by %+d s to %s"
                           % (source, now - was, iso(now)))


def roots(store, kind="CentralSystemRootCertificate"):
    """The DER of each certificate of `kind` installed over OCPP: app.py adds the Central
    System roots to the TLS context's CA at boot; ManufacturerRootCertificate ones are there
    for firmware signature checks."""
    import binascii

    found = []
    for entry in store.read(CERT_INDEX, ()):
        if entry["type"] == kind:
            text = store.read(CERT_RECORD % entry["n"])
            if text:
                found.append(binascii.a2b_base64(text))
    return found


class Security:
    def __init__(self, cp):
        self.cp = cp
        self.seqs = [int(n[4:]) for n in cp.store.names("sev.")]
        self.seqs.sort()
        self.sending = None  # seq of the event handed to the outbox
        self.retry_at = None  # ticks after which an unanswered event is handed over again
        self.why = None  # techInfo of the next ResetOrReboot
        self.posted = []  # (kind, tech_info) from the network thread, recorded by poll()
        self.factory = None  # () -> [DER] of config.json's mqtt.ca, set by the app
        self.dropped = 0  # the oldest, past _MAX_EVENTS
        self.refused = 0  # answered with a CALLERROR or a malformed .conf
        self._failures = None  # transport status["failures"] last looked at
        self._connects = None
        self._told = None  # the TLS error last reported, until a connect succeeds
        self.unlogged = []  # lines of events recorded before the event log was attached

    def record(self, kind, tech_info=None):
        payload = {"type": kind[:50], "timestamp": self.cp.clock.stamp()}
        line = payload["type"]
        if tech_info:
            payload["techInfo"] = str(tech_info)[:255]
            line += ": " + payload["techInfo"]
        self._log(line)
        seqs = self.seqs
        seq = seqs[-1] + 1 if seqs else 1
        store = self.cp.store
        store.write(_EVENT % seq, payload)
        seqs.append(seq)
        while len(seqs) > _MAX_EVENTS:  # the one in flight stays: its answer is due
            store.remove(_EVENT % seqs.pop(1 if seqs[0] == self.sending else 0))
            self.dropped += 1
        self._hand_over()

    def __len__(self):
        return len(self.seqs)

    def _log(self, line=None):
        # the event log's "security" lines are what GetLog(SecurityLog) uploads; one recorded
        # before the log is attached (StartupOfTheDevice) is written, stamped, once it is
        unlogged = self.unlogged
        if line is not None:
            unlogged.append(line)
            if len(unlogged) > _MAX_EVENTS:
                unlogged.pop(0)
        log = getattr(getattr(self.cp, "diagnostics", None), "log", None)
        while log is not None and unlogged:
            log.write("security", unlogged.pop(0))

    def _hand_over(self):
        if self.sending is not None or self.retry_at is not None:
            return
        store = self.cp.store
        while self.seqs:
            seq = self.seqs[0]
            payload = store.read(_EVENT % seq)
            if payload is not None:
                self.sending = seq
                self.cp.call("SecurityEventNotification", payload, self._done(seq),
                             self._fail(seq))
                return
            self.seqs.pop(0)

    def _forget(self, seq):
        if seq in self.seqs:
            self.seqs.remove(seq)
            self.cp.store.remove(_EVENT % seq)

    def _done(self, seq):
        def done(_):
            if self.sending == seq:
                self.sending = None
            self._forget(seq)
            self._hand_over()
        return done

    def _fail(self, seq):
        def fail(code, _):
            if self.sending == seq:
                self.sending = None
            if code in ("Timeout", "Offline", "Dropped"):  # not answered: again, later
                self.retry_at = self.cp.clock.after(_RETRY_MS)
                return
            self.refused += 1
            self._forget(seq)
            self._hand_over()
        return fail

    # -- what the rest of the firmware reports -----------------------------------------------

    def poll(self):
        """Every loop: events posted from the network thread, the link's TLS verdicts, and the
        retry of an unanswered event."""
        posted = self.posted
        while posted:
            self.record(*posted.pop(0))
        if self.unlogged:
            self._log()
        status = getattr(self.cp.transport, "status", None)
        if status:
            self._watch_link(status)
        if self.retry_at is not None and self.cp.clock.since(self.retry_at) >= 0:
            self.retry_at = None
            self._hand_over()

    def _watch_link(self, status):
        connects = status.get("connects")
        if connects != self._connects:
            self._connects = connects
            self._told = None
        failures = status.get("failures")
        if failures == self._failures:
            return
        self._failures = failures
        error = status.get("last_error")
        if server_refused(error) and error != self._told:
            self._told = error
            self.record("InvalidCentralSystemCertificate", error)

    def ntp_stepped(self, seconds):
        """TimeSync's on_step: runs in the network thread, so the event is only posted."""
        if abs(seconds) >= _JUMP_S:
            self.posted.append(("SettingSystemTime", "NTP: system clock moved by %+d s"
                                % seconds))

    def config_changed(self, name, _):
        if name in SECURITY_KEYS:
            self.record("ReconfigurationOfSecurityParameters", "ChangeConfiguration " + name)


def server_refused(error):
    """Whether a transport last_error is the TLS handshake refusing the server's certificate:
    MicroPython raises mbedTLS's verification flags as a ValueError carrying their text
    (extmod/modtls_mbedtls.c); without that text, the error code's string says so."""
    return bool(error) and (error.startswith("ValueError: ")
                            or "Certificate verification failed" in error)


# -- ExtendedTriggerMessage ------------------------------------------------------------------


def extended_trigger(cp, p):
    what = p["requestedMessage"]
    if what == "SignChargePointCertificate":
        return {"status": "NotImplemented"}  # no key pair or CSR is made on the device
    cid = p.get("connectorId")
    if cid is not None and cid != 0 and cp.connector(cid) is None:
        return {"status": "Rejected"}
    if what == "LogStatusNotification":
        cp.call(what, _current(getattr(cp, "diagnostics", None), "log_status"))
    elif what == "FirmwareStatusNotification":
        # the whitepaper's: the signed update's status, Idle while none is under way
        cp.call("SignedFirmwareStatusNotification",
                _current(getattr(cp, "firmware", None), "signed_status"))
    else:  # BootNotification, Heartbeat, MeterValues, StatusNotification: as TriggerMessage
        return remote.trigger_message(cp, p)
    return _ACCEPTED


def _current(module, name):
    # module.<name>() gives a status, or the whole payload (with its requestId); no such
    # module or method: nothing is under way, Idle
    get = getattr(module, name, None)
    status = get() if get is not None else "Idle"
    return status if isinstance(status, dict) else {"status": status}
