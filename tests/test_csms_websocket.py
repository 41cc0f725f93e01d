"""The development Central System over a WebSocket (tools.csms_websocket), with a plain
`websockets` client speaking OCPP 1.6 JSON as the charger: the handshake under each security
profile, the same records and requests as over MQTT, raw frames, dropped links, the command line."""

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import (ConnectionClosedError, ConnectionClosedOK, InvalidHandshake,
                                   InvalidStatus)

from conftest import ROOT
from tools import certs, csms_cli
from tools.csms import WebSocketCentralSystem as Exported
from tools.csms_websocket import (WebSocketCentralSystem, authorization_password,
                                  basic_authorization, server_tls_context)

CP = "CP001"
TAG = "04A1B2C3D4E5F6"
BOOT = {"chargePointVendor": "Acme", "chargePointModel": "AC22"}
HEX_KEY = "00112233445566778899aabbccddeeff0a0b0c0d"  # 40 hex digits: 20 bytes on the wire
PLAIN_KEY = "correct-horse-01"  # 16 characters, sent as they are
WAIT = 5.0


def run(coro, timeout=30):
    """Run one scenario in its own event loop; a hung one fails instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Charger:
    """A charge point on the Central System's WebSocket: raw OCPP-J frames."""

    def __init__(self, socket):
        self.socket = socket

    @classmethod
    async def connect(cls, url, cp_id=CP, subprotocols=("ocpp1.6",), authorization=None,
                      tls=None):
        headers = {"Authorization": authorization} if authorization else None
        socket = await connect(url + "/" + cp_id, subprotocols=list(subprotocols) or None,
                               additional_headers=headers, ssl=tls, compression=None,
                               open_timeout=WAIT)
        return cls(socket)

    async def send(self, frame):
        await self.socket.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self):
        return json.loads(await asyncio.wait_for(self.socket.recv(), WAIT))

    async def call(self, message_id, action, payload):
        await self.send([2, message_id, action, payload])
        reply = await self.receive()
        assert reply[1] == message_id
        return reply

    async def close(self):
        await self.socket.close()


async def refused(url, cp_id=CP, **kw):
    """The HTTP response of a handshake the Central System must refuse."""
    with pytest.raises(InvalidStatus) as caught:
        await Charger.connect(url, cp_id, **kw)
    return caught.value.response


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """One CA: the Central System's wss:// certificate, the chargers' client certificates."""
    made = certs.ensure_pki(str(tmp_path_factory.mktemp("pki")), chargers=(CP, "CP002"))
    made.server()
    return made


def client_tls(pki, cp_id=None):
    """The charger's side of wss://: the Central System checked against the CA, and with
    `cp_id` its client certificate (profile 3)."""
    context = ssl.create_default_context(cafile=pki.ca)
    if cp_id:
        context.load_cert_chain(*pki.client(cp_id))
    return context


def test_the_websocket_central_system_is_also_tools_csms():
    assert Exported is WebSocketCentralSystem


def test_boot_notification_is_accepted_and_recorded_with_the_session():
    async def scenario():
        async with WebSocketCentralSystem(heartbeat_interval=60) as cs:
            assert cs.url == "ws://127.0.0.1:%d/ocpp" % cs.port and cs.port
            charger = await Charger.connect(cs.url)
            await cs.wait_for(lambda: CP in cs.connected_ids)
            reply = await charger.call("1", "BootNotification", BOOT)
            assert reply[0] == 3 and reply[2]["status"] == "Accepted"
            assert reply[2]["interval"] == 60 and reply[2]["currentTime"].endswith("Z")
            record = cs.chargers[CP]
            assert record.boots == [BOOT]
            assert [(f.direction, f.message()[0]) for f in record.frames] == [("in", 2), ("out", 3)]
            session, = record.sessions
            assert (session.subprotocol, session.certificate_cn, session.basic_user,
                    session.open) == ("ocpp1.6", None, None, True)
            assert session.peer.startswith("127.0.0.1:")
            await charger.close()
            await cs.wait_for(lambda: not cs.is_connected(CP))
            assert session.closed and session.close_code == 1000
    run(scenario())


def test_a_remote_start_from_the_central_system_is_answered():
    async def scenario():
        async with WebSocketCentralSystem() as cs:
            charger = await Charger.connect(cs.url)
            await cs.wait_for(lambda: cs.is_connected(CP))
            request = asyncio.ensure_future(cs.remote_start(CP, TAG, 1, timeout=WAIT))
            message = await charger.receive()
            assert message[0] == 2 and message[2:] == [
                "RemoteStartTransaction", {"idTag": TAG, "connectorId": 1}]
            await charger.send([3, message[1], {"status": "Accepted"}])
            assert await request == {"status": "Accepted"}
            assert cs.chargers[CP].calls("RemoteStartTransaction", "out") == [
                {"idTag": TAG, "connectorId": 1}]
            await charger.close()
    run(scenario())


def test_a_call_made_while_the_charger_is_away_goes_out_when_it_connects():
    async def scenario():
        async with WebSocketCentralSystem() as cs:
            request = asyncio.ensure_future(cs.reset(CP, "hard", timeout=WAIT))
            await asyncio.sleep(0.1)
            assert not cs.chargers[CP].frames  # nobody to send it to yet
            charger = await Charger.connect(cs.url)
            message = await charger.receive()
            assert message[2:] == ["Reset", {"type": "Hard"}]
            await charger.send([3, message[1], {"status": "Accepted"}])
            assert await request == {"status": "Accepted"}
            await charger.close()
    run(scenario())


def test_the_charger_id_is_the_last_path_segment_percent_decoded():
    async def scenario():
        async with WebSocketCentralSystem(path="/ocpp/v16") as cs:
            assert cs.url.endswith("/ocpp/v16")
            charger = await Charger.connect(cs.url, "CP%2F7%20A")
            await charger.call("1", "Heartbeat", {})
            assert cs.chargers["CP/7 A"].heartbeats == 1
            await charger.close()
            response = await refused(cs.url.replace("/v16", ""), "CP001")  # outside the path
            assert response.status_code == 404
            assert (await refused(cs.url, "CP001/extra")).status_code == 404
    run(scenario())


@pytest.mark.parametrize("key", [HEX_KEY, PLAIN_KEY])
def test_basic_auth_with_the_authorization_key_lets_the_charger_in(key):
    async def scenario():
        async with WebSocketCentralSystem(keys={CP: key}) as cs:
            charger = await Charger.connect(cs.url, authorization=basic_authorization(CP, key))
            assert (await charger.call("1", "Heartbeat", {}))[0] == 3
            assert cs.chargers[CP].sessions[0].basic_user == CP
            assert cs.refusals == []
            await charger.close()
    run(scenario())


def test_the_password_is_the_hex_decoded_key_or_the_key_as_it_is():
    assert authorization_password(HEX_KEY) == bytes.fromhex(HEX_KEY)
    assert authorization_password(HEX_KEY[:32]) == bytes.fromhex(HEX_KEY[:32])
    assert authorization_password(PLAIN_KEY) == PLAIN_KEY.encode()
    assert authorization_password("0123456789abcdef") == b"0123456789abcdef"  # 16 digits: plain
    for bad in ("short", "x" * 21, "0" * 41):
        with pytest.raises(ValueError):
            authorization_password(bad)


@pytest.mark.parametrize("authorization", [
    None,
    basic_authorization(CP, PLAIN_KEY),  # the key as text, not hex-decoded
    basic_authorization("CP002", HEX_KEY),  # another charger's user-id
    "Bearer " + HEX_KEY,
    "Basic not-base64!",
], ids=["missing", "key-not-decoded", "wrong-user", "not-basic", "garbled"])
def test_a_missing_or_wrong_basic_auth_is_refused_with_401(authorization):
    async def scenario():
        async with WebSocketCentralSystem(keys={CP: HEX_KEY, "CP002": PLAIN_KEY}) as cs:
            response = await refused(cs.url, authorization=authorization)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
            refusal, = cs.refusals
            assert (refusal.charger_id, refusal.status) == (CP, 401)
            assert CP not in cs.chargers and not cs.connected_ids
    run(scenario())


def test_an_id_outside_the_allow_list_is_refused_with_404():
    async def scenario():
        async with WebSocketCentralSystem(keys={CP: HEX_KEY}, chargers=["CP002"]) as cs:
            response = await refused(cs.url, "CP003",
                                     authorization=basic_authorization("CP003", HEX_KEY))
            assert response.status_code == 404
            charger = await Charger.connect(cs.url, "CP002")  # allowed without a key
            await charger.close()
            assert [(r.charger_id, r.status) for r in cs.refusals] == [("CP003", 404)]
        async with WebSocketCentralSystem() as cs:  # no list: any id
            charger = await Charger.connect(cs.url, "CP003")
            await charger.close()
    run(scenario())


@pytest.mark.parametrize("offered", [(), ("ocpp2.0.1",)], ids=["none", "other"])
def test_a_handshake_without_the_ocpp16_subprotocol_is_refused(offered):
    async def scenario():
        async with WebSocketCentralSystem() as cs:
            response = await refused(cs.url, subprotocols=offered)
            assert response.status_code == 400
            assert cs.refusals[0].reason == "the ocpp1.6 subprotocol is required"
            both = await Charger.connect(cs.url, subprotocols=("ocpp2.0.1", "ocpp1.6"))
            assert both.socket.subprotocol == "ocpp1.6"
            await both.close()
    run(scenario())


def test_wss_with_basic_auth_security_profile_2(pki):
    async def scenario():
        tls = server_tls_context(*pki.server())
        async with WebSocketCentralSystem(keys={CP: HEX_KEY}, ssl=tls) as cs:
            assert cs.url.startswith("wss://127.0.0.1:")
            charger = await Charger.connect(cs.url, authorization=basic_authorization(CP, HEX_KEY),
                                            tls=client_tls(pki))
            assert (await charger.call("1", "BootNotification", BOOT))[2]["status"] == "Accepted"
            assert cs.chargers[CP].certificate_cn is None
            await charger.close()
            other = certs.ensure_pki(os.path.join(os.path.dirname(pki.dir), "other-ca"))
            with pytest.raises(ssl.SSLCertVerificationError):  # a charger trusting another CA
                await Charger.connect(cs.url, tls=client_tls(other))
    run(scenario())


def test_a_client_certificate_security_profile_3_is_recorded_by_its_cn(pki):
    async def scenario():
        tls = server_tls_context(*pki.server(), client_ca=pki.ca)
        # CP001 has a key too: a verified certificate stands in for Basic auth
        async with WebSocketCentralSystem(keys={CP: HEX_KEY}, ssl=tls) as cs:
            charger = await Charger.connect(cs.url, tls=client_tls(pki, CP))
            await charger.call("1", "Heartbeat", {})
            assert cs.chargers[CP].certificate_cn == CP
            assert cs.chargers[CP].sessions[0].basic_user is None
            await charger.close()
            with pytest.raises((OSError, InvalidHandshake)):  # ssl.SSLError is an OSError
                lone = await Charger.connect(cs.url, tls=client_tls(pki))  # no certificate
                await lone.receive()  # TLS 1.3: the refusal may come after the client's finish
            assert len(cs.chargers[CP].sessions) == 1
    run(scenario())


def test_send_raw_sends_text_messages_as_they_are():
    async def scenario():
        async with WebSocketCentralSystem() as cs:
            with pytest.raises(ConnectionError):
                await cs.send_raw(CP, ["[]"])
            charger = await Charger.connect(cs.url)
            await cs.wait_for(lambda: cs.is_connected(CP))
            big = '[2,"big","DataTransfer",{"vendorId":"x","data":"%s"}]' % ("A" * 5000)
            await cs.send_raw(CP, ["not json", big, b'[2,"b","Heartbeat",{}]'])
            assert await charger.socket.recv() == "not json"
            assert await charger.socket.recv() == big
            assert await charger.socket.recv() == '[2,"b","Heartbeat",{}]'  # a text frame
            await cs.send_raw(CP, [b"\x00\x01"], binary=True)
            assert await charger.socket.recv() == b"\x00\x01"
            assert [f.text for f in cs.chargers[CP].frames if f.direction == "out"] == [
                "not json", big, '[2,"b","Heartbeat",{}]', "\x00\x01"]
            await cs.send_raw(CP, [b"\xff\xfe"])  # not UTF-8, in a text frame all the same
            with pytest.raises(ConnectionClosedError) as closed:
                await charger.socket.recv()
            assert closed.value.sent.code == 1007  # the client closed it: invalid frame data
    run(scenario())


def test_close_drops_the_socket_and_the_charger_comes_back():
    async def scenario():
        async with WebSocketCentralSystem() as cs:
            assert await cs.close(CP) is False
            first = await Charger.connect(cs.url)
            await cs.wait_for(lambda: cs.is_connected(CP))
            assert await cs.close(CP, 1001, "maintenance") is True
            assert CP not in cs.connected_ids
            with pytest.raises(ConnectionClosedOK):
                await first.socket.recv()
            assert first.socket.close_code == 1001
            second = await Charger.connect(cs.url)
            await cs.wait_for(lambda: cs.is_connected(CP))
            await cs.close(CP, abort=True)  # the TCP connection cut, no closing handshake
            with pytest.raises(ConnectionClosedError):
                await second.socket.recv()
            third = await Charger.connect(cs.url)
            fourth = await Charger.connect(cs.url)  # the same id again: the newest wins
            with pytest.raises(ConnectionClosedOK):
                await third.socket.recv()
            assert (await fourth.call("1", "Heartbeat", {}))[0] == 3
            sessions = cs.chargers[CP].sessions
            await cs.wait_for(lambda: sessions[2].closed)
            assert [s.close_code for s in sessions] == [1001, 1006, 1000, None]
            assert cs.connected_ids == {CP}
            await fourth.close()
    run(scenario())


def test_stop_closes_the_sockets_and_keeps_the_records():
    async def scenario():
        cs = WebSocketCentralSystem()
        await cs.start()
        charger = await Charger.connect(cs.url)
        await charger.call("1", "BootNotification", BOOT)
        await cs.stop()
        assert not cs.connected and not cs.connected_ids
        with pytest.raises(ConnectionClosedOK):
            await charger.socket.recv()
        assert charger.socket.close_code == 1001
        await cs.start()  # again, on a port of its own, with its records
        again = await Charger.connect(cs.url)
        await again.call("2", "BootNotification", BOOT)
        assert cs.chargers[CP].boots == [BOOT, BOOT]
        await again.close()
        await cs.stop()
    run(scenario())


# -- the command line: python3 -m tools.csms --listen ...


def test_the_command_line_chooses_the_websocket_with_listen(tmp_path, pki):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({CP: HEX_KEY}))
    args = csms_cli.parse_args(["--listen", "127.0.0.1:0", "--keys", str(keys), "--allow",
                                "CP002", "--tls-cert", pki.server()[0], "--tls-key",
                                pki.server()[1], "--client-ca", pki.ca, "--path", "/cs"])
    cs = csms_cli.central_system(args)
    assert isinstance(cs, WebSocketCentralSystem)
    assert (cs.host, cs.port, cs.path, cs.keys, cs.allowed) == (
        "127.0.0.1", 0, "/cs", {CP: HEX_KEY}, {CP, "CP002"})
    assert cs.ssl.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("argv,word", [
    (["--listen", "nohost"], "--listen"),
    (["--listen", "127.0.0.1:9000", "--pki", "x"], "--pki"),
    (["--listen", "127.0.0.1:9000", "--tls-cert", "c.pem"], "--tls-key"),
    (["--listen", "127.0.0.1:9000", "--client-ca", "ca.pem"], "--client-ca"),
    (["--listen", "127.0.0.1:9000", "--keys", "/no/such/keys.json"], "--keys"),
    (["--pki", "x", "--keys", "k.json"], "--keys"),
])
def test_the_command_line_refuses_flags_of_the_other_mode(argv, word, capsys):
    with pytest.raises(SystemExit):
        csms_cli.parse_args(argv)
    assert word in capsys.readouterr().err


def test_a_keys_file_with_a_bad_key_is_refused(tmp_path, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({CP: "short"}))
    with pytest.raises(SystemExit):
        csms_cli.parse_args(["--listen", "127.0.0.1:0", "--keys", str(keys)])
    assert "CP001" in capsys.readouterr().err


def test_python_m_tools_csms_listen_serves_a_charger():
    proc = subprocess.Popen([sys.executable, "-m", "tools.csms", "--listen", "127.0.0.1:0"],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("csms listening on ws://127.0.0.1:"), first + proc.stderr.read()
        url = first.split()[-1][:-len("/<id>")]

        async def scenario():
            charger = await Charger.connect(url)
            reply = await charger.call("1", "BootNotification", BOOT)
            assert reply[2]["status"] == "Accepted"
            await charger.close()
        run(scenario())
        assert '"BootNotification"' in proc.stdout.readline()  # the frame, printed
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        proc.stdin.close()


def test_python_m_tools_csms_listen_on_a_taken_port_says_so_and_exits():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = subprocess.run([sys.executable, "-m", "tools.csms", "--listen",
                            "127.0.0.1:%d" % taken.getsockname()[1]], cwd=ROOT,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("tools.csms: ") and "address already in use" in r.stderr, r.stderr
