"""The development Central System (tools.csms) against a real Mosquitto, with a scripted charger."""

import asyncio
import datetime
import json

import pytest
from ocpp.exceptions import NotSupportedError

# tests/ is on sys.path (rootdir-relative "prepend" import mode, no __init__.py in tests/).
from broker_fixtures import Peer, make_broker, make_pki  # noqa: F401  (fixtures)
from tools.csms import CentralSystem

CP = "CP001"
KNOWN_TAG = "04A1B2C3D4E5F6"
UNKNOWN_TAG = "DEADBEEF"
WAIT = 5.0
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "AC22"}
METER_VALUE = {
    "timestamp": "2024-01-01T10:00:30.000Z",
    "sampledValue": [{"value": "1350", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}],
}


def run(coro, timeout=30):
    """Run one test scenario in its own event loop; a hung scenario fails instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FakeCharger:
    """A charge point that speaks raw OCPP-J frames on <id>/in and reads <id>/out."""

    def __init__(self, broker, charger_id=CP, clean_session=True):
        self.id = charger_id
        self.peer = Peer(broker, charger_id, clean_session=clean_session).connect()
        assert self.peer.subscribe(charger_id + "/out") == [1]

    async def send(self, frame):
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await asyncio.to_thread(self.peer.publish, self.id + "/in", text.encode())

    async def receive(self):
        """Next frame from the Central System, parsed (the peer blocks: keep it off the loop)."""
        topic, payload = await asyncio.to_thread(self.peer.expect, WAIT)
        assert topic == self.id + "/out"
        return json.loads(payload)

    async def call(self, message_id, action, payload):
        """Send a CALL and return the Central System's answer to it."""
        await self.send([2, message_id, action, payload])
        reply = await self.receive()
        assert reply[1] == message_id
        return reply

    def close(self):
        self.peer.close()


@pytest.fixture
def broker(make_broker):
    # One broker per test, not per module: some tests stop and restart it.
    return make_broker()


@pytest.fixture
def start(broker):
    """start() -> (CentralSystem connected to the broker, FakeCharger CP001); both closed after."""
    opened = []

    async def start_(**kwargs):
        cert, key = broker.client_cert("csms")
        cs = CentralSystem(broker.host, broker.port, broker.ca, cert, key, **kwargs)
        await cs.start()
        opened.append(cs)
        charger = FakeCharger(broker)
        opened.append(charger)
        return cs, charger

    yield start_
    for thing in opened:
        if isinstance(thing, FakeCharger):
            thing.close()


async def scenario(start, body, **kwargs):
    cs, charger = await start(**kwargs)
    try:
        return await body(cs, charger)
    finally:
        await cs.stop()


def test_boot_notification_is_accepted_with_current_time_and_interval(start):
    async def body(cs, charger):
        reply = await charger.call("1", "BootNotification", BOOT)
        assert reply[0] == 3
        assert reply[2]["status"] == "Accepted"
        assert reply[2]["interval"] == 60
        assert reply[2]["currentTime"].endswith("Z")
        sent = datetime.datetime.fromisoformat(reply[2]["currentTime"][:-1] + "+00:00")
        now = datetime.datetime.now(datetime.timezone.utc)
        assert abs((now - sent).total_seconds()) < 5
        assert cs.chargers[CP].boots == [BOOT]
        heartbeat = await charger.call("2", "Heartbeat", {})
        assert set(heartbeat[2]) == {"currentTime"}
        assert cs.chargers[CP].heartbeats == 1

    run(scenario(start, body, heartbeat_interval=60))


def test_authorize_answers_accepted_for_a_known_tag_and_invalid_otherwise(start):
    async def body(cs, charger):
        known = await charger.call("1", "Authorize", {"idTag": KNOWN_TAG})
        unknown = await charger.call("2", "Authorize", {"idTag": UNKNOWN_TAG})
        assert known == [3, "1", {"idTagInfo": {"status": "Accepted"}}]
        assert unknown == [3, "2", {"idTagInfo": {"status": "Invalid"}}]
        assert cs.chargers[CP].authorizations == [(KNOWN_TAG, "Accepted"), (UNKNOWN_TAG, "Invalid")]

    run(scenario(start, body))


def test_status_notification_keeps_the_latest_status_per_connector(start):
    async def body(cs, charger):
        for n, status in enumerate(("Available", "Preparing")):
            payload = {"connectorId": 1, "errorCode": "NoError", "status": status}
            assert await charger.call(str(n), "StatusNotification", payload) == [3, str(n), {}]
        assert cs.chargers[CP].statuses[1]["status"] == "Preparing"

    run(scenario(start, body))


def test_start_and_stop_transaction_are_recorded_with_meter_values(start):
    async def body(cs, charger):
        started = await charger.call("1", "StartTransaction", {
            "connectorId": 1, "idTag": KNOWN_TAG, "meterStart": 1000,
            "timestamp": "2024-01-01T10:00:00.000Z"})
        transaction_id = started[2]["transactionId"]
        assert started[2]["idTagInfo"] == {"status": "Accepted"}
        reply = await charger.call("2", "MeterValues", {
            "connectorId": 1, "transactionId": transaction_id, "meterValue": [METER_VALUE]})
        assert reply == [3, "2", {}]
        stopped = await charger.call("3", "StopTransaction", {
            "transactionId": transaction_id, "meterStop": 2500, "idTag": KNOWN_TAG,
            "timestamp": "2024-01-01T10:05:00.000Z", "reason": "Local"})
        assert stopped == [3, "3", {"idTagInfo": {"status": "Accepted"}}]

        tx = cs.chargers[CP].transactions[transaction_id]
        assert (tx.connector_id, tx.id_tag, tx.meter_start, tx.started_at) == (
            1, KNOWN_TAG, 1000, "2024-01-01T10:00:00.000Z")
        assert (tx.meter_stop, tx.reason, tx.stopped_at) == (
            2500, "Local", "2024-01-01T10:05:00.000Z")
        assert tx.meter_values == [METER_VALUE]

        second = await charger.call("4", "StartTransaction", {
            "connectorId": 1, "idTag": UNKNOWN_TAG, "meterStart": 2500,
            "timestamp": "2024-01-01T11:00:00.000Z"})
        assert second[2]["transactionId"] > transaction_id
        assert second[2]["idTagInfo"] == {"status": "Invalid"}

    run(scenario(start, body))


def test_resent_transaction_messages_are_answered_once(start):
    start_payload = {"connectorId": 1, "idTag": KNOWN_TAG, "meterStart": 0,
                     "timestamp": "2024-01-01T10:00:00.000Z"}

    async def body(cs, charger):
        first = await charger.call("start-7", "StartTransaction", start_payload)
        again = await charger.call("start-7", "StartTransaction", start_payload)
        assert again == first
        transaction_id = first[2]["transactionId"]
        assert list(cs.chargers[CP].transactions) == [transaction_id]

        stop = {"transactionId": transaction_id, "meterStop": 900,
                "timestamp": "2024-01-01T10:05:00.000Z", "reason": "EVDisconnected"}
        await charger.call("stop-8", "StopTransaction", stop)
        later = dict(stop, meterStop=999, timestamp="2024-01-01T10:09:00.000Z")
        assert await charger.call("stop-8", "StopTransaction", later) == [3, "stop-8", {}]
        tx = cs.chargers[CP].transactions[transaction_id]
        assert (tx.meter_stop, tx.stopped_at) == (900, "2024-01-01T10:05:00.000Z")
        assert list(cs.chargers[CP].transactions) == [transaction_id]

    run(scenario(start, body))


def test_remote_start_is_a_call_on_out_and_returns_the_chargers_answer(start):
    async def body(cs, charger):
        await charger.call("1", "BootNotification", BOOT)
        pending = asyncio.ensure_future(cs.remote_start(CP, KNOWN_TAG, connector_id=1))
        request = await charger.receive()
        assert request[0] == 2 and request[2] == "RemoteStartTransaction"
        assert request[3] == {"idTag": KNOWN_TAG, "connectorId": 1}
        await charger.send([3, request[1], {"status": "Accepted"}])
        assert await asyncio.wait_for(pending, WAIT) == {"status": "Accepted"}

    run(scenario(start, body))


def test_get_configuration_returns_the_wire_payload(start):
    async def body(cs, charger):
        pending = asyncio.ensure_future(cs.get_configuration(CP, ["HeartbeatInterval", "Nope"]))
        request = await charger.receive()
        assert request[2:] == ["GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]}]
        answer = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                        "value": "300"}], "unknownKey": ["Nope"]}
        await charger.send([3, request[1], answer])
        assert await asyncio.wait_for(pending, WAIT) == answer

    run(scenario(start, body))


def test_call_error_from_the_charger_raises_the_matching_exception(start):
    async def body(cs, charger):
        pending = asyncio.ensure_future(cs.reset(CP, "hard"))
        request = await charger.receive()
        assert request[2:] == ["Reset", {"type": "Hard"}]
        await charger.send([4, request[1], "NotSupported", "no", {}])
        with pytest.raises(NotSupportedError):
            await asyncio.wait_for(pending, WAIT)

    run(scenario(start, body))


def test_trigger_of_an_unknown_message_is_refused_before_sending(start):
    async def body(cs, charger):
        with pytest.raises(ValueError, match="no message 'Bogus' to trigger; one of Boot"):
            await cs.trigger_message(CP, "Bogus")
        pending = asyncio.ensure_future(cs.trigger_message(CP, "Heartbeat"))
        request = await charger.receive()  # the refused one never went out
        assert request[2:] == ["TriggerMessage", {"requestedMessage": "Heartbeat"}]
        await charger.send([3, request[1], {"status": "Accepted"}])
        assert await asyncio.wait_for(pending, WAIT) == {"status": "Accepted"}

    run(scenario(start, body))


def test_unanswered_call_times_out(start):
    async def body(cs, charger):
        with pytest.raises(asyncio.TimeoutError):
            await cs.clear_cache(CP, timeout=0.3)
        request = await charger.receive()
        assert request[2:] == ["ClearCache", {}]

    run(scenario(start, body))


def test_invalid_payload_gets_a_call_error(start):
    async def body(cs, charger):
        reply = await charger.call("1", "StartTransaction", {
            "connectorId": "one", "idTag": KNOWN_TAG, "meterStart": 0,
            "timestamp": "2024-01-01T10:00:00.000Z"})
        assert reply[0] == 4 and reply[2] == "TypeConstraintViolation"
        missing = await charger.call("2", "BootNotification", {"chargePointVendor": "Acme"})
        assert missing[0] == 4 and missing[2] == "ProtocolError"
        extra = await charger.call("3", "Heartbeat", {"unexpected": 1})
        assert extra[0] == 4 and extra[2] == "FormationViolation"  # the 1.6 spelling
        assert cs.chargers[CP].transactions == {}

    run(scenario(start, body))


def test_unknown_action_is_not_implemented_and_unsupported_one_not_supported(start):
    async def body(cs, charger):
        unknown = await charger.call("1", "MakeCoffee", {})
        assert unknown[0] == 4 and unknown[2] == "NotImplemented"
        unsupported = await charger.call("2", "Reset", {"type": "Hard"})  # ours to answer
        assert unsupported[0] == 4 and unsupported[2] == "NotSupported"

    run(scenario(start, body))


def _request(cn):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def test_sign_certificate_is_answered_with_a_certificate_of_the_local_ca(start, tmp_path):
    from cryptography import x509

    from tools.certs import make_ca, signer_for

    ca_pem, _ = make_ca(str(tmp_path))
    key, csr = _request(CP)

    async def body(cs, charger):
        assert await charger.call("1", "SignCertificate", {"csr": csr}) == \
            [3, "1", {"status": "Accepted"}]
        request = await charger.receive()
        assert request[0] == 2 and request[2] == "CertificateSigned"
        await charger.send([3, request[1], {"status": "Accepted"}])
        cert = x509.load_pem_x509_certificate(request[3]["certificateChain"].encode())
        with open(ca_pem, "rb") as f:
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(f.read()))
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
        assert cert.subject.rfc4514_string() == "CN=" + CP
        for _ in range(50):
            if cs.chargers[CP].certificates_signed:
                break
            await asyncio.sleep(0.05)
        assert cs.chargers[CP].certificates_signed == ["Accepted"]
        assert cs.chargers[CP].csrs == [csr]

    run(scenario(start, body, signer=signer_for(str(tmp_path))))


def test_sign_certificate_without_a_signer_is_rejected(start):
    async def body(cs, charger):
        assert await charger.call("1", "SignCertificate", {"csr": _request(CP)[1]}) == \
            [3, "1", {"status": "Rejected"}]

    run(scenario(start, body))


def test_data_transfer_from_an_unknown_vendor_is_answered_unknown_vendor_id(start):
    async def body(cs, charger):
        unknown = await charger.call("1", "DataTransfer", {"vendorId": "com.other"})
        known = await charger.call("2", "DataTransfer", {"vendorId": "com.acme", "data": "x"})
        assert unknown == [3, "1", {"status": "UnknownVendorId"}]
        assert known == [3, "2", {"status": "Accepted"}]

    run(scenario(start, body, vendors=["com.acme"]))


def test_records_every_frame_in_both_directions(start):
    async def body(cs, charger):
        await charger.call("1", "Heartbeat", {})
        frames = cs.chargers[CP].frames
        assert [(f.direction, f.message()[:2]) for f in frames] == [("in", [2, "1"]),
                                                                   ("out", [3, "1"])]
        assert cs.chargers[CP].calls("Heartbeat") == [{}]

    run(scenario(start, body))


def test_broker_restart_mid_transaction_keeps_handlers_and_records(start, broker):
    async def body(cs, charger):
        started = await charger.call("1", "StartTransaction", {
            "connectorId": 1, "idTag": KNOWN_TAG, "meterStart": 10,
            "timestamp": "2024-01-01T10:00:00.000Z"})
        transaction_id = started[2]["transactionId"]
        charger.close()
        await asyncio.to_thread(broker.restart)
        await cs.wait_for(lambda: cs.connections >= 2, timeout=WAIT)
        back = FakeCharger(broker)
        try:
            # The charger did not see the answer before the outage: it resends with the same id.
            resent = await back.call("1", "StartTransaction", {
                "connectorId": 1, "idTag": KNOWN_TAG, "meterStart": 10,
                "timestamp": "2024-01-01T10:00:00.000Z"})
            assert resent[2]["transactionId"] == transaction_id
            await back.call("2", "StopTransaction", {
                "transactionId": transaction_id, "meterStop": 20,
                "timestamp": "2024-01-01T10:01:00.000Z"})
        finally:
            back.close()
        assert cs.chargers[CP].transactions[transaction_id].meter_stop == 20

    run(scenario(start, body))


def test_frames_sent_while_the_csms_is_offline_arrive_when_it_is_back(start):
    async def body(cs, charger):
        await charger.call("1", "Heartbeat", {})
        await cs.stop()
        await charger.send([2, "2", "Authorize", {"idTag": KNOWN_TAG}])
        await cs.start()
        assert await charger.receive() == [3, "2", {"idTagInfo": {"status": "Accepted"}}]
        assert cs.chargers[CP].heartbeats == 1

    run(scenario(start, body))


def test_call_made_while_the_broker_is_down_goes_out_after_reconnect(start, broker):
    async def body(cs, charger):
        charger.close()
        # A persistent session, so the broker keeps what arrives for the charger before it is back.
        FakeCharger(broker, clean_session=False).close()
        await asyncio.to_thread(broker.stop)
        await cs.wait_for(lambda: not cs.connected, timeout=WAIT)
        pending = asyncio.ensure_future(cs.unlock_connector(CP, 1))
        await asyncio.to_thread(broker.start)
        back = FakeCharger(broker, clean_session=False)
        try:
            request = await back.receive()
            assert request[2:] == ["UnlockConnector", {"connectorId": 1}]
            await back.send([3, request[1], {"status": "Unlocked"}])
            assert await asyncio.wait_for(pending, WAIT) == {"status": "Unlocked"}
        finally:
            back.close()

    run(scenario(start, body))
