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


def make_rig(ca, files=None, client_certificate=None):
    services = {"charge_point_id": CP_ID, "ca_certificates": lambda: [der(ca[0])]}
    if client_certificate is not None:
        services["client_certificate"] = lambda: der(client_certificate)
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
