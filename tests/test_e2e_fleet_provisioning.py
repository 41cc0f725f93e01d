"""End to end on the twin at an ESP32's heap (frozen placement): AWS IoT fleet provisioning by
claim on the stand-in (tools/fleetprov.py, issue 21). The charger holds only the claim
certificate, makes its key, has it certified and its thing registered over MQTT, and then
connects as its own thing; failures and power cuts leave it with the claim or its own
identity, never none."""
import asyncio
import base64
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from test_e2e import T, run, world  # noqa: F401  (fixture)
from tools import certs
from tools.fleetprov import FleetProvisioning

pytestmark = pytest.mark.usefixtures("twins")
TEMPLATE = "chargers"


@pytest.fixture
def fleet(world):  # noqa: F811
    broker, pki, make_sim, make_csms = world
    service = FleetProvisioning(broker.host, broker.port, pki.dir).start()
    yield service, world
    service.stop()


def _record(sim, name):
    path = os.path.join(sim.state, "fs", "data", name)
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        raw = f.read()
    return json.loads(raw[raw.index(b"{"):raw.rindex(b"}") + 1])  # (a framed record)


def _claimed(make_sim):
    sim = make_sim(cert_cn=certs.CLAIM_CN, provision_template=TEMPLATE)
    sim.tolerated = ("claim:",)
    return sim


async def until(predicate, timeout=T):
    """The service's records change in its own thread: looked at every 20 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met within %ss" % timeout
        await asyncio.sleep(0.02)


def _serial(pem):
    return "%x" % x509.load_pem_x509_certificate(pem.encode()).serial_number


def test_a_charger_with_the_claim_certificate_provisions_itself_and_connects_as_its_thing(
        fleet):
    service, (broker, pki, make_sim, make_csms) = fleet

    async def scenario():
        async with make_csms() as cs:
            sim = _claimed(make_sim)
            await sim.start()
            await cs.wait_for(lambda: "CP001" in cs.chargers and cs.chargers["CP001"].boots, T)
            s = await sim.until(lambda s: s["online"])
            assert s["identity"] == "own"
            assert list(service.things) == ["CP001"]
            cert_id = service.things["CP001"]
            issued = service.certificates[cert_id]
            assert s["certificate_serial"] == _serial(issued["pem"])
            assert issued["cn"] == "CP001"
            assert service.requests == ["csr", "register"]
            identity = _record(sim, "identity")
            assert identity["serial"] == s["certificate_serial"]
            der = base64.b64decode(identity["cert"])
            assert x509.load_pem_x509_certificate(issued["pem"].encode()).public_bytes(
                Encoding.DER) == der
            assert _record(sim, "claim") is None and _record(sim, "idkey.new") is None
            # OCPP works as the thing: a configuration round trip
            conf = await cs.get_configuration("CP001", ["HeartbeatInterval"])
            assert conf["configurationKey"]
            # a power cut: the charger comes back as its thing, the claim is not used again
            sim.power_cut()
            boots = len(cs.chargers["CP001"].boots)
            await sim.start()
            await cs.wait_for(lambda: len(cs.chargers["CP001"].boots) > boots, T)
            s = await sim.until(lambda s: s["online"])
            assert s["identity"] == "own" and s["certificate_serial"] == identity["serial"]
            assert service.requests == ["csr", "register"]
            for frame in cs.chargers["CP001"].frames:  # the key never went out
                assert "PRIVATE" not in frame.text
    run(scenario())


def test_rejections_are_waited_out_and_the_charger_stays_on_the_claim_until_through(fleet):
    service, (broker, pki, make_sim, make_csms) = fleet
    service.refuse_csr = "the account's certificate quota is used up"

    async def scenario():
        async with make_csms() as cs:
            sim = _claimed(make_sim)
            await sim.start()
            await sim.until(lambda s: s["mqtt"] and s["mqtt"]["state"] == "provisioning")
            await until(lambda: ("certificate-rejected", service.refuse_csr) in service.events)
            s = await sim.ask(cmd="status")
            assert s["identity"] == "claim" and not s["online"]
            assert s["certificate_serial"] == _serial(open(pki.client(certs.CLAIM_CN)[0]).read())
            # the ownership token expires before RegisterThing: that certificate is dropped
            service.refuse_csr = None
            service.token_ttl = -1
            await until(lambda: ("register-rejected", "the ownership token has expired")
                        in service.events)
            service.token_ttl = 3600
            await cs.wait_for(lambda: "CP001" in cs.chargers and cs.chargers["CP001"].boots, T)
            s = await sim.until(lambda s: s["online"])
            assert s["identity"] == "own"
            assert len(service.certificates) >= 2  # the expired ones, then the one in use
            assert s["certificate_serial"] == _serial(
                service.certificates[service.things["CP001"]]["pem"])
    run(scenario())


@pytest.mark.parametrize("cut", ["before the certificate", "before registering"])
def test_a_power_cut_in_the_middle_goes_on_from_what_was_kept(fleet, cut):
    service, (broker, pki, make_sim, make_csms) = fleet
    service.silent = {"csr"} if cut == "before the certificate" else {"register"}

    async def scenario():
        async with make_csms() as cs:
            sim = _claimed(make_sim)
            await sim.start()
            await until(lambda: service.requests[-1:] == [sorted(service.silent)[0]])
            pending = _record(sim, "idkey.new")
            assert pending is not None  # the key is made first
            kept = _record(sim, "claim")
            assert (kept is None) == (cut == "before the certificate")
            sim.power_cut()
            service.silent = set()
            await sim.start()
            await cs.wait_for(lambda: "CP001" in cs.chargers and cs.chargers["CP001"].boots, T)
            s = await sim.until(lambda s: s["online"])
            assert s["identity"] == "own"
            issued = service.certificates[service.things["CP001"]]
            # the same key throughout: the certificate is for the key made before the cut
            pub = base64.b64decode(pending["pub"])
            key = x509.load_pem_x509_certificate(issued["pem"].encode()).public_key()
            assert key.public_numbers().x == int.from_bytes(pub[1:33], "big")
            if cut == "before registering":  # the certificate kept is registered, no new one
                assert len(service.certificates) == 1
                assert service.requests == ["csr", "register", "register"]
            else:
                assert service.requests[-2:] == ["csr", "register"]
    run(scenario())


def test_a_certificate_ending_soon_is_renewed_through_the_same_api(fleet):
    service, (broker, pki, make_sim, make_csms) = fleet

    async def scenario():
        async with make_csms() as cs:
            sim = _claimed(make_sim)
            await sim.start()
            await cs.wait_for(lambda: "CP001" in cs.chargers and cs.chargers["CP001"].boots, T)
            first = (await sim.until(lambda s: s["online"]))["certificate_serial"]
            # the stand-in issues for 365 days: renewal 400 days ahead makes it due
            assert (await cs.change_configuration("CP001", "CertificateRenewalDays", "400"))[
                "status"] == "Accepted"
            cp = cs.chargers["CP001"]
            boots = len(cp.boots)
            assert (await cs.reset("CP001", "Soft")) == {"status": "Accepted"}
            await cs.wait_for(lambda: len(cp.boots) > boots, T)
            await until(lambda: len(service.things) == 1 and len(service.certificates) == 2)
            s = await sim.until(lambda s: s["online"] and s["certificate_serial"] != first)
            assert s["identity"] == "own"
            assert s["certificate_serial"] == _serial(
                service.certificates[service.things["CP001"]]["pem"])
            assert _record(sim, "identity")["serial"] == s["certificate_serial"]
            assert not cp.csrs  # not through the Central System
            # OCPP goes on over the new certificate
            assert (await cs.get_configuration("CP001", ["CertificateRenewalDays"]))[
                "configurationKey"][0]["value"] == "400"
    run(scenario())
