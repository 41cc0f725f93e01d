"""The charge point's own key and certificate: ExtendedTriggerMessage(SignChargePointCertificate),
SignCertificate, CertificateSigned and the renewal (chargepoint.model.identity, enrolment)."""
import base64
import datetime
import sys

import jsonschema
import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import T0, Rig, schema

CP_ID = "CP-0042"
DAY = datetime.timedelta(days=1)
NOW = datetime.datetime.fromtimestamp(T0, datetime.timezone.utc)


def _name(cn, org=None):
    parts = [cx509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        parts.append(cx509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return cx509.Name(parts)


def make_ca(cn="Test CSMS CA", key=None, issuer=None, valid=(NOW - DAY, NOW + 3650 * DAY)):
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer_cert, signer_key = issuer or (None, key)
    cert = (cx509.CertificateBuilder().subject_name(_name(cn))
            .issuer_name(signer_cert.subject if signer_cert else _name(cn))
            .public_key(key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer_key, hashes.SHA256()))
    return cert, key


def issue(csr, ca, valid=(NOW - DAY, NOW + 365 * DAY), public_key=None):
    ca_cert, ca_key = ca
    return (cx509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
            .public_key(public_key or csr.public_key())
            .serial_number(cx509.random_serial_number())
            .not_valid_before(valid[0]).not_valid_after(valid[1])
            .sign(ca_key, hashes.SHA256()))


def pem(*certs):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def ca():
    return make_ca()


def make_rig(ca, files=None, client_certificate=None, renew=None):
    services = {"charge_point_id": CP_ID, "ca_certificates": lambda: [der(ca[0])]}
    if client_certificate is not None:
        services["client_certificate"] = lambda: der(client_certificate)
    if renew is not None:
        services["renew"] = renew
    r = Rig(files=files, services=services)
    r.step()
    return r


def ask(rig):
    """ExtendedTriggerMessage(SignChargePointCertificate); the CSR sent (cryptography's)."""
    p = {"requestedMessage": "SignChargePointCertificate"}
    jsonschema.validate(p, schema("ExtendedTriggerMessage"))
    assert rig.send("ExtendedTriggerMessage", p)[2] == {"status": "Accepted"}
    for _ in range(200):  # the key and the request, a few slices per loop
        rig.step(20)
        if rig.payloads("SignCertificate"):
            break
    text = rig.payloads("SignCertificate")[-1]["csr"]
    return cx509.load_pem_x509_csr(text.encode())


def signed(rig, chain):
    p = {"certificateChain": chain}
    jsonschema.validate(p, schema("CertificateSigned"))
    answer = rig.send("CertificateSigned", p)[2]
    jsonschema.validate(answer, schema("CertificateSignedResponse"))
    for _ in range(200):
        rig.step(20)
        if rig.cp.identity.work is None:
            break
    return answer["status"]


def events(rig):
    return [(p["type"], p.get("techInfo")) for p in rig.payloads("SecurityEventNotification")]


def test_trigger_makes_a_key_and_sends_a_signed_request_for_it(ca):
    rig = make_rig(ca)
    rig.send("ChangeConfiguration", {"key": "CpoName", "value": "Example CPO"})
    csr = ask(rig)
    assert csr.is_signature_valid
    assert csr.subject == _name(CP_ID, "Example CPO")
    assert isinstance(csr.public_key().curve, ec.SECP256R1)
    key = base64.b64decode(rig.store.read("idkey.new")["key"])
    mine = serialization.load_der_private_key(key, None)  # SEC 1, as mbedTLS takes it
    assert mine.public_key().public_numbers() == csr.public_key().public_numbers()
    assert "chargepoint.model.enrolment" not in sys.modules  # dropped after the work
    assert "chargepoint.crypto.p256" not in sys.modules


def test_request_without_cpo_name_has_the_common_name_only(ca):
    csr = ask(make_rig(ca))
    assert csr.subject == _name(CP_ID)


def test_second_request_is_for_the_same_key(ca):
    rig = make_rig(ca)
    first = ask(rig)
    second = ask(rig)
    assert first.public_key().public_numbers() == second.public_key().public_numbers()


def test_certificate_for_our_key_chained_to_the_trusted_root_is_stored(ca):
    rig = make_rig(ca)
    csr = ask(rig)
    cert = issue(csr, ca)
    assert signed(rig, pem(cert)) == "Accepted"
    record = rig.store.read("identity")
    assert base64.b64decode(record["cert"]) == der(cert)
    assert record["not_after"] == int(cert.not_valid_after_utc.timestamp())
    assert rig.store.read("idkey.new") is None
    assert events(rig)[-1][0] == "ReconfigurationOfSecurityParameters"
    assert "chargepoint.model.enrolment" not in sys.modules


def test_chain_through_an_intermediate_is_taken(ca):
    rig = make_rig(ca)
    sub = make_ca("Test sub CA", issuer=ca)
    cert = issue(ask(rig), sub)
    assert signed(rig, pem(cert, sub[0])) == "Accepted"
    assert rig.store.read("identity")["chain"] == [base64.b64encode(der(sub[0])).decode()]


def test_certificate_for_another_key_is_rejected(ca):
    rig = make_rig(ca)
    csr = ask(rig)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert signed(rig, pem(issue(csr, ca, public_key=other))) == "Rejected"
    assert events(rig)[-1][0] == "InvalidChargePointCertificate"
    assert "not for this charge point's key" in events(rig)[-1][1]
    assert rig.store.read("identity") is None


def test_certificate_of_an_unknown_issuer_is_rejected(ca):
    rig = make_rig(ca)
    cert = issue(ask(rig), make_ca("Someone else"))
    assert signed(rig, pem(cert)) == "Rejected"
    assert events(rig)[-1][0] == "InvalidChargePointCertificate"
    assert rig.store.read("identity") is None


def test_forged_signature_under_a_trusted_name_is_found_after_the_answer(ca):
    rig = make_rig(ca)
    forger = make_ca("Test CSMS CA")  # the same name, another key
    cert = issue(ask(rig), forger)
    assert signed(rig, pem(cert)) == "Accepted"  # what can be told at once
    assert events(rig)[-1][0] == "InvalidChargePointCertificate"
    assert "signature" in events(rig)[-1][1]
    assert rig.store.read("identity") is None
    assert rig.store.read("idkey.new") is not None  # the key waits for a good certificate


def test_expired_certificate_is_rejected(ca):
    rig = make_rig(ca)
    cert = issue(ask(rig), ca, valid=(NOW - 400 * DAY, NOW - DAY))
    assert signed(rig, pem(cert)) == "Rejected"
    assert "not valid now" in events(rig)[-1][1]


@pytest.mark.parametrize("text", ["not a certificate", "-----BEGIN CERTIFICATE-----\n!!\n"
                                  "-----END CERTIFICATE-----\n",
                                  "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"])
def test_chain_that_is_not_pem_certificates_is_rejected(ca, text):
    rig = make_rig(ca)
    ask(rig)
    assert signed(rig, text) == "Rejected"
    assert events(rig)[-1][0] == "InvalidChargePointCertificate"


def test_chain_while_one_is_checked_is_rejected(ca):
    rig = make_rig(ca)
    cert = pem(issue(ask(rig), ca))
    assert rig.send("CertificateSigned", {"certificateChain": cert})[2] == {"status": "Accepted"}
    assert rig.cp.identity.work is not None  # its signature checked over the next loops
    assert rig.send("CertificateSigned", {"certificateChain": cert})[2] == {"status": "Rejected"}
    for _ in range(200):
        rig.step(20)
    assert rig.store.read("identity") is not None  # the first one went through
    assert ("InvalidChargePointCertificate", "CertificateSigned while a chain is worked on") \
        in events(rig)


def test_certificate_nobody_asked_for_is_rejected(ca):
    rig = make_rig(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (cx509.CertificateSigningRequestBuilder().subject_name(_name(CP_ID))
           .sign(key, hashes.SHA256()))
    assert signed(rig, pem(issue(csr, ca))) == "Rejected"


def test_the_private_key_never_leaves_the_charge_point(ca):
    rig = make_rig(ca)
    rig.send("ChangeConfiguration", {"key": "CpoName", "value": "Example CPO"})
    cert = issue(ask(rig), ca)
    assert signed(rig, pem(cert)) == "Accepted"
    rig.send("GetConfiguration", {})
    key = base64.b64decode(rig.store.read("identity")["key"])
    d = serialization.load_der_private_key(key, None).private_numbers().private_value
    secrets = [key.hex(), base64.b64encode(key).decode(), "%x" % d, str(d),
               base64.b64encode(d.to_bytes(32, "big")).decode()[:40]]
    for frame in rig.transport.sent + [str(f) for f in rig.frames]:
        for secret in secrets:
            assert secret.lower() not in frame.lower()


def test_renewal_asks_for_a_certificate_when_the_one_in_use_ends_soon(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (cx509.CertificateSigningRequestBuilder().subject_name(_name(CP_ID))
           .sign(key, hashes.SHA256()))
    ending = issue(csr, ca, valid=(NOW - 300 * DAY, NOW + 20 * DAY))
    rig = make_rig(ca, client_certificate=ending)
    for _ in range(200):
        rig.step(20)
    assert len(rig.payloads("SignCertificate")) == 1  # 20 days left, 30 asked for
    rig.run(3600)
    assert len(rig.payloads("SignCertificate")) == 1  # not again before a day


def test_renewal_goes_through_fleet_provisioning_on_a_link_that_can(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (cx509.CertificateSigningRequestBuilder().subject_name(_name(CP_ID))
           .sign(key, hashes.SHA256()))
    ending = issue(csr, ca, valid=(NOW - 300 * DAY, NOW + 20 * DAY))
    asked = []  # a link of a charger provisioned by claim
    rig = make_rig(ca, client_certificate=ending, renew=lambda: asked.append(1) or True)
    for _ in range(200):
        rig.step(20)
    assert asked == [1] and rig.payloads("SignCertificate") == []
    rig.run(3600)
    assert asked == [1]  # not again before a day


def test_no_renewal_while_the_certificate_has_long_to_run(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (cx509.CertificateSigningRequestBuilder().subject_name(_name(CP_ID))
           .sign(key, hashes.SHA256()))
    rig = make_rig(ca, client_certificate=issue(csr, ca))
    for _ in range(50):
        rig.step(20)
    assert rig.payloads("SignCertificate") == []
    rig.send("ChangeConfiguration", {"key": "CertificateRenewalDays", "value": "400"})
    rig.step(86400000)
    for _ in range(200):
        rig.step(20)
    assert len(rig.payloads("SignCertificate")) == 1  # the next day's check


def test_renewal_of_the_stored_identity(ca):
    rig = make_rig(ca)
    cert = issue(ask(rig), ca, valid=(NOW - DAY, NOW + 10 * DAY))
    assert signed(rig, pem(cert)) == "Accepted"
    files = rig.files
    rig = make_rig(ca, files=files)  # the next boot checks at once
    for _ in range(200):
        rig.step(20)
    assert len(rig.payloads("SignCertificate")) == 1


# -- the TLS link's fallback, and the feature's verdict on it ---------------------------------


class _FakeSocket:
    def settimeout(self, s):
        pass

    def setsockopt(self, *a):
        pass


class _Context:
    def __init__(self, error=None):
        self.error = error
        self.wrapped = 0

    def wrap_socket(self, sock, server_hostname=None):
        self.wrapped += 1
        if self.error is not None:
            raise self.error
        return sock


def test_link_falls_back_when_the_server_refuses_our_own_certificate():
    from chargepoint.transport.tls import TlsLink

    ours, provisioned = _Context(OSError(-30592, "SSL - A fatal alert message was received")), \
        _Context()
    link = TlsLink(ours, fallback=lambda: provisioned)
    for _ in range(2):
        with pytest.raises(OSError):
            link.wrap_socket(_FakeSocket())
    assert link.fell_back == "TLS handshake failed 2 times (last: -30592)"
    link.wrap_socket(_FakeSocket())
    assert (ours.wrapped, provisioned.wrapped) == (2, 1)


def test_link_falls_back_when_the_server_closes_on_our_certificate():
    from chargepoint.transport.tls import TlsLink

    link = TlsLink(_Context(OSError(32)), fallback=lambda: _Context())
    with pytest.raises(OSError):
        link.wrap_socket(_FakeSocket())
    assert link.fell_back is None  # once could be the network
    with pytest.raises(OSError):
        link.wrap_socket(_FakeSocket())
    assert link.fell_back == "TLS handshake failed 2 times (last: 32)"


@pytest.mark.parametrize("error", [OSError(110), ValueError("server refused")])
def test_link_keeps_its_certificate_on_timeouts_and_a_refused_server(error):
    from chargepoint.transport.tls import TlsLink

    ours = _Context(error)
    link = TlsLink(ours, fallback=lambda: _Context())
    for _ in range(3):
        with pytest.raises(type(error)):
            link.wrap_socket(_FakeSocket())
    assert link.fell_back is None and link.context is ours


def test_link_never_falls_back_once_its_certificate_got_through():
    from chargepoint.transport.tls import TlsLink

    ours = _Context()
    link = TlsLink(ours, fallback=lambda: _Context())
    link.wrap_socket(_FakeSocket())
    ours.error = OSError(-30592)
    with pytest.raises(OSError):
        link.wrap_socket(_FakeSocket())
    assert link.fell_back is None and link.context is ours


def test_fallback_that_connected_marks_the_identity_refused(ca):
    from chargepoint.app import own_identity

    rig = make_rig(ca)
    assert signed(rig, pem(issue(ask(rig), ca))) == "Accepted"
    assert own_identity(rig.store) is not None
    rig.transport.status.update({"fallback": "TLS handshake failed 2 times (last: -30592)", "connects": 0})
    rig.step()
    assert not rig.store.read("identity").get("refused")  # not connected yet: maybe the network
    rig.transport.status["connects"] = 1
    rig.step()
    assert rig.store.read("identity")["refused"] == "TLS handshake failed 2 times (last: -30592)"
    assert own_identity(rig.store) is None  # the next boot presents config.json's
    kind, why = events(rig)[-1]
    assert kind == "InvalidChargePointCertificate" and "refused by the server" in why


# -- on MicroPython: the key made there, loaded by mbedTLS, a mutual-TLS handshake ------------


@pytest.fixture(scope="module")
def probe():
    import json
    import os
    import subprocess

    from conftest import ROOT
    from tools import twin

    exe = twin.ensure(stock=True)  # lib/ as source: compiled at import, hence the heap size
    env = dict(os.environ, MICROPYPATH=".frozen:" + os.path.join(ROOT, "lib"))

    def run(*args):
        r = subprocess.run([exe, "-X", "heapsize=400000",
                            os.path.join(ROOT, "tests", "mpy", "identity_probe.py")]
                           + [str(a) for a in args],
                           capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout.splitlines()[-1])

    return run


class MutualTlsServer:
    """A TLS server on loopback that asks for a client certificate issued by `client_ca`."""

    def __init__(self, cert, key, client_ca, connections):
        import socket
        import ssl
        import threading

        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(client_ca)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.got = []  # (client CN, what it sent)
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    def _serve(self, connections):
        import ssl

        for _ in range(connections):
            conn, _ = self.sock.accept()
            conn.settimeout(10)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    cn = dict(x[0] for x in peer["subject"])["commonName"]
                    self.got.append((cn, tls.recv(4)))
            except (OSError, ssl.SSLError):
                pass  # the client's certificate refused

    def close(self):
        self.thread.join(15)
        self.sock.close()


def test_key_made_on_micropython_is_signed_loaded_and_presented(probe, tmp_path):
    """The real proof: the twin makes the key and the request, takes the chain the CA issues,
    and mbedTLS presents the pair at a handshake with a server asking for a client
    certificate; a server that does not take it makes the link fall back to config.json's."""
    import time

    from tools import certs

    pki = str(tmp_path / "pki")
    ca_pem, ca_key_path = certs.make_ca(pki)
    server_cert, server_key = certs.issue(pki, "server", client=False)
    old_cert, old_key = certs.issue(pki, CP_ID)  # config.json's (provisioned) pair
    data = tmp_path / "data"
    data.mkdir()
    made = probe("csr", data, CP_ID, "Example CPO")
    csr = cx509.load_pem_x509_csr(made["csr"].encode())
    assert csr.is_signature_valid and csr.subject == _name(CP_ID, "Example CPO")
    with open(ca_pem, "rb") as f:
        ca_cert = cx509.load_pem_x509_certificate(f.read())
    with open(ca_key_path, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = issue(csr, (ca_cert, ca_key), valid=(now - DAY, now + 365 * DAY))
    chain = tmp_path / "chain.pem"
    chain.write_text(pem(cert))
    assert probe("signed", data, int(time.time()), chain, ca_pem) == {"why": None}

    server = MutualTlsServer(server_cert, server_key, ca_pem, 1)
    got = probe("tls", data, server.port, ca_pem, 1)
    server.close()
    assert got == {"attempts": ["ok"], "fell_back": None, "identity": True}
    assert server.got == [(CP_ID, b"ping")]

    # a server that trusts only the provisioned certificate's issuer, not the new one's
    other = str(tmp_path / "other")
    other_ca, _ = certs.make_ca(other, "Provisioning CA")
    provisioned_cert, provisioned_key = certs.issue(other, CP_ID)
    server = MutualTlsServer(server_cert, server_key, other_ca, 3)
    got = probe("tls", data, server.port, ca_pem, 3, provisioned_cert, provisioned_key)
    server.close()
    assert got["attempts"][2] == "ok" and "ok" not in got["attempts"][:2], got
    assert got["fell_back"].startswith("TLS handshake failed 2 times"), got
    assert server.got == [(CP_ID, b"ping")]


def test_cpo_name_longer_than_an_organization_name_may_be_is_rejected(ca):
    rig = make_rig(ca)
    msg = rig.send("ChangeConfiguration", {"key": "CpoName", "value": "x" * 65})
    assert msg[2] == {"status": "Rejected"}
