"""The charge point's own key and certificate (OCPP 1.6 security whitepaper, edition 3):
ExtendedTriggerMessage(SignChargePointCertificate), SignCertificate, CertificateSigned, and
the renewal of the client certificate before it expires. A feature (`cp.identity`) that keeps
only its state, its keys and a tick that tells whether there is work; the work (key, request,
chain check, the renewal check, the answer to CertificateSigned) is chargepoint.model.
enrolment, imported for it and dropped after.

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
from chargepoint.model import Feature
from chargepoint.ocpp.config import INT, STR


class Identity(Feature):
    """Needs "charge_point_id" (the identity the charger connects with: the request's CN).
    Services it uses when given: "log", "ca_certificates" (config.json's CA),
    "client_certificate" (() -> the DER of config.json's client certificate, or None),
    "renew" (() -> True when the link renews the certificate itself)."""
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
        # () -> whether the link renews the certificate itself (MqttTransport.renew: AWS IoT
        # fleet provisioning); None: renewal asks the Central System (SignCertificate)
        self.renew = services.get("renew")
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
        from chargepoint.model import enrolment

        try:
            return enrolment.signed(self, p["certificateChain"])
        finally:
            if self.work is None:
                enrolment.drop()

    def tick(self):
        """Every loop: enrolment's tick() when there is something to do (a link that fell
        back, work under way, a renewal check due, a request wanted), else nothing."""
        cp = self.cp
        if self.work is None:
            status = cp.transport.status
            if ((self.fallback_seen or not status.get("fallback") or not status.get("connects"))
                    and (cp.registration != "Accepted"
                         or (self.check_at is not None and cp.clock.since(self.check_at) < 0
                             and (self.wanted is None or self.asking)))):
                return
        from chargepoint.model import enrolment

        try:
            enrolment.tick(self)
        finally:
            if self.work is None:  # kept while a request or a chain is worked on
                enrolment.drop()

    def answered(self, payload):
        self.asking = False
        self.say("SignCertificate: %s" % payload.get("status"))

    def unanswered(self, code, _):
        self.asking = False
        self.say("SignCertificate not answered: %s" % code)

    def say(self, line):
        if self.log is not None:
            self.log.write("identity", line)
