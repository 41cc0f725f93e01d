"""The stand-in's fleet provisioning by claim (tools/fleetprov.py) and what the claim
certificate may do on the broker (tools/policy.py): AWS IoT's MQTT provisioning API, driven
here by a plain MQTT client holding the claim certificate."""
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker_fixtures import Peer, make_broker, make_pki  # noqa: F401  (fixtures)
from tools import certs, policy
from tools.fleetprov import CREATE_FROM_CSR, FleetProvisioning

REGISTER = "$aws/provisioning-templates/chargers/provision/json"
ARN = "arn:aws:iot:eu-west-1:123456789012:"


@pytest.fixture
def stand_in(make_broker, make_pki):  # noqa: F811
    pki = make_pki(name="fleet-pki")
    broker = make_broker(pki)
    with FleetProvisioning(broker.host, broker.port, pki.dir) as service:
        with Peer(broker, certs.CLAIM_CN).connect() as claim:
            for topic in (CREATE_FROM_CSR, REGISTER):
                assert claim.subscribe(topic + "/+") == [1]
            yield service, claim, broker, pki


def csr(cn, curve=ec.SECP256R1()):
    key = ec.generate_private_key(curve)
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode(), key


def ask(claim, topic, document):
    claim.publish(topic, json.dumps(document))
    got, payload = claim.expect()
    return got[len(topic) + 1:], json.loads(payload)


def test_a_certificate_for_the_request_then_the_thing_registered(stand_in):
    service, claim, broker, pki = stand_in
    pem, key = csr("CP009")
    kind, answer = ask(claim, CREATE_FROM_CSR, {"certificateSigningRequest": pem})
    assert kind == "accepted"
    cert = x509.load_pem_x509_certificate(answer["certificatePem"].encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP009"
    assert len(answer["certificateId"]) == 64 and answer["certificateOwnershipToken"]
    kind, registered = ask(claim, REGISTER, {
        "certificateOwnershipToken": answer["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "CP009"}})
    assert (kind, registered) == ("accepted", {"deviceConfiguration": {},
                                               "thingName": "CP009"})
    assert service.things == {"CP009": answer["certificateId"]}
    # the new certificate connects as the thing, with the charger's rights
    folder = pki.dir + "/CP009-own"
    os.makedirs(folder)
    with open(folder + "/cert.pem", "w") as f:
        f.write(answer["certificatePem"])
    with open(folder + "/key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with Peer(broker, "CP009", cert=(folder + "/cert.pem", folder + "/key.pem")).connect() as cp:
        assert cp.subscribe("CP009/out") == [1]


@pytest.mark.parametrize("document,why", [
    ({"certificateSigningRequest": "not a request"}, "InvalidCsr"),
    ({"certificateSigningRequest": 7}, "InvalidParameters"),
    ({"certificateSigningRequest": csr("CP009", ec.SECP384R1())[0]}, "InvalidCsr"),
])
def test_a_bad_request_is_rejected(stand_in, document, why):
    service, claim, _, _ = stand_in
    kind, answer = ask(claim, CREATE_FROM_CSR, document)
    assert kind == "rejected" and answer["statusCode"] == 400 and answer["errorCode"] == why
    assert not service.certificates


def test_registration_needs_a_live_token_and_the_certificates_cn(stand_in):
    service, claim, _, _ = stand_in
    _, answer = ask(claim, CREATE_FROM_CSR, {"certificateSigningRequest": csr("CP009")[0]})
    token = answer["certificateOwnershipToken"]
    for document, code in (
            ({"certificateOwnershipToken": "forged", "parameters": {"SerialNumber": "CP009"}},
             "InvalidCertificateOwnershipToken"),
            ({"certificateOwnershipToken": token, "parameters": {"SerialNumber": "CP010"}},
             "InvalidParameters"),
            ({"certificateOwnershipToken": token, "parameters": {}}, "InvalidParameters")):
        kind, rejected = ask(claim, REGISTER, document)
        assert (kind, rejected["errorCode"]) == ("rejected", code)
    claim.subscribe("$aws/provisioning-templates/other/provision/json/+")
    kind, rejected = ask(claim, "$aws/provisioning-templates/other/provision/json",
                         {"certificateOwnershipToken": token,
                          "parameters": {"SerialNumber": "CP009"}})
    assert (kind, rejected["statusCode"]) == ("rejected", 404)
    service.token_ttl = -1
    _, answer = ask(claim, CREATE_FROM_CSR, {"certificateSigningRequest": csr("CP009")[0]})
    kind, rejected = ask(claim, REGISTER, {
        "certificateOwnershipToken": answer["certificateOwnershipToken"],
        "parameters": {"SerialNumber": "CP009"}})
    assert rejected["errorMessage"] == "the ownership token has expired"
    assert not service.things


def test_the_claim_certificate_may_do_nothing_else(stand_in):
    service, claim, broker, _ = stand_in
    with Peer(broker, "csms").connect() as csms:
        csms.subscribe("+/in")
        claim.subscribe("CP001/out")  # Mosquitto grants it, and delivers nothing
        claim.subscribe("claim/out")  # (the charger's rules, for a CN that is no charger's)
        csms.publish("CP001/out", b"for CP001 only")
        csms.publish("claim/out", b"marker")
        assert claim.expect() == ("claim/out", b"marker")
        claim.publish("CP001/in", b"forged")  # Mosquitto acknowledges, then drops it
        with Peer(broker, "CP001").connect() as cp:
            cp.publish("CP001/in", b"marker")
            assert csms.expect() == ("CP001/in", b"marker")
        assert csms.messages.empty()
    assert service.requests == []


def test_a_charger_renews_through_the_same_api(stand_in):
    service, _, broker, _ = stand_in
    with Peer(broker, "CP001").connect() as charger:
        assert charger.subscribe(CREATE_FROM_CSR + "/+") == [1]
        kind, answer = ask(charger, CREATE_FROM_CSR, {"certificateSigningRequest": csr(
            "CP001")[0]})
        assert kind == "accepted"


def test_the_claim_policy_on_aws_is_the_same_rules():
    document = policy.claim_policy("eu-west-1", "123456789012", "chargers")
    grants = {s["Action"]: s["Resource"] for s in document["Statement"]}
    assert grants == {
        "iot:Connect": [ARN + "client/*"],
        "iot:Publish": [ARN + "topic/$aws/certificates/create-from-csr/json",
                        ARN + "topic/" + REGISTER],
        "iot:Subscribe": [ARN + "topicfilter/$aws/certificates/create-from-csr/json/*",
                          ARN + "topicfilter/" + REGISTER + "/*"],
        "iot:Receive": [ARN + "topic/$aws/certificates/create-from-csr/json/*",
                        ARN + "topic/" + REGISTER + "/*"],
    }
    acl = policy.mosquitto_acl("csms", claim="claim", provisioner="iot-provisioning",
                               template="chargers")
    assert acl.split("user claim\n")[1].split("\n\n")[0].split("\n") == [
        "topic write $aws/certificates/create-from-csr/json",
        "topic read $aws/certificates/create-from-csr/json/+",
        "topic write " + REGISTER, "topic read " + REGISTER + "/+"]
