"""The local AWS IoT Core stand-in enforces what the real one does: mutual TLS, per-thing topics, QoS <= 1."""

import ssl

import pytest

# tests/ is on sys.path (rootdir-relative "prepend" import mode, no __init__.py in tests/).
from broker_fixtures import Peer, broker, make_broker, make_pki  # noqa: F401  (fixtures)
from tools.broker import MAX_PAYLOAD


def test_charger_publishes_to_its_in_and_receives_on_its_out(broker):
    with Peer(broker, "csms").connect() as csms, Peer(broker, "CP001").connect() as cp:
        assert csms.subscribe("+/in") == [1]
        assert cp.subscribe("CP001/out") == [1]
        cp.publish("CP001/in", b'[2,"1","Heartbeat",{}]')
        assert csms.expect() == ("CP001/in", b'[2,"1","Heartbeat",{}]')
        csms.publish("CP001/out", b'[3,"1",{}]')
        assert cp.expect() == ("CP001/out", b'[3,"1",{}]')


def test_csms_receives_every_chargers_in(broker):
    with Peer(broker, "csms").connect() as csms, \
            Peer(broker, "CP001").connect() as cp1, Peer(broker, "CP002").connect() as cp2:
        csms.subscribe("+/in")
        cp1.publish("CP001/in", b"one")
        assert csms.expect() == ("CP001/in", b"one")
        cp2.publish("CP002/in", b"two")
        assert csms.expect() == ("CP002/in", b"two")


# The device's mbedTLS may stop at TLS 1.2; CPython and AWS IoT also speak 1.3.
TLS_VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


@pytest.mark.parametrize("tls_max", TLS_VERSIONS, ids=["tls1.2", "tls1.3"])
def test_connection_without_client_certificate_is_refused(broker, tls_max):
    peer = Peer(broker, "CP001", cert=(None, None), tls_max=tls_max)
    with pytest.raises(OSError):
        peer.connect()


@pytest.mark.parametrize("tls_max", TLS_VERSIONS, ids=["tls1.2", "tls1.3"])
def test_client_certificate_from_unrelated_ca_is_refused(broker, make_pki, tls_max):
    rogue = make_pki("rogue", chargers=["CP001"])
    peer = Peer(broker, "CP001", cert=rogue.client("CP001"), tls_max=tls_max)
    with pytest.raises(OSError):
        peer.connect()


def test_charger_cannot_read_another_chargers_out(broker):
    with Peer(broker, "csms").connect() as csms, Peer(broker, "CP002").connect() as cp2:
        cp2.subscribe("CP001/out")
        cp2.subscribe("CP002/out")
        cp2.subscribe("#")
        csms.publish("CP001/out", b"for CP001 only")
        # Delivery is in order: the marker arriving first proves the other message was withheld.
        csms.publish("CP002/out", b"marker")
        assert cp2.expect() == ("CP002/out", b"marker")
        assert cp2.messages.empty()


def test_charger_cannot_publish_to_another_chargers_in(broker):
    with Peer(broker, "csms").connect() as csms, Peer(broker, "CP002").connect() as cp2:
        csms.subscribe("+/in")
        cp2.publish("CP001/in", b"forged")  # Mosquitto acknowledges, then drops it.
        cp2.publish("CP002/in", b"marker")
        assert csms.expect() == ("CP002/in", b"marker")
        assert csms.messages.empty()


def test_qos2_subscription_is_granted_qos1(broker):
    with Peer(broker, "CP001").connect() as cp:
        assert cp.subscribe("CP001/out", qos=2) == [1]


def test_persistent_session_receives_message_published_while_offline(broker):
    with Peer(broker, "CP003", clean_session=False).connect() as cp:
        cp.subscribe("CP003/out", qos=1)
    with Peer(broker, "csms").connect() as csms:
        csms.publish("CP003/out", b"while away", qos=1)
    with Peer(broker, "CP003", clean_session=False).connect() as cp:
        assert cp.session_present
        assert cp.expect() == ("CP003/out", b"while away")


def test_persistent_session_survives_broker_restart(make_broker):
    b = make_broker()
    with Peer(b, "CP001", clean_session=False).connect() as cp:
        cp.subscribe("CP001/out", qos=1)
    with Peer(b, "csms").connect() as csms:
        csms.publish("CP001/out", b"queued", qos=1)
    port = b.port
    b.restart()
    assert b.port == port
    with Peer(b, "CP001", clean_session=False).connect() as cp:
        assert cp.session_present
        assert cp.expect() == ("CP001/out", b"queued")


def test_payload_over_128_kb_disconnects_the_sender(broker):
    with Peer(broker, "csms").connect() as csms, Peer(broker, "CP004").connect() as cp:
        csms.subscribe("+/in")
        cp.publish("CP004/in", b"x" * MAX_PAYLOAD)
        assert csms.expect() == ("CP004/in", b"x" * MAX_PAYLOAD)
        cp.client.publish("CP004/in", b"x" * (MAX_PAYLOAD + 1024), qos=1)
        assert cp.disconnected.wait(5)


def test_second_connection_of_same_identity_takes_over(broker):
    with Peer(broker, "CP005").connect() as first, Peer(broker, "CP005").connect():
        assert first.disconnected.wait(5)
