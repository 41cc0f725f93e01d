"""Pytest fixtures and an MQTT test peer for the local AWS IoT Core stand-in (tools.broker)."""

import os
import queue
import ssl
import sys
import threading

import paho.mqtt.client as mqtt
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    # `python -m pytest` from the repo root has it already; the bare `pytest` script does not.
    sys.path.insert(0, ROOT)

from tools import certs  # noqa: E402
from tools.broker import Broker  # noqa: E402

__all__ = ["make_pki", "make_broker", "broker", "Peer", "TIMEOUT"]

TIMEOUT = 5.0


@pytest.fixture(scope="session")
def make_pki(tmp_path_factory):
    """make_pki(name="pki", chargers=(), csms="csms") -> certs.Pki; each name is its own CA."""
    made = {}

    def make(name="pki", chargers=(), csms=certs.CSMS_CN):
        if name not in made:
            made[name] = str(tmp_path_factory.mktemp(name))
        return certs.ensure_pki(made[name], chargers, csms)

    return make


@pytest.fixture
def make_broker(tmp_path_factory, make_pki):
    """make_broker(**Broker kwargs) -> started Broker on a free loopback port; stopped at teardown."""
    brokers = []

    def make(pki=None, **kwargs):
        pki = pki or make_pki()
        b = Broker(str(tmp_path_factory.mktemp("broker")), pki_dir=pki.dir, **kwargs)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        b.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory, make_pki):
    """One started broker shared by a test module, with the default PKI."""
    b = Broker(str(tmp_path_factory.mktemp("broker")), pki_dir=make_pki().dir)
    with b:
        yield b


class Peer:
    """A paho MQTT 3.1.1 client with a certificate, as a charger or the Central System would be.

    It never reconnects by itself, so a test sees every disconnect the broker decides on.
    Use from one test thread; callbacks run on paho's network thread.
    """

    def __init__(self, broker, cn, clean_session=True, cert=None, ca=None, tls_max=None):
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cn,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        certfile, keyfile = cert or broker.client_cert(cn)
        context = ssl.create_default_context(cafile=ca or broker.ca)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
        if tls_max:
            context.maximum_version = tls_max
        self.client.tls_set_context(context)
        self.broker = broker
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self._answered = threading.Event()  # CONNACK or connection closed, whichever first
        self.session_present = None
        self._subacks = {}
        self._suback = threading.Condition()
        self._looping = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            self.session_present = flags.session_present
            self.connected.set()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnected.set()
        self._answered.set()

    def _on_message(self, client, userdata, msg):
        self.messages.put((msg.topic, msg.payload))

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        with self._suback:
            self._subacks[mid] = [rc.value for rc in reason_code_list]
            self._suback.notify_all()

    def connect(self):
        """TLS handshake and CONNECT; OSError if the broker refuses.

        Under TLS 1.2 a refused client certificate fails the handshake itself (ssl.SSLError);
        under TLS 1.3 the handshake completes first and the broker then drops the connection
        (ConnectionRefusedError here).
        """
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        # paho's own network thread: publish/subscribe from the test thread then only queue,
        # never touching the TLS socket concurrently.
        self.client.loop_start()
        self._looping = True
        if not self._answered.wait(TIMEOUT):
            self.close()
            raise TimeoutError("no CONNACK:\n" + self.broker.log_tail())
        if not self.connected.is_set():
            self.close()
            raise ConnectionRefusedError("broker refused the connection")
        return self

    def subscribe(self, topic, qos=1):
        """Granted QoS list from the SUBACK (0x80 = refused)."""
        result, mid = self.client.subscribe(topic, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError("subscribe failed: %s" % result)
        with self._suback:
            if not self._suback.wait_for(lambda: mid in self._subacks, TIMEOUT):
                raise TimeoutError("no SUBACK")
            return self._subacks.pop(mid)

    def publish(self, topic, payload, qos=1):
        """Publish and, for QoS 1, wait for the broker's PUBACK."""
        info = self.client.publish(topic, payload, qos)
        info.wait_for_publish(TIMEOUT)
        return info

    def expect(self, timeout=TIMEOUT):
        """Next (topic, payload) delivered to this peer."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message within %.1f s" % timeout) from None

    def close(self):
        if self.connected.is_set() and not self.disconnected.is_set():
            self.client.disconnect()
            self.disconnected.wait(TIMEOUT)
        if self._looping:
            self.client.loop_stop()
            self._looping = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
