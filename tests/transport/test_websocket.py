"""The WebSocket transport byte for byte against a scripted server (fake clock, no thread): the
opening handshake and what makes it fail, masking, fragments with control frames between,
ping and pong, close both ways, binary and oversized messages, back-pressure, reconnects."""
import base64
import hashlib
import tracemalloc

import pytest

from chargepoint.ocpp.framing import MAX_FRAME
from chargepoint.transport.websocket import (PONG_MS, WebSocketTransport, mask, parse_url,
                                             password_of, quote)
from tools.fakes import FakeTicks

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(opcode, payload=b"", fin=True):
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, n))
    elif n < 65536:
        head = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + n.to_bytes(8, "big")
    return head + payload


class Server:
    """The Central System's end of the connection, as the transport's socket. `answer(request)`
    gives the HTTP answer to the upgrade (the right one by default)."""

    def __init__(self, answer=None):
        self.to_client = bytearray()
        self.at = 0
        self.written = bytearray()
        self.request = None
        self.answer = answer
        self.frames = []  # (opcode, payload) the client sent, unmasked
        self.masks = []
        self.closed = False

    # the socket
    def settimeout(self, t):
        pass

    def read(self, n):
        if self.at >= len(self.to_client):
            return None
        data = bytes(self.to_client[self.at:self.at + n])
        self.at += len(data)
        return data

    def readinto(self, view):
        k = min(len(view), len(self.to_client) - self.at)
        if not k:
            return None
        with memoryview(self.to_client) as m:
            view[:k] = m[self.at:self.at + k]
        self.at += k
        return k

    def write(self, data):
        self.written += bytes(data)
        self._parse()
        return len(data)

    def close(self):
        self.closed = True

    def push(self, data):
        self.to_client += data

    # the server
    def _parse(self):
        if self.request is None:
            end = self.written.find(b"\r\n\r\n")
            if end < 0:
                return
            self.request = bytes(self.written[:end]).decode()
            del self.written[:end + 4]
            self.push((self.answer or self.accept)(self.request))
        while len(self.written) >= 2:
            n = self.written[1] & 0x7F
            at = 2
            if n == 126:
                n = int.from_bytes(self.written[2:4], "big")
                at = 4
            elif n == 127:
                n = int.from_bytes(self.written[2:10], "big")
                at = 10
            assert self.written[1] & 0x80, "client frames are masked"
            if len(self.written) < at + 4 + n:
                return
            key = bytes(self.written[at:at + 4])
            data = bytes(self.written[at + 4:at + 4 + n])
            self.masks.append(key)
            self.frames.append((self.written[0] & 0x0F,
                                bytes(b ^ key[i % 4] for i, b in enumerate(data))))
            assert self.written[0] & 0x80  # final
            del self.written[:at + 4 + n]

    def headers(self, request):
        out = {}
        for line in request.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            out[name.strip().lower()] = value.strip()
        return out

    def accept(self, request, protocol="ocpp1.6", key=None):
        h = self.headers(request)
        accept = base64.b64encode(hashlib.sha1(
            (key or h["sec-websocket-key"]).encode() + GUID).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Accept: " + accept]
        if protocol:
            lines.append("Sec-WebSocket-Protocol: " + protocol)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def texts(self):
        return [p.decode() for op, p in self.frames if op == 1]


class Rig:
    def __init__(self, url="ws://csms.example:9000/ocpp", answer=None, **kw):
        self.ticks = FakeTicks()
        self.servers = []
        self.answer = answer
        self.said = []

        def opener(host, port):
            self.servers.append(Server(self.answer))
            self.opened = (host, port)
            return self.servers[-1]
        self.t = WebSocketTransport("CP 1", url, ticks_ms=self.ticks, opener=opener,
                                    jitter=lambda n: 0, say=self.said.append, **kw)

    @property
    def server(self):
        return self.servers[-1]

    def up(self):
        self.t.step()
        assert self.t.connected, self.t.status
        return self.server

    def drain(self):
        got = []
        while True:
            m = self.t.receive()
            if m is None:
                return got
            if not isinstance(m[0], str):  # the inbox hands a frame over as bytes
                m = (m[0].decode(),) + tuple(m[1:])
            got.append(m)


def test_url_is_the_base_and_the_id_percent_encoded():
    assert parse_url("ws://h:9000/ocpp", "RDAM 123") == (False, "h", 9000, "/ocpp/RDAM%20123")
    assert parse_url("wss://h/ocpp/", "CP001") == (True, "h", 443, "/ocpp/CP001")
    assert parse_url("ws://h", "CP/1") == (False, "h", 80, "/CP%2F1")
    assert quote("é~-._") == "%C3%A9~-._"
    with pytest.raises(ValueError):
        parse_url("http://h/ocpp", "CP001")


def test_password_is_the_hex_key_decoded_or_a_plain_key_as_it_is():
    assert password_of("00112233445566778899AABBCCDDEEFF") == bytes.fromhex(
        "00112233445566778899AABBCCDDEEFF")
    assert password_of("ab" * 20) == bytes.fromhex("ab" * 20)
    assert password_of("mysecretpassword") == b"mysecretpassword"  # 16 characters, not hex
    assert password_of("zz" * 16) == b"zz" * 16  # 32 characters, not hex: as it is


def test_mask_is_xor_with_the_key_repeated():
    data = bytes(range(256)) * 20
    key = b"\x01\x02\x03\x04"
    assert mask(data, key) == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask(b"", key) == b""


def test_handshake_asks_for_ocpp16_with_basic_auth_and_the_connection_carries_frames():
    r = Rig(password=b"\x00\x11secret")
    s = r.up()
    assert r.opened == ("csms.example", 9000)
    lines = s.request.split("\r\n")
    assert lines[0] == "GET /ocpp/CP%201 HTTP/1.1"
    h = s.headers(s.request)
    assert h["host"] == "csms.example:9000" and h["upgrade"] == "websocket"
    assert h["sec-websocket-protocol"] == "ocpp1.6" and h["sec-websocket-version"] == "13"
    assert h["authorization"] == "Basic " + base64.b64encode(b"CP 1:\x00\x11secret").decode()
    assert r.t.send('[2,"1.1","Heartbeat",{}]')
    r.t.step()
    assert s.texts() == ['[2,"1.1","Heartbeat",{}]']
    s.push(server_frame(1, b'[3,"1.1",{"currentTime":"2026-11-21T12:00:00Z"}]'))
    r.t.step()
    assert r.drain() == [('[3,"1.1",{"currentTime":"2026-11-21T12:00:00Z"}]', False)]
    assert r.t.status["connects"] == 1 and r.t.status["published"] == 1


def test_no_authorization_header_without_a_password():
    s = Rig().up()
    assert "authorization" not in s.headers(s.request)


@pytest.mark.parametrize("answer,why", [
    (lambda s: lambda req: s.accept(req, protocol=None), "did not choose ocpp1.6"),
    (lambda s: lambda req: s.accept(req, protocol="ocpp2.0.1"), "did not choose ocpp1.6"),
    (lambda s: lambda req: s.accept(req, key="AAAAAAAAAAAAAAAAAAAAAA=="),
     "wrong Sec-WebSocket-Accept"),
    (lambda s: lambda req: b"HTTP/1.1 404 Not Found\r\n\r\n", "unknown charge point id"),
    (lambda s: lambda req: b"HTTP/1.1 500 Oops\r\n\r\n", "HTTP 500"),
    (lambda s: lambda req: b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"),
])
def test_a_wrong_answer_to_the_upgrade_is_no_connection(answer, why):
    r = Rig()
    r.answer = answer(Server())
    r.t.step()
    assert not r.t.connected and r.server.closed
    assert why in r.t.status["last_error"] and r.t.status["failures"] == 1
    assert r.said == ["websocket: link down: " + r.t.status["last_error"]]


def test_401_is_counted_for_the_security_event_and_backs_off():
    r = Rig(password=b"wrong")
    r.answer = lambda req: b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n"
    for _ in range(3):
        r.t.step()
        r.ticks.advance(r.t.reconnect_policy.wait_ms(r.ticks()))
    assert r.t.status["unauthorized"] == 3 and not r.t.connected
    assert r.t.status["last_error"].startswith("HTTP 401")
    assert len(r.servers) == 3  # no busy loop: one attempt per back-off


def test_backoff_first_retry_is_a_second_or_later():
    r = Rig()
    r.answer = lambda req: b"HTTP/1.1 503 Busy\r\n\r\n"
    r.t.step()
    assert r.t.step() >= 1  # sleeping, not connecting
    assert r.t.reconnect_policy.wait_ms(r.ticks()) >= 1000
    assert len(r.servers) == 1


def test_fragments_with_a_ping_between_them_make_one_message_and_the_ping_is_answered():
    r = Rig()
    s = r.up()
    s.push(server_frame(1, b'[2,"a","Heart', fin=False))
    s.push(server_frame(9, b"are you there"))
    s.push(server_frame(0, b'beat",', fin=False))
    s.push(server_frame(0, b"{}]"))
    r.t.step()
    assert r.drain() == [('[2,"a","Heartbeat",{}]', False)]
    assert s.frames == [(10, b"are you there")]  # the pong, at once, the ping's payload


def test_our_frames_are_masked_with_a_fresh_key_each():
    r = Rig()
    s = r.up()
    for i in range(3):
        r.t.send('[3,"x%d",{}]' % i)
        r.t.step()
    assert s.texts() == ['[3,"x%d",{}]' % i for i in range(3)]
    assert len(set(s.masks)) == 3


def test_a_message_at_the_limit_is_taken_one_above_is_closed_with_1009_never_held():
    r = Rig()
    s = r.up()
    edge = b'"' + b"x" * (MAX_FRAME - 2) + b'"'
    s.push(server_frame(1, edge))
    r.t.step()
    assert r.drain() == [(edge.decode(), False)]
    big = b'[2,"big","DataTransfer",{"vendorId":"x","data":"' + b"y" * 200000 + b'"}]'
    s.push(server_frame(1, big[:100000], fin=False) + server_frame(0, big[100000:]))
    tracemalloc.start()
    try:
        r.t.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024, peak
    assert not r.t.connected and r.t.status["oversize"] == 1
    assert s.frames[-1] == (8, (1009).to_bytes(2, "big"))
    assert "closed 1009" in r.t.status["last_error"]
    r.ticks.advance(1000)
    r.t.step()
    assert r.t.connected and r.t.status["connects"] == 2  # and the charger carries on


def test_a_binary_message_is_closed_with_1003():
    r = Rig()
    s = r.up()
    s.push(server_frame(2, b"\x00\x01"))
    r.t.step()
    assert not r.t.connected and s.frames[-1] == (8, (1003).to_bytes(2, "big"))


def test_a_close_from_the_server_is_answered_and_the_link_comes_back():
    r = Rig()
    s = r.up()
    s.push(server_frame(8, (1001).to_bytes(2, "big") + b"going away"))
    r.t.step()
    assert not r.t.connected and s.closed and s.frames[-1][0] == 8
    assert r.t.status["last_error"] == "closed by the Central System 1001: going away"
    r.ticks.advance(2000)
    r.t.step()
    assert r.t.connected


def test_a_pong_not_back_in_time_drops_the_link():
    r = Rig(ping_interval_s=5)
    s = r.up()
    r.ticks.advance(5000)
    r.t.step()
    assert s.frames == [(9, b"")]
    r.ticks.advance(PONG_MS - 1)
    r.t.step()
    assert r.t.connected
    r.ticks.advance(1)
    r.t.step()
    assert not r.t.connected and r.t.status["last_error"] == "OSError: timed out"


def test_pongs_keep_it_up_and_interval_zero_sends_no_ping():
    r = Rig(ping_interval_s=5)
    s = r.up()
    for _ in range(4):
        r.ticks.advance(5000)
        r.t.step()
        s.push(server_frame(10, b""))
        r.t.step()
    assert r.t.connected and r.t.status["pongs"] == 4
    r.t.set_ping_interval(0)
    r.ticks.advance(60000)
    r.t.step()
    assert [op for op, _ in s.frames] == [9, 9, 9, 9]


def test_a_full_inbox_leaves_frames_in_the_socket():
    """A message is read only while the inbox has room for the largest (its size is known
    once read): here one at a time, the rest waiting in TCP until the engine took it."""
    r = Rig()
    s = r.up()
    for i in range(3):
        s.push(server_frame(1, b'[3,"%d",{}]' % i))
    r.t.step()
    assert len(r.t.inbox) == 1 and s.at < len(s.to_client)  # the rest waits in TCP
    assert r.t.inbox.full()  # the thread naps instead of polling a socket it will not read
    assert r.drain() == [('[3,"0",{}]', False)]
    r.t.step()
    assert r.drain() == [('[3,"1",{}]', False)]
    r.t.step()
    assert [m[0] for m in r.drain()] == ['[3,"2",{}]']
    assert r.t.status["refused"] == 0 and r.t.connected


def test_configure_and_reconnect_change_the_next_connection():
    r = Rig()
    s = r.up()
    r.t.configure(url="ws://other:9100/cs", password=b"k" * 16)
    assert r.t.connected  # not before reconnect()
    r.t.reconnect()
    r.t.step()
    assert not r.t.connected and s.frames[-1] == (8, (1000).to_bytes(2, "big"))
    r.ticks.advance(1000)
    s2 = r.up()
    assert r.opened == ("other", 9100) and s2.request.startswith("GET /cs/CP%201 ")
    assert "authorization" in s2.headers(s2.request)
    with pytest.raises(ValueError):
        r.t.configure(url="mqtt://x")


def test_reconnect_waits_for_what_is_queued():
    # the answer to the ChangeConfiguration that asked for a new connection goes out first
    r = Rig()
    s = r.up()
    r.t.send('[3,"cs-1",{"status":"Accepted"}]')
    r.t.reconnect()
    r.t.step()
    assert r.t.connected and s.texts() == ['[3,"cs-1",{"status":"Accepted"}]']
    r.t.step()
    assert not r.t.connected and s.frames[-1][0] == 8


def test_wss_without_a_context_is_refused_not_sent_in_the_clear():
    r = Rig(url="wss://csms.example/ocpp")
    r.t.step()
    assert not r.t.connected and r.servers == []
    assert "needs an SSL context" in r.t.status["last_error"]


class Context:
    """An SSL context whose handshakes fail with `error` (a server refusing our certificate:
    an mbedTLS alert), or pass the socket through."""

    def __init__(self, name, error=None):
        self.name = name
        self.error = error
        self.used = 0

    def wrap_socket(self, sock, server_hostname=None):
        self.used += 1
        if self.error is not None:
            raise self.error
        return sock


def test_own_certificate_refused_twice_falls_back_to_the_files_for_good():
    own = Context("own", OSError(-30592))
    files = Context("files")
    r = Rig(url="wss://csms.example/ocpp")
    r.t.configure(ssl=own, fallback=lambda: files)
    for _ in range(2):
        r.ticks.advance(200000)
        r.t.step()
        assert not r.t.connected
    assert own.used == 2 and r.t.status["fallback"] == "TLS handshake failed 2 times (last: -30592)"
    r.ticks.advance(200000)
    r.up()
    assert files.used == 1 and own.used == 2
    r.t.reconnect()
    r.t.step()
    r.ticks.advance(200000)
    r.up()
    assert files.used == 2 and own.used == 2  # the fallback is kept


def test_own_certificate_that_got_through_is_never_given_up():
    own = Context("own")
    r = Rig(url="wss://csms.example/ocpp")
    r.t.configure(ssl=own, fallback=lambda: Context("files"))
    r.up()
    r.t.reconnect()
    r.t.step()
    own.error = OSError(-30592)
    for _ in range(3):
        r.ticks.advance(200000)
        r.t.step()
    assert own.used == 4 and r.t.status["fallback"] is None
