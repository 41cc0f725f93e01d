"""The WebSocket transport on the device twin (MicroPython v1.28, 32-bit, the ESP32's heap)
against a real WebSocket server (the `websockets` package): ws:// and wss:// with the
whitepaper's cipher suites, the host name checked, Basic auth, a client certificate, a
message over the limit closed with 1009 and the link coming back; the asyncio loop never
waits on the network thread; a server that does not choose ocpp1.6 is no connection; a ping
between the fragments of a message is answered and the message arrives whole."""
import asyncio
import base64
import json
import os
import ssl
import subprocess
import threading

import pytest
import trustme
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from conftest import ROOT
from tools import twin
from tools.broker import free_port

PROBE = os.path.join(ROOT, "tests", "mpy", "ws_probe.py")
HEAP = "110000"
MAX_GAP_MS = 100


class Server:
    """A WebSocket server in a thread of its own. `script(ws, n)` plays connection n."""

    def __init__(self, tls=None, password=None, script=None, subprotocols=("ocpp1.6",)):
        self.port = free_port()
        self.subprotocols = list(subprotocols) or None
        self.tls = tls
        self.password = password
        self.script = script or self.answer_then_bye
        self.requests = []  # (path, headers) of every upgrade asked for
        self.connections = 0
        self.peers = []  # client certificate subjects (wss with client certificates)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set_result, None)
        self.thread.join(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self):
        self.stop = self.loop.create_future()
        async with serve(self._handler, "127.0.0.1", self.port, subprotocols=self.subprotocols,
                         process_request=self._check, ssl=self.tls, max_size=None):
            self.ready.set()
            await self.stop

    def _check(self, connection, request):
        self.requests.append((request.path, Headers(request.headers)))
        if self.password is not None:
            expected = "Basic " + base64.b64encode(b"CP 001:" + self.password).decode()
            if request.headers.get("Authorization") != expected:
                return Response(401, "Unauthorized", Headers({"WWW-Authenticate": "Basic"}),
                                b"")
        return None

    async def _handler(self, ws):
        self.connections += 1
        peer = ws.transport.get_extra_info("peercert")
        if peer:
            self.peers.append(peer["subject"])
        await self.script(ws, self.connections)

    @staticmethod
    async def answer_then_bye(ws, n):
        call = json.loads(await ws.recv())
        await ws.send(json.dumps([3, call[1], {"status": "Accepted"}]))
        await ws.send("bye")
        await ws.wait_closed()


def probe(url, seconds=8, *opts):
    exe = twin.ensure()
    r = subprocess.run([exe, "-X", "heapsize=" + HEAP, PROBE, url, str(seconds)] + list(opts),
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=dict(os.environ, MICROPYPATH=".frozen"))
    assert r.returncode == 0, r.stdout + r.stderr
    events = {"received": [], "log": []}
    for line in r.stdout.splitlines():
        if line.startswith("websocket: "):
            events["log"].append(line)
            continue
        e = json.loads(line)
        if e["event"] == "received":
            events["received"].append(e["text"])
        else:
            events[e["event"]] = e
    assert events["stopped"]["stopped"], r.stdout
    return events


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wspki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    other = ca.issue_cert("csms.elsewhere.example")
    charger = ca.issue_cert("cp001.chargers.example", common_name="CP 001")
    paths = {}
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    paths["ca"] = str(folder / "ca.pem")
    charger.private_key_pem.write_to_path(str(folder / "cp.key"))
    charger.cert_chain_pems[0].write_to_path(str(folder / "cp.pem"))
    paths["cert"], paths["key"] = str(folder / "cp.pem"), str(folder / "cp.key")

    def context(cert, client_ca=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        if client_ca:
            ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
    paths["server"] = lambda client_ca=False: context(server, client_ca)
    paths["other"] = lambda: context(other)
    return paths


def test_ws_round_trip_to_the_id_percent_encoded_with_ocpp16():
    with Server() as s:
        events = probe("ws://127.0.0.1:%d/ocpp" % s.port)
    assert events["received"] == ['[3, "boot-1", {"status": "Accepted"}]', "bye"]
    path, headers = s.requests[0]
    assert path == "/ocpp/CP%20001" and headers["Sec-WebSocket-Protocol"] == "ocpp1.6"
    assert "Authorization" not in headers
    done = events["done"]
    assert done["status"]["connects"] == 1 and done["status"]["failures"] == 0
    print("ws round trip: longest asyncio gap %d ms, heap free %d" % (done["max_gap_ms"],
                                                                     done["heap_free"]))
    assert done["max_gap_ms"] < MAX_GAP_MS


def test_wss_with_basic_auth_checks_the_server_and_its_name(pki):
    with Server(tls=pki["server"](), password=b"0123456789abcdef") as s:
        events = probe("wss://localhost:%d/ocpp" % s.port, 8, "--ca", pki["ca"],
                       "--password", "0123456789abcdef")
    assert events["received"][-1] == "bye"
    assert s.requests[0][1]["Authorization"] == "Basic " + base64.b64encode(
        b"CP 001:0123456789abcdef").decode()
    assert events["done"]["max_gap_ms"] < MAX_GAP_MS


def test_a_wrong_password_is_401_and_no_connection(pki):
    with Server(password=b"right") as s:
        events = probe("ws://127.0.0.1:%d/ocpp" % s.port, 3, "--password", "wrong")
    status = events["done"]["status"]
    assert not events["done"]["connected"] and status["unauthorized"] >= 1
    assert status["last_error"].startswith("HTTP 401")
    assert len(s.requests) <= 3  # backing off, not a busy loop


def test_a_server_certificate_for_another_host_is_refused(pki):
    with Server(tls=pki["other"]()) as s:
        events = probe("wss://localhost:%d/ocpp" % s.port, 3, "--ca", pki["ca"])
    assert not events["done"]["connected"] and s.connections == 0
    assert events["done"]["status"]["last_error"].startswith("ValueError")


def test_profile_3_presents_the_charger_certificate(pki):
    with Server(tls=pki["server"](client_ca=True)) as s:
        events = probe("wss://localhost:%d/ocpp" % s.port, 8, "--ca", pki["ca"], "--cert",
                       pki["cert"], "--key", pki["key"])
    assert events["received"][-1] == "bye"
    assert "'CP 001'" in str(s.peers)  # the Central System knows whom it talks to


def test_a_message_over_the_limit_is_closed_with_1009_and_the_link_comes_back():
    async def script(ws, n):
        if n == 1:
            await ws.recv()
            await ws.send("x" * 200000)
            await ws.wait_closed()
            Server.closes.append(ws.close_code)
        else:
            await ws.send("bye")
            await ws.wait_closed()
    Server.closes = []
    with Server(script=script) as s:
        events = probe("ws://127.0.0.1:%d/ocpp" % s.port, 10)
    assert Server.closes == [1009] and events["received"] == ["bye"]
    done = events["done"]["status"]
    assert done["oversize"] == 1 and done["connects"] == 2
    assert events["done"]["max_gap_ms"] < MAX_GAP_MS


def test_a_server_that_does_not_choose_ocpp16_is_no_connection():
    with Server(subprotocols=()) as s:  # answers 101 without Sec-WebSocket-Protocol
        events = probe("ws://127.0.0.1:%d/ocpp" % s.port, 3)
    assert s.requests and s.requests[0][1]["Sec-WebSocket-Protocol"] == "ocpp1.6"
    done = events["done"]
    assert not done["connected"] and done["status"]["connects"] == 0
    assert "did not choose ocpp1.6" in done["status"]["last_error"]
    assert "sent" not in events and events["received"] == []  # nothing went over it
    assert len(s.requests) <= 3  # backing off, not a busy loop


def test_a_ping_between_fragments_is_answered_and_the_message_arrives_whole():
    async def script(ws, n):
        call = json.loads(await ws.recv())
        pong = asyncio.get_running_loop().create_future()
        ws.pending_pings[b"mid"] = (pong, ws.loop.time())  # as ws.ping() would wait for it
        for piece in (lambda: ws.protocol.send_text(b'[3, "%s", ' % call[1].encode(), fin=False),
                      lambda: ws.protocol.send_ping(b"mid"),
                      lambda: ws.protocol.send_continuation(b'{"status": ', fin=False),
                      lambda: ws.protocol.send_continuation(b'"Accepted"}]', fin=True)):
            piece()
            ws.send_data()
            await asyncio.sleep(0.1)  # each its own TCP segment
        Server.pongs.append(await asyncio.wait_for(pong, 5) >= 0)
        await ws.send("bye")
        await ws.wait_closed()
    Server.pongs = []
    with Server(script=script) as s:
        events = probe("ws://127.0.0.1:%d/ocpp" % s.port, 8)
    assert Server.pongs == [True]
    assert events["received"] == ['[3, "boot-1", {"status": "Accepted"}]', "bye"]
    assert events["done"]["status"]["connects"] == 1
