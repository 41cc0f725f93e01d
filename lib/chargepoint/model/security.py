"""OCPP 1.6 security extensions (whitepaper edition 3): security events, ExtendedTriggerMessage,
and the routes of certificate management (chargepoint.model.certificates, imported on use).
A feature, `cp.security`, first in the table: the others record their events through it.

Security events (SecurityEventNotification), recorded where the firmware sees them:
  StartupOfTheDevice                 every boot (techInfo: boot number, firmware version)
  ResetOrReboot                      every reboot (a reboot listener of the charge point):
                                     techInfo its reason (Reset.req (Hard), a firmware
                                     update's...), else "Hard/Soft reboot"; a soft reset at
                                     the console
  SettingSystemTime                  the wall clock set from BootNotification/Heartbeat (the
                                     first time in a boot, or moved by >= 10 s: a clock
                                     listener), and NTP moving the RTC by >= 10 s (a step
                                     listener of the "timesync" service)
  InvalidCentralSystemCertificate    the TLS handshake refused the server: the transport's
                                     status["last_error"] is mbedTLS's verdict; once per
                                     distinct error until a connect succeeds
  FailedToAuthenticateAtCentralSystem  the WebSocket's upgrade answered HTTP 401; the same
                                     way
  ReconfigurationOfSecurityParameters  InstallCertificate/DeleteCertificate done, or a
                                     ChangeConfiguration of a key in SECURITY_KEYS
  FirmwareUpdated                    the firmware on trial accepted (chargepoint.model.firmware)
  InvalidFirmwareSigningCertificate  a SignedUpdateFirmware's signing certificate refused,
  InvalidFirmwareSignature           or its package's signature (chargepoint.model.firmware)
  InvalidFirmwarePackage             not in the whitepaper's list: a package that checked out
                                     but is of another kind or target than this board's;
                                     techInfo the reason (chargepoint.model.firmware says why)
  StoredRecordDamaged                not in the whitepaper's list: a record on flash that did
                                     not check out (chargepoint.platform.store), set aside as
                                     <name>.bad; techInfo its name and why
  StorageWriteFailed                 not in the list either: the flash refused a write (full);
                                     once until a write succeeds again; techInfo the error
  anything else                      `cp.security.record(kind, tech_info)`
Each is also a "security" line of the event log (the "log" service): "<type>: <techInfo>",
what GetLog's SecurityLog uploads (chargepoint.model.getlog).

Delivery: one small store record per event ("sev.<seq>": the payload, its timestamp a clock
marker until sent), so a power cut keeps them; at most 20, past that the oldest goes. One
the flash will not take (full) goes from the RAM through the outbox instead. They
leave one at a time through the charge point's outbox, so only once BootNotification is
Accepted. A CALLERROR (a Central System without the extension says NotImplemented) or a bad
answer drops the event; no answer (offline, timeout) hands it over again 10 s later. Not the
TxQueue: a refused event would be retried TransactionMessageAttempts times while holding up
the StopTransactions behind it, it would count as a transaction message a soft Reset waits
for, and its bound sheds only MeterValues.
"""
from micropython import const

from chargepoint.model import Feature, unload
from chargepoint.ocpp.config import INT, RO
from chargepoint.ocpp.timestamps import iso

_MAX_EVENTS = const(20)
_RETRY_MS = const(10000)
_JUMP_S = const(10)  # a clock moved by less is drift being corrected, not an event
_STORE_MAX = const(4)  # CertificateStoreMaxLength: certificates installed over OCPP
_EVENT = "sev.%d"
# Security events of our own (the whitepaper's list is not closed; type is a CiString50):
# a record on flash found damaged, and a write the flash refused (full, or failing)
DAMAGED_EVENT = "StoredRecordDamaged"
WRITE_FAILED_EVENT = "StorageWriteFailed"

# ChangeConfiguration of one of these is ReconfigurationOfSecurityParameters (whoever declares
# them: none is declared today). The value is never put in techInfo: it may be a secret.
SECURITY_KEYS = ("AdditionalRootCertificateCheck", "AuthorizationKey", "CpoName",
                 "SecurityProfile")


class Security(Feature):
    """Services it uses when given: "log", "ca_certificates" (config.json's CA, listed by
    GetInstalledCertificateIds), "timesync" (NTP's steps)."""
    name = "security"
    keys = (("CertificateStoreMaxLength", INT, _STORE_MAX, RO),)
    routes = ("ExtendedTriggerMessage", "InstallCertificate", "GetInstalledCertificateIds",
              "DeleteCertificate")

    def __init__(self, cp, services):
        self.cp = cp
        self.log = services.get("log")
        self.ca_certificates = services.get("ca_certificates")
        self.seqs = [int(n[4:]) for n in cp.store.names("sev.")]
        self.seqs.sort()
        self.sending = None  # seq of the event handed to the outbox
        self.retry_at = None  # ticks after which an unanswered event is handed over again
        self.posted = []  # (kind, tech_info) from the network thread, recorded by tick()
        self.dropped = 0  # the oldest, past _MAX_EVENTS
        self.refused = 0  # answered with a CALLERROR or a malformed .conf
        self._failures = None  # transport status["failures"] last looked at
        self._connects = None
        self._told = None  # the TLS error last reported, until a connect succeeds
        cp.reboot_listeners.append(self._rebooting)
        cp.clock_listeners.append(self._clock_set)
        cp.config.listeners.append(self._config_changed)
        timesync = services.get("timesync")
        if timesync is not None:
            timesync.step_listeners.append(self.ntp_stepped)
        version = cp.boot_info.get("firmwareVersion")
        self.record("StartupOfTheDevice", "boot %d, firmware %s" % (cp.boot, version or "?"))

    def install_certificate(self, p, stale):
        return self._certificates("install_certificate", p)

    def get_installed_certificate_ids(self, p, stale):
        return self._certificates("installed_ids", p)

    def delete_certificate(self, p, stale):
        return self._certificates("delete_certificate", p)

    def _certificates(self, operation, p):
        # Certificate management is rare, and its modules take about 7.5 KB of heap as .mpy
        # files: they are imported for the request and dropped after it (as app.py drops
        # devconfig).
        from chargepoint.model import certificates

        try:
            return getattr(certificates, operation)(self.cp, p)
        finally:
            unload("chargepoint.model", "certificates")
            unload("chargepoint.ocpp", "x509")

    def extended_trigger_message(self, p, stale):
        # as TriggerMessage, and FirmwareStatusNotification is the signed update's,
        # SignChargePointCertificate chargepoint.model.identity's; what nobody offers is
        # NotImplemented
        return {"status": self.cp.trigger_request(p["requestedMessage"], p.get("connectorId"),
                                                  True)}

    # -- events -------------------------------------------------------------------------------

    def record(self, kind, tech_info=None):
        payload = {"type": kind[:50], "timestamp": self.cp.clock.stamp()}
        line = payload["type"]
        if tech_info:
            payload["techInfo"] = str(tech_info)[:255]
            line += ": " + payload["techInfo"]
        if self.log is not None:
            self.log.write("security", line)
        seqs = self.seqs
        seq = seqs[-1] + 1 if seqs else 1
        store = self.cp.store
        if not store.write(_EVENT % seq, payload):  # the flash is full: from the RAM, once
            self.cp.call("SecurityEventNotification", payload)
            return
        seqs.append(seq)
        while len(seqs) > _MAX_EVENTS:  # the one in flight stays: its answer is due
            store.remove(_EVENT % seqs.pop(1 if seqs[0] == self.sending else 0))
            self.dropped += 1
        self._hand_over()

    def __len__(self):
        return len(self.seqs)

    def _hand_over(self):
        if self.sending is not None or self.retry_at is not None:
            return
        store = self.cp.store
        while self.seqs:
            seq = self.seqs[0]
            payload = store.read(_EVENT % seq, {})
            if isinstance(payload.get("type"), str) and isinstance(payload.get("timestamp"),
                                                                     str):
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

    def tick(self):
        """Every loop: events posted from the network thread, the link's TLS verdicts, and the
        retry of an unanswered event."""
        posted = self.posted
        while posted:
            self.record(*posted.pop(0))
        store = self.cp.store
        damaged = store.damaged
        while damaged:  # records the store found damaged and set aside
            name, why = damaged.pop(0)
            self.record(DAMAGED_EVENT, "%s: %s; set aside as %s.bad" % (name, why, name))
        if store.failed is not None:  # the flash refused a write (once per spell)
            name, error = store.failed
            store.failed = None
            self.record(WRITE_FAILED_EVENT, "%s not written: %s" % (name, error))
        self._watch_link(self.cp.transport.status)
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
        if error == self._told:
            return  # once per distinct error until a connect succeeds
        if server_refused(error):
            self._told = error
            self.record("InvalidCentralSystemCertificate", error)
        elif error and error.startswith("HTTP 401"):  # the WebSocket's Basic auth refused
            self._told = error
            self.record("FailedToAuthenticateAtCentralSystem", error)

    def _rebooting(self, hard, why):
        self.record("ResetOrReboot", why or ("Hard reboot" if hard else "Soft reboot"))

    def _clock_set(self, source, was, now):
        if was is None:
            self.record("SettingSystemTime", "%s: clock set to %s" % (source, iso(now)))
        elif abs(now - was) >= _JUMP_S:
            self.record("SettingSystemTime", "%s: clock moved by %+d s to %s"
                        % (source, now - was, iso(now)))

    def ntp_stepped(self, seconds):
        """NTP moved the RTC: runs in the network thread, so the event is only posted."""
        if abs(seconds) >= _JUMP_S:
            self.posted.append(("SettingSystemTime", "NTP: system clock moved by %+d s"
                                % seconds))

    def _config_changed(self, name, _):
        if name in SECURITY_KEYS:
            self.record("ReconfigurationOfSecurityParameters", "ChangeConfiguration " + name)


def server_refused(error):
    """Whether a transport last_error is the TLS handshake refusing the server's certificate:
    MicroPython raises mbedTLS's verification flags as a ValueError carrying their text
    (extmod/modtls_mbedtls.c); without that text, the error code's string says so."""
    return bool(error) and (error.startswith("ValueError: ")
                            or "Certificate verification failed" in error)
