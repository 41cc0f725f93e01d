"""AWS IoT fleet provisioning by claim: a charger that ships with the shared claim
certificate only makes its own key and has it certified through AWS's MQTT API, then
connects as its own thing (config.json `mqtt.provision_template`; chargepoint.app).

Run by the MQTT transport's network thread (chargepoint.transport.mqtt) on the link of the
claim certificate, before any OCPP: the engine sees the link down meanwhile, so the charger
works offline (its messages wait on flash). The steps, each kept on flash before the next:
1. The P-256 key, made on the device ("idkey.new", chargepoint.model.enrolment: the same
   pending key as for an OCPP SignCertificate), and a PKCS#10 request for it, subject CN the
   charger's id. The arithmetic runs here in slices of a few ms (chargepoint.crypto.Work).
2. CreateCertificateFromCsr: {"certificateSigningRequest"} to
   $aws/certificates/create-from-csr/json; /accepted gives the certificate, its id and an
   ownership token, kept as "claim" {"cert", "token", "id"} (the certificate is not active
   until its thing is registered).
3. RegisterThing: {"certificateOwnershipToken", "parameters": {"SerialNumber": id}} to
   $aws/provisioning-templates/<template>/provision/json; /accepted names the thing.
4. The key and certificate become the identity ("identity", written at once, as
   enrolment.adopt() writes it), then "claim" and the pending key go: the transport
   reconnects with them, and the claim certificate is not used again while that record is
   there (a factory reset, removing data/, provisions again).

A power cut at any point leaves the claim identity (steps 1-3: the next boot goes on from
the last record kept; a certificate never registered is not active) or the new one (step 4),
never none. A request not answered in _RESEND_MS is sent again; a rejection is logged and,
after a pause doubling from _RETRY_FIRST_MS to _RETRY_CAP_MS, provisioning starts again from
step 2 (a RegisterThing refused: the token may have expired; its certificate is dropped).

Several chargers with the same claim certificate may be waiting at once: AWS answers the
device that asked, but a response another device's request brought is recognised and left
alone (a certificate not for our key, a thing not our id).
"""
import binascii
import json

from micropython import const

from chargepoint.platform.clock import ticks_add, ticks_diff

CSR_TOPIC = "$aws/certificates/create-from-csr/json"
RECORD = "claim"
_RESEND_MS = const(10000)
_RETRY_FIRST_MS = const(2000)
_RETRY_CAP_MS = const(600000)
_SLICE_MS = const(5)  # crypto work per turn of the network thread
_POLL_MS = const(25)  # the transport's sleep on the socket when there is nothing to do


class Claim:
    """`store`: chargepoint.platform.store; `template`: the provisioning template's name;
    `serial`: the charger's id (CN of its request, SerialNumber, the thing's name);
    `ticks_ms`: the clock; `say`: a line for the log; `context`: (certificate DER, key DER)
    -> the TLS context presenting them (chargepoint.transport.tls)."""

    def __init__(self, store, template, serial, ticks_ms, say=print, context=None):
        self.store = store
        self._context = context
        self.serial = serial
        self.register_topic = "$aws/provisioning-templates/%s/provision/json" % template
        self._ticks = ticks_ms
        self._say = say
        self.state = "start"  # "request" (making it), "csr", "register" (waiting), "done"
        self.work = None
        self.outgoing = None  # (topic, payload) for the transport to publish
        self._sent = None  # (ticks, topic, payload) of the request waiting for its answer
        self._pause_until = None
        self._pause_ms = 0
        self.identity = None  # (certificate DER, key DER) once provisioned
        self.thing = None
        self.rejections = 0

    def topics(self):
        """What to subscribe to on the claim link."""
        out = []
        for base in (CSR_TOPIC, self.register_topic):
            out += [(base + "/accepted").encode(), (base + "/rejected").encode()]
        return out

    def link(self, client):
        """A new link (umqtt's client, connected): the answers subscribed to, and a request
        sent on the last one, unanswered, goes again (its answer, if any, went to a session
        that is no more)."""
        for topic in self.topics():
            client.subscribe(topic, 1)
        sent = self._sent
        if sent is not None and self.outgoing is None:
            self.outgoing = sent[1], sent[2]

    def turn(self, transport, client):
        """A turn of the MQTT transport's network thread (chargepoint.transport.mqtt) while
        provisioning goes on: a step, its request published, and on the claim link the
        answers read; how long the thread may sleep (ms), or None when the transport goes
        on with its frames (a renewal on the charger's own link)."""
        busy = self.step()
        if self.outgoing is not None:
            transport._publish(client, self.outgoing[1], self.outgoing[0].encode())
            self.sent()
            transport.keepalive_policy.sent(self._ticks())
        if self.done:
            cert, key = self.identity
            from chargepoint.ocpp import x509

            # the link closes (the persistent session stays), and the next connection
            # presents the new certificate
            transport.claim = None
            transport._renewing = False
            transport.close()
            transport._fresh = True  # what the session kept meanwhile is not stale
            transport._link.context = self._context(cert, key)
            status = transport.status
            status["certificate_serial"] = x509.Certificate(cert).serial
            status["identity"] = "own"
            status["state"] = "backoff"
            from chargepoint.model import unload

            unload("chargepoint.ocpp", "x509")
            unload("chargepoint.transport", "claim")
            return 0
        if transport.status["identity"] != "claim":
            return None
        while client.check_msg() is not None:
            pass
        transport._note_rx()
        client.sock.flush()
        return 0 if busy else _POLL_MS

    @property
    def done(self):
        return self.state == "done"

    def step(self):
        """A turn of the network thread: True while there is work to go on with at once."""
        now = self._ticks()
        if self._pause_until is not None:
            if ticks_diff(self._pause_until, now) > 0:
                return False
            self._pause_until = None
        state = self.state
        if state == "start":
            self._start()
            return True
        if state == "request":
            return self._slices(now)
        sent = self._sent
        if sent is not None and ticks_diff(now, sent[0]) >= _RESEND_MS:
            self._say("claim: no answer on %s: sent again" % sent[1])
            self.outgoing = sent[1], sent[2]
        return False

    def sent(self):
        """The transport published `outgoing`."""
        topic, payload = self.outgoing
        self.outgoing = None
        self._sent = self._ticks(), topic, payload

    def _start(self):
        from chargepoint.model.enrolment import PENDING

        record = self.store.read(RECORD)
        if record and self.store.read(PENDING):
            self._say("claim: certificate %s made before: registering its thing"
                      % record.get("id", "?")[:12])
            self._register(record["token"])
            return
        if record:
            self.store.remove(RECORD)  # its key is gone: of no use
        from chargepoint import crypto
        from chargepoint.model import enrolment

        self._say("claim: making this charger's key and certificate request")
        self.work = crypto.Work(enrolment.request_steps(self.store, self.serial, None))
        self.state = "request"

    def _slices(self, start):
        work = self.work
        while not work.step():
            if ticks_diff(self._ticks(), start) >= _SLICE_MS:
                return True
        self.work = None
        from chargepoint.model import enrolment

        enrolment.drop()  # (the work's modules with it)
        if work.error is not None:
            self._rejected("certificate request not made: %s" % work.error)
            return False
        self._publish(CSR_TOPIC, {"certificateSigningRequest": work.result})
        self.state = "csr"
        return False

    def _register(self, token):
        self._publish(self.register_topic, {"certificateOwnershipToken": token,
                                            "parameters": {"SerialNumber": self.serial}})
        self.state = "register"

    def _publish(self, topic, document):
        self.outgoing = topic, json.dumps(document).encode()

    def on_message(self, topic, payload):
        """A PUBLISH on one of topics() (in the network thread, inside umqtt)."""
        try:
            topic = str(topic, "utf-8")
            doc = json.loads(str(payload, "utf-8"))
        except (UnicodeError, ValueError, TypeError):  # TypeError: an Oversize (mqtt)
            return
        if not isinstance(doc, dict):
            return
        state = self.state
        if topic.startswith(CSR_TOPIC + "/") and state == "csr":
            if topic.endswith("/accepted"):
                self._certificate(doc)
            else:
                self._rejected("CreateCertificateFromCsr rejected: %s" % _why(doc))
        elif topic.startswith(self.register_topic + "/") and state == "register":
            if topic.endswith("/accepted"):
                self._registered(doc)
            else:
                self.store.remove(RECORD)
                self._rejected("RegisterThing rejected: %s" % _why(doc))

    def _certificate(self, doc):
        from chargepoint.model.enrolment import PENDING
        from chargepoint.ocpp import x509

        pending = self.store.read(PENDING)
        try:
            blocks = x509.pem_blocks(doc.get("certificatePem") or "")
            ours = blocks and pending and _for_key(blocks[0], pending)
        except (ValueError, IndexError, UnicodeError):
            ours = False
        if not ours:
            return  # another charger's answer on the shared claim
        token = doc.get("certificateOwnershipToken")
        if not isinstance(token, str) or not token:
            self._rejected("CreateCertificateFromCsr accepted without an ownership token")
            return
        cert_id = str(doc.get("certificateId", ""))
        if not self.store.write(RECORD, {"cert": _b64(blocks[0]), "token": token,
                                         "id": cert_id}):
            self._rejected("the flash refused the certificate")
            return
        self._sent = None
        self._pause_ms = 0  # the service is there and answers: a rejection after starts again
        self._say("claim: certificate %s made: registering thing %s"
                  % (cert_id[:12], self.serial))
        self._register(token)

    def _registered(self, doc):
        thing = doc.get("thingName")
        if thing != self.serial:
            return  # another charger's thing
        from chargepoint.model import enrolment

        record = self.store.read(RECORD)
        pending = self.store.read(enrolment.PENDING)
        if not record or not pending:
            self._rejected("the certificate's records are gone")
            return
        cert = binascii.a2b_base64(record["cert"])
        key = binascii.a2b_base64(pending["key"])
        adopted = enrolment.adopt(self.store, [cert])
        enrolment.drop()
        if not adopted:
            self._rejected("the flash refused the new identity")
            return
        self.store.remove(RECORD)
        self._sent = None
        self.thing = thing
        self.identity = cert, key
        self.state = "done"
        self._say("claim: provisioned as thing %s: connecting with its own certificate" % thing)

    def _rejected(self, why):
        self.rejections += 1
        self._sent = None
        self.outgoing = None
        self._pause_ms = min(max(self._pause_ms * 2, _RETRY_FIRST_MS), _RETRY_CAP_MS)
        self._pause_until = ticks_add(self._ticks(), self._pause_ms)
        self.state = "start"
        self._say("claim: %s; again in %d s" % (why, self._pause_ms // 1000))


def _for_key(cert_der, pending):
    """Whether a certificate is for the pending key."""
    from chargepoint.crypto import csr
    from chargepoint.ocpp import x509

    pub = binascii.a2b_base64(pending["pub"])
    xy = int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big")
    return bytes(x509.Certificate(cert_der).public_key_info) == csr.public_key_info(xy)


def _why(doc):
    return "%s %s: %s" % (doc.get("statusCode", "?"), doc.get("errorCode", "?"),
                          doc.get("errorMessage", ""))


def _b64(data):
    return binascii.b2a_base64(data).decode().strip()

