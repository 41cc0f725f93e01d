"""Fleet provisioning by claim, the device's side (chargepoint.transport.claim) on CPython:
the records kept at each step, answers meant for another charger on the shared claim left
alone, requests sent again, rejections waited out. (End to end on the twin against the
stand-in's service: tests/test_e2e_fleet_provisioning.py.)"""
import json

import pytest
from cryptography import x509

from chargepoint.transport.claim import CSR_TOPIC, RECORD, Claim
from tools import certs
from tools.fakes import MemoryStore

REGISTER = "$aws/provisioning-templates/chargers/provision/json"


class Clock:
    def __init__(self):
        self.now = 1000

    def __call__(self):
        return self.now


@pytest.fixture
def rig(tmp_path):
    clock = Clock()
    store = MemoryStore()
    lines = []
    claim = Claim(store, "chargers", "CP001", clock, lines.append)
    certs.make_ca(str(tmp_path))
    return claim, store, clock, lines, str(tmp_path)


def request(claim):
    """Turns until the request is out; (topic, document)."""
    for _ in range(10000):
        claim.step()
        if claim.outgoing is not None:
            topic, payload = claim.outgoing
            claim.sent()
            return topic, json.loads(payload)
    raise AssertionError("no request")


def answer(claim, topic, document):
    claim.on_message(topic.encode(), json.dumps(document).encode())


def certificate(ca_dir, csr_pem):
    pem = certs.sign_request(ca_dir, csr_pem)
    return {"certificateId": "ab" * 32, "certificatePem": pem,
            "certificateOwnershipToken": "token-1"}


def test_topics_are_the_two_apis_answers():
    claim = Claim(MemoryStore(), "chargers", "CP001", Clock(), print)
    assert claim.topics() == [(CSR_TOPIC + "/accepted").encode(),
                              (CSR_TOPIC + "/rejected").encode(),
                              (REGISTER + "/accepted").encode(),
                              (REGISTER + "/rejected").encode()]


def test_the_whole_way_with_the_records_kept_at_each_step(rig):
    claim, store, clock, lines, ca = rig
    topic, doc = request(claim)
    assert topic == CSR_TOPIC
    csr = x509.load_pem_x509_csr(doc["certificateSigningRequest"].encode())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=CP001"
    assert store.read("idkey.new") is not None and store.read(RECORD) is None
    answer(claim, CSR_TOPIC + "/accepted", certificate(ca, doc["certificateSigningRequest"]))
    assert store.read(RECORD)["token"] == "token-1"
    topic, doc = request(claim)
    assert (topic, doc) == (REGISTER, {"certificateOwnershipToken": "token-1",
                                       "parameters": {"SerialNumber": "CP001"}})
    answer(claim, REGISTER + "/accepted", {"deviceConfiguration": {}, "thingName": "CP001"})
    assert claim.done and claim.thing == "CP001"
    identity = store.read("identity")
    assert identity["serial"]
    assert store.read(RECORD) is None and store.read("idkey.new") is None
    cert, key = claim.identity
    assert x509.load_der_x509_certificate(cert).serial_number == int(identity["serial"], 16)
    assert key.startswith(b"\x30")  # SEC 1 DER
    assert lines[-1] == "claim: provisioned as thing CP001: connecting with its own certificate"


def test_answers_for_another_charger_are_left_alone(rig, tmp_path):
    claim, store, clock, lines, ca = rig
    topic, doc = request(claim)
    other = Claim(MemoryStore(), "chargers", "CP002", clock, print)
    _, theirs = request(other)
    answer(claim, CSR_TOPIC + "/accepted", certificate(ca, theirs["certificateSigningRequest"]))
    assert claim.state == "csr" and store.read(RECORD) is None  # not for our key
    answer(claim, CSR_TOPIC + "/accepted", certificate(ca, doc["certificateSigningRequest"]))
    request(claim)
    answer(claim, REGISTER + "/accepted", {"deviceConfiguration": {}, "thingName": "CP002"})
    assert claim.state == "register"  # their thing
    answer(claim, CSR_TOPIC + "/rejected", {"statusCode": 400})  # not waited for now
    assert claim.state == "register"
    claim.on_message(REGISTER.encode() + b"/accepted", b"\xff not json")
    assert claim.state == "register"


def test_an_unanswered_request_goes_again_after_10_s_and_on_a_new_link(rig):
    claim, store, clock, lines, ca = rig
    topic, doc = request(claim)
    clock.now += 9999
    claim.step()
    assert claim.outgoing is None
    clock.now += 1
    claim.step()
    assert claim.outgoing[0] == CSR_TOPIC
    claim.sent()

    class Client:
        subscribed = []

        def subscribe(self, topic, qos):
            self.subscribed.append((topic, qos))
    client = Client()
    claim.link(client)  # the link went down and came back
    assert client.subscribed == [(t, 1) for t in claim.topics()]
    assert json.loads(claim.outgoing[1]) == doc


def test_a_rejection_is_waited_out_doubling_and_starts_again_with_the_same_key(rig):
    claim, store, clock, lines, ca = rig
    request(claim)
    key = store.read("idkey.new")
    pauses = []
    for _ in range(3):
        answer(claim, CSR_TOPIC + "/rejected",
               {"statusCode": 400, "errorCode": "InvalidCsr", "errorMessage": "no"})
        start = clock.now
        while True:
            claim.step()
            if claim.state != "start":
                break
            clock.now += 100
        pauses.append(clock.now - start)
        request(claim)
    assert pauses == [2000, 4000, 8000]
    assert "CreateCertificateFromCsr rejected: 400 InvalidCsr: no; again in 2 s" in lines[1]
    assert store.read("idkey.new") == key


def test_a_refused_registration_drops_its_certificate(rig):
    claim, store, clock, lines, ca = rig
    _, doc = request(claim)
    answer(claim, CSR_TOPIC + "/accepted", certificate(ca, doc["certificateSigningRequest"]))
    request(claim)
    answer(claim, REGISTER + "/rejected", {"statusCode": 400,
                                           "errorCode": "InvalidCertificateOwnershipToken",
                                           "errorMessage": "the ownership token has expired"})
    assert store.read(RECORD) is None and claim.state == "start"
    assert store.read("identity") is None


def test_after_a_power_cut_a_kept_certificate_is_registered(rig):
    claim, store, clock, lines, ca = rig
    _, doc = request(claim)
    answer(claim, CSR_TOPIC + "/accepted", certificate(ca, doc["certificateSigningRequest"]))
    again = Claim(MemoryStore(store.files), "chargers", "CP001", clock, lines.append)
    topic, doc = request(again)
    assert topic == REGISTER and doc["certificateOwnershipToken"] == "token-1"
