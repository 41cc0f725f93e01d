"""AWS IoT fleet provisioning by claim, on the local stand-in (tools/broker.py): the MQTT API
a charger holding only the shared claim certificate uses to get its own.

    python3 -m tools.fleetprov --broker 127.0.0.1:8883 --pki STATE/pki --template chargers
    (or: python3 -m tools.broker --state STATE --provision-template chargers)

What it answers, as AWS IoT Core does (its "Device provisioning MQTT API"):
- CreateCertificateFromCsr: {"certificateSigningRequest": PEM} on
  $aws/certificates/create-from-csr/json; /accepted {"certificateId" (SHA-256 of the DER,
  hex), "certificatePem", "certificateOwnershipToken"} (the certificate issued by the
  stand-in's CA for the request's key and subject, clientAuth, `days` long), or /rejected
  {"statusCode", "errorCode", "errorMessage"}: a request unreadable, its signature wrong, its
  key not P-256 or RSA >= 2048 bits.
- RegisterThing: {"certificateOwnershipToken", "parameters"} on
  $aws/provisioning-templates/<template>/provision/json, for a template it knows; /accepted
  {"deviceConfiguration": {}, "thingName"}: the thing is named by the parameter
  SerialNumber (the template "chargers" this tool has: ThingName = SerialNumber); /rejected
  for an unknown, spent-for-another-thing or expired token (`token_ttl`, AWS: one hour), a
  missing or bad SerialNumber.

Where the stand-in cannot be AWS:
- Mosquitto knows a client by its certificate's CN (the CN is its username and client id;
  the ACL is written for CNs), not by the thing a certificate is attached to. So the thing's
  name must be the certificate's CN: the request's subject CN must equal SerialNumber
  (a charger's request says CN = its id, which is both), else RegisterThing is rejected.
- AWS activates a certificate made from a CSR only when its thing is registered; Mosquitto
  takes any certificate of the CA at once. (A charger must not use one before RegisterThing
  was accepted: chargepoint.transport.claim does not.)
- AWS answers on these topics the connection that asked only; Mosquitto sends an answer to
  every claim connection subscribed. A charger recognises its own (the certificate is for its
  key, the thing has its name). And as every claim connection has the claim CN as its client
  id, two chargers provisioning at the same time take the connection from each other; each
  comes back, and asks again (its request unanswered), until both are through.
"""
import argparse
import hashlib
import json
import logging
import re
import secrets
import signal
import ssl
import sys
import threading
import time

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tools import certs

LOG = logging.getLogger("fleetprov")
CREATE_FROM_CSR = "$aws/certificates/create-from-csr/json"
REGISTER_PREFIX = "$aws/provisioning-templates/"
REGISTER_SUFFIX = "/provision/json"
TEMPLATE = "chargers"
TOKEN_TTL_S = 3600.0
_SERIAL = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def _error(status, code, message):
    return {"statusCode": status, "errorCode": code, "errorMessage": message}


class FleetProvisioning:
    """The service, connected to the broker as `client_id` (certs.PROVISIONER_CN) with its
    certificate from the stand-in's PKI in `pki_dir`, answering for `templates`.

    Records, for tests and the CLI's log: `certificates` {certificateId: {"pem", "cn",
    "token", "expires", "thing"}}, `things` {thingName: certificateId}, `events` (one
    (kind, detail) per request: "certificate", "certificate-rejected", "registered",
    "register-rejected"). Faults a test may ask for: `refuse_csr` (an errorMessage: every
    CreateCertificateFromCsr rejected with it while set), `refuse_register` (the same for
    RegisterThing), `silent` ({"csr", "register"}: those requests read, counted in `requests`,
    and not answered)."""

    def __init__(self, host, port, pki_dir, templates=(TEMPLATE,), token_ttl=TOKEN_TTL_S,
                 days=365, client_id=certs.PROVISIONER_CN, clock=time.monotonic):
        self.host, self.port = host, port
        self.pki_dir = pki_dir
        self.templates = tuple(templates)
        self.token_ttl = token_ttl
        self.days = days
        self.clock = clock
        self.certificates = {}
        self.things = {}
        self.events = []
        self.refuse_csr = None
        self.refuse_register = None
        self.silent = set()
        self.requests = []  # "csr" or "register", one per request read
        self.connected = threading.Event()
        self._lock = threading.Lock()
        pki = certs.ensure_pki(pki_dir, csms=None)
        cert, key = pki.client(client_id)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki.ca)
        context.load_cert_chain(cert, key)
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=True, protocol=paho.MQTTv311)
        client.tls_set_context(context)
        client.reconnect_delay_set(0.2, 2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # -- life -----------------------------------------------------------------------------

    def start(self, timeout=10.0):
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise RuntimeError("fleet provisioning: not connected to %s:%d within %.0f s"
                               % (self.host, self.port, timeout))
        return self

    def stop(self):
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            LOG.warning("broker refused the provisioning service: %s", reason_code)
            return
        client.subscribe([(CREATE_FROM_CSR, 1),
                          (REGISTER_PREFIX + "+" + REGISTER_SUFFIX, 1)])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()

    # -- the API --------------------------------------------------------------------------

    def _on_message(self, client, userdata, message):
        topic = message.topic
        try:
            request = json.loads(message.payload)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            answer = _error(400, "InvalidPayload", "payload: %s" % e)
            self._answer(topic, answer)
            return
        if topic == CREATE_FROM_CSR:
            self.requests.append("csr")
            if "csr" not in self.silent:
                self._answer(topic, self._create(request))
        elif topic.startswith(REGISTER_PREFIX) and topic.endswith(REGISTER_SUFFIX):
            self.requests.append("register")
            if "register" not in self.silent:
                template = topic[len(REGISTER_PREFIX):-len(REGISTER_SUFFIX)]
                self._answer(topic, self._register(template, request))

    def _answer(self, topic, answer):
        rejected = "statusCode" in answer
        self._client.publish(topic + ("/rejected" if rejected else "/accepted"),
                             json.dumps(answer), qos=1)

    def _create(self, request):
        pem = request.get("certificateSigningRequest")
        if self.refuse_csr is not None:
            return self._event("certificate-rejected",
                               _error(400, "InvalidParameters", self.refuse_csr))
        if not isinstance(pem, str):
            return self._event("certificate-rejected", _error(
                400, "InvalidParameters", "certificateSigningRequest: a PEM string expected"))
        try:
            csr = x509.load_pem_x509_csr(pem.encode())
            if not csr.is_signature_valid:
                raise ValueError("the request's signature does not check out")
            key = csr.public_key()
            if isinstance(key, ec.EllipticCurvePublicKey):
                if key.curve.name != "secp256r1":
                    raise ValueError("EC key on %s: P-256 expected" % key.curve.name)
            elif not (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048):
                raise ValueError("key: P-256 or RSA of 2048 bits or more expected")
            names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            cn = names[0].value if names else None
            certificate = certs.sign_request(self.pki_dir, pem, self.days)
        except ValueError as e:
            return self._event("certificate-rejected", _error(400, "InvalidCsr", str(e)))
        der = x509.load_pem_x509_certificate(certificate.encode()).public_bytes(Encoding.DER)
        cert_id = hashlib.sha256(der).hexdigest()
        token = secrets.token_urlsafe(48)
        with self._lock:
            self.certificates[cert_id] = {"pem": certificate, "cn": cn, "token": token,
                                          "expires": self.clock() + self.token_ttl,
                                          "thing": None}
        return self._event("certificate", {"certificateId": cert_id,
                                           "certificatePem": certificate,
                                           "certificateOwnershipToken": token}, cn)

    def _register(self, template, request):
        if template not in self.templates:
            return self._event("register-rejected", _error(
                404, "ResourceNotFound", "no provisioning template %r" % template))
        if self.refuse_register is not None:
            return self._event("register-rejected",
                               _error(400, "InvalidParameters", self.refuse_register))
        token = request.get("certificateOwnershipToken")
        parameters = request.get("parameters")
        serial = parameters.get("SerialNumber") if isinstance(parameters, dict) else None
        with self._lock:
            found = [(i, c) for i, c in self.certificates.items() if c["token"] == token]
            if not token or not found:
                return self._event("register-rejected", _error(
                    400, "InvalidCertificateOwnershipToken", "unknown ownership token"))
            cert_id, cert = found[0]
            if self.clock() > cert["expires"]:
                return self._event("register-rejected", _error(
                    400, "InvalidCertificateOwnershipToken", "the ownership token has expired"))
            if not isinstance(serial, str) or not _SERIAL.match(serial):
                return self._event("register-rejected", _error(
                    400, "InvalidParameters", "parameters.SerialNumber missing or invalid"))
            if serial != cert["cn"]:
                return self._event("register-rejected", _error(
                    400, "InvalidParameters", "the stand-in names a thing by its certificate's "
                    "CN: SerialNumber %r, CN %r" % (serial, cert["cn"])))
            if cert["thing"] not in (None, serial):
                return self._event("register-rejected", _error(
                    400, "InvalidCertificateOwnershipToken", "token spent for another thing"))
            cert["thing"] = serial
            self.things[serial] = cert_id
        return self._event("registered", {"deviceConfiguration": {}, "thingName": serial},
                           serial)

    def _event(self, kind, answer, detail=None):
        if detail is None and "errorMessage" in answer:
            detail = answer["errorMessage"]
        self.events.append((kind, detail))
        LOG.info("%s: %s", kind, detail)
        return answer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--broker", required=True, help="HOST:PORT of tools.broker")
    parser.add_argument("--pki", required=True, help="the stand-in's PKI folder (STATE/pki)")
    parser.add_argument("--template", action="append", default=[],
                        help="provisioning template name (repeatable; default %s)" % TEMPLATE)
    parser.add_argument("--token-ttl", type=float, default=TOKEN_TTL_S,
                        help="seconds an ownership token is valid (AWS: 3600)")
    args = parser.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="fleetprov: %(message)s")
    service = FleetProvisioning(host, int(port), args.pki, args.template or (TEMPLATE,),
                                args.token_ttl)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    service.start()
    print("fleet provisioning for template(s) %s on %s" % (", ".join(service.templates),
                                                          args.broker), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        service.stop()


if __name__ == "__main__":
    sys.exit(main())
