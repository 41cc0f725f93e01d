"""The charge point's own key and certificate (OCPP 1.6 security whitepaper, edition 3):
ExtendedTriggerMessage(SignChargePointCertificate), SignCertificate, CertificateSigned, and
the renewal of the client certificate before it expires. A feature (`cp.identity`); the work
(key, request, chain check) is chargepoint.model.enrolment, imported for it and dropped after.

The flow. A trigger (or the renewal check) asks for a request: the P-256 key is made on the
device the first time (kept on flash, "idkey.new", until a certificate for it comes), the
PKCS#10 request built and signed, in slices of a few milliseconds per loop
(chargepoint.crypto.Work), then SignCertificate {"csr": PEM} goes through the outbox. The
subject: CN the charge point's identity (its id, what the Central System knows it by; the
whitepaper's "serial number" of the charge point is that identity here), O the `CpoName`
configuration key when set. CertificateSigned {"certificateChain"} is then checked and, when
good, the certificate with its key becomes the identity the TLS layer presents from the next
connection (chargepoint.app, chargepoint.transport.tls). Should the server refuse it at the
TLS handshake before it ever connected with it, the link falls back to config.json's
certificate (tls.TlsLink); once connected so, the identity is marked refused (the next boots
present config.json's) and InvalidChargePointCertificate recorded.

Choices where the specification leaves room: CertificateSigned must be answered at once, and
checking a signature takes ~0.4 s on an ESP32 (README "Public-key arithmetic"). So the answer
says what can be told without that arithmetic: Rejected (and InvalidChargePointCertificate,
techInfo why) for a chain that is not PEM certificates, whose first certificate is not for our
pending key, one not valid now (or the clock unknown), or one not named as issued by the next
or the last by a trusted root (config.json's CA, installed CentralSystemRoot and
ManufacturerRoot certificates); else Accepted, and the signatures are checked in slices after:
one that fails is InvalidChargePointCertificate and the certificate is not used.

Renewal: `CertificateRenewalDays` (default 30; 0 never): once BootNotification is accepted, and
every day after, the client certificate in use (the identity, else config.json's, the
"client_certificate" service) is looked at; ending within that many days, a request is made
as for a trigger. A SignCertificate refused or unanswered is not repeated before the next
day's check (or a new trigger).
"""
from micropython import const

from chargepoint.model import Feature, unload
from chargepoint.ocpp.config import INT, STR

_EVENT = "InvalidChargePointCertificate"
_DAY_MS = const(86400000)
_SLICE_MS = const(4)  # slices started per loop for up to this long (as a signed update's)
_SLICES = const(32)


class Identity(Feature):
    """Needs "charge_point_id" (the identity the charger connects with: the request's CN).
    Services it uses when given: "log", "ca_certificates" (config.json's CA),
    "client_certificate" (() -> the DER of config.json's client certificate, or None)."""
    name = "identity"
    needs = ("charge_point_id",)
    keys = (("CertificateRenewalDays", INT, 30, 0),)
    triggers = ("SignChargePointCertificate",)
    routes = ("CertificateSigned",)

    def __init__(self, cp, services):
        self.cp = cp
        # X.520's upper bound for an organizationName
        cp.config.declare("CpoName", STR, "", 0, lambda v: len(v) <= 64)
        self.common_name = services["charge_point_id"]
        self.log = services.get("log")
        self.ca_certificates = services.get("ca_certificates")
        self.client_certificate = services.get("client_certificate")
        self.work = None  # chargepoint.crypto.Work under way
        self.job = None  # what it is: "request" or "chain"
        self.blocks = None  # the DER of the chain whose signatures are being checked
        self.wanted = None  # why a request is to be made ("trigger", "renewal")
        self.asking = False  # a SignCertificate in the outbox or waiting for its answer
        self.check_at = None  # ticks of the next renewal check; None: at the first Accepted
        self.fallback_seen = False

    def trigger(self, message, cid, extended):
        self.wanted = "ExtendedTriggerMessage"

    def certificate_signed(self, p, stale):
        if self.work is not None:  # a request being made, or a chain checked: one at a time
            self.cp.security.record(_EVENT, "CertificateSigned while a %s is worked on"
                                    % self.job)
            return {"status": "Rejected"}
        from chargepoint.model import enrolment

        why, left = enrolment.examine(self.cp.store, self.cp.clock.wall(),
                                      p["certificateChain"], self._trusted())
        if why is not None:
            _drop()
            self.cp.security.record(_EVENT, why)
            return {"status": "Rejected"}
        from chargepoint import crypto

        self.job = "chain"
        self.blocks = left[1]
        self.work = crypto.Work(enrolment.signatures_steps(left[0]))
        return {"status": "Accepted"}

    def _trusted(self):
        from chargepoint.model import certificates

        store = self.cp.store
        found = certificates.roots(store) + certificates.roots(store,
                                                               "ManufacturerRootCertificate")
        unload("chargepoint.model", "certificates")
        if self.ca_certificates is not None:
            found += self.ca_certificates()
        return found

    def tick(self):
        cp = self.cp
        status = cp.transport.status
        if status.get("fallback") and status.get("connects") and not self.fallback_seen:
            self._refused(status["fallback"])
        if self.work is not None:
            self._slices()
            return
        if cp.registration != "Accepted":
            return
        if self.check_at is None or cp.clock.since(self.check_at) >= 0:
            self.check_at = cp.clock.after(_DAY_MS)
            if self._renewal_due():
                self.wanted = "renewal"
        if self.wanted is not None and not self.asking:
            self._say("making a certificate request (%s)" % self.wanted)
            self.wanted = None
            from chargepoint.model import enrolment
            from chargepoint import crypto

            self.job = "request"
            self.work = crypto.Work(enrolment.request_steps(
                cp.store, self.common_name, cp.config.get("CpoName")))

    def _slices(self):
        work = self.work
        clock = self.cp.clock
        start = clock.ticks_ms()
        for _ in range(_SLICES):
            if work.step():
                break
            if clock.since(start) >= _SLICE_MS:
                return
        else:
            return
        self.work = None
        job = self.job
        self.job = None
        if job == "request":
            _drop()
            if work.error is not None:
                self._say("certificate request not made: %s" % work.error)
                return
            self.asking = True
            self.cp.call("SignCertificate", {"csr": work.result}, self._answered,
                         self._unanswered)
            return
        blocks = self.blocks
        self.blocks = None
        if work.result is not True:
            _drop()
            self.cp.security.record(_EVENT, "certificate chain: a signature does not check "
                                            "out%s" % (": %s" % work.error if work.error else ""))
            return
        from chargepoint.model import enrolment

        try:
            adopted = enrolment.adopt(self.cp.store, blocks)
        finally:
            _drop()
        if adopted:
            self._say("new charge point certificate stored: presented from the next connection")
            self.cp.security.record("ReconfigurationOfSecurityParameters",
                                    "CertificateSigned: new charge point certificate")

    def _refused(self, why):
        """The TLS link fell back to config.json's certificate and connected with it: ours
        was refused by the server; the next boots do not present it (chargepoint.app)."""
        self.fallback_seen = True
        store = self.cp.store
        record = store.read("identity")
        if record and not record.get("refused"):
            record["refused"] = why
            store.write("identity", record)
        self.cp.security.record(_EVENT, "serial %s refused by the server: %s; config.json's "
                                "certificate in use" % ((record or {}).get("serial"), why))

    def _answered(self, payload):
        self.asking = False
        self._say("SignCertificate: %s" % payload.get("status"))

    def _unanswered(self, code, _):
        self.asking = False
        self._say("SignCertificate not answered: %s" % code)

    def _renewal_due(self):
        days = self.cp.config.get("CertificateRenewalDays")
        wall = self.cp.clock.wall()
        if days <= 0 or wall is None:
            return False
        record = self.cp.store.read("identity")
        end = None
        if record and not record.get("refused"):
            end = record.get("not_after")
        elif self.client_certificate is not None:
            der = self.client_certificate()
            if der:
                from chargepoint.ocpp import x509

                try:
                    end = x509.Certificate(der).not_after
                except (ValueError, IndexError):
                    end = None
                unload("chargepoint.ocpp", "x509")
        return end is not None and end - wall <= days * 86400

    def _say(self, line):
        if self.log is not None:
            self.log.write("identity", line)


def _drop():
    """Give back the heap of the work's modules."""
    for name in ("der", "p256", "ecdsa", "rsa", "keys", "csr"):
        unload("chargepoint.crypto", name)
    unload("chargepoint", "crypto")
    unload("chargepoint.model", "enrolment")
    unload("chargepoint.model", "certificates")
    unload("chargepoint.ocpp", "x509")
