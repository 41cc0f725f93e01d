"""OCPP-J over a WebSocket (RFC 6455, OCPP-J 1.6 §3): a never-blocking transport around a small
client of our own, straight to a Central System.

Engine-facing interface, as chargepoint.transport.mqtt's::

    t = WebSocketTransport("CP001", "wss://csms.example.com/ocpp", ssl=context,
                           password=b"...")
    t.start(); t.connected; t.send(text); t.can_send(); t.receive(); t.done(); t.status;
    t.stop()

One network thread owns the socket: DNS, TCP, TLS, the HTTP upgrade and every read and write;
the asyncio side only touches two bounded mailboxes (chargepoint.transport.mailbox), so an
unplug never waits for the network.

The client, written for the device (micropython-lib's aiohttp checks neither the accept key
nor the subprotocol, splits a message when a ping comes between its fragments, and has no
pong timeout or size cap):
- URL: the configured base + "/" + the charge point id percent-encoded (OCPP-J §3.1.1);
  ws:// and wss://, host names and ports, SNI and the host name checked on wss://.
- Opening handshake: `Sec-WebSocket-Protocol: ocpp1.6`; `Sec-WebSocket-Accept` must be the
  key's, and the server must have chosen ocpp1.6, else the link is closed (security
  whitepaper A00.FR.003). HTTP 401 counts in status["unauthorized"] (the security feature
  records FailedToAuthenticateAtCentralSystem), 404 says "unknown charge point id"; both back
  off as any failure. With a password: `Authorization: Basic base64(<id>:<password>)`.
- Frames: ours masked, text, one write each (header and payload together: one TLS record,
  one TCP segment). The server's are read only while the inbox has room for a message of
  MAX_FRAME bytes (its size is known once read; TCP holds the rest: back-pressure, nothing
  refused). A message's fragments are put together in that room of the inbox (allocated
  once: the engine parses it there), control frames allowed between them; a ping is
  answered at once; a close is answered and the link dropped. A binary message is closed
  with 1003, one larger than MAX_FRAME with 1009: read through that room and dropped, never
  held whole, counted (status["oversize"]); the link then comes back as after any failure.
  A text message that is not UTF-8 is closed with 1007.
- Liveness: with `ping_interval_s` > 0 (WebSocketPingInterval) a ping goes out every
  interval; a pong not back within PONG_MS drops the link. Without pings (0), only TCP
  notices a dead peer.
- Reconnect: exponential back-off with jitter (chargepoint.transport.policy.Reconnect), the
  first retry 1 s or later. OCPP-J §5.4: a reconnect is not a boot: the engine sends no new
  BootNotification; its queue and duplicate handling are unchanged. Nothing is ever stale
  here: there is no broker to keep frames while we are away.
- `configure(url=..., ssl=..., password=...)` changes what the next connection uses and
  `reconnect()` drops the current one (a security profile or AuthorizationKey change).
- Latency: the thread sleeps on the socket, at most _POLL_MS; a message in wakes the engine
  and a frame queued wakes the thread (chargepoint.transport.mailbox.NetThread).
  TCP_NODELAY: a frame leaves at once.
"""
import binascii

from micropython import const

from chargepoint.ocpp.framing import HEAD, MAX_FRAME, utf8
from chargepoint.platform.clock import Clock, ticks_diff
from chargepoint.transport.mailbox import Inbox, Mailbox, NetThread, sleep_ms
from chargepoint.transport.policy import Reconnect
from chargepoint.transport.tls import TlsLink

PONG_MS = const(10000)  # a pong later than this after our ping: the link is dead
_POLL_MS = const(20)  # longest sleep of the thread on the socket (a frame queued rings it awake)
_SLICE_MS = const(200)  # longest sleep while backing off, so stop() is prompt
_DRAIN = const(4)  # inbound frames read per step before looking at the outbox again
_HEADER_MAX = const(2048)  # bytes of the HTTP answer to the upgrade
_ETIMEDOUT = const(110)
_TEXT = const(1)
_BINARY = const(2)
_CLOSE = const(8)
_PING = const(9)
_PONG = const(10)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


class HandshakeError(OSError):
    """The server refused the upgrade or answered it wrongly; `status` its HTTP status."""

    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


def quote(text):
    """Percent-encode everything but RFC 3986's unreserved characters: "RDAM 123" ->
    "RDAM%20123"."""
    out = []
    for b in text.encode():
        out.append(chr(b) if b in _SAFE else "%%%02X" % b)
    return "".join(out)


def parse_url(url, cp_id):
    """(secure, host, port, path) of `url` + "/" + the id, percent-encoded."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("ws", "wss"):
        raise ValueError("websocket url must start with ws:// or wss://: %r" % url)
    where, slash, path = rest.partition("/")
    host, colon, port = where.rpartition(":")
    if not colon or "]" in port:
        host, port = where, ""
    if host.startswith("["):
        host = host[1:-1]
    if not host:
        raise ValueError("websocket url has no host: %r" % url)
    secure = scheme == "wss"
    port = int(port) if port else (443 if secure else 80)
    path = "/" + path.rstrip("/") if path.rstrip("/") else ""
    return secure, host, port, path + "/" + quote(cp_id)


def password_of(key):
    """AuthorizationKey -> the Basic auth password: the bytes of 32..40 hex digits (an even
    number), else the key's own characters (16..20 of them, as OCTT allows)."""
    if 32 <= len(key) <= 40 and not len(key) % 2:
        try:
            return binascii.unhexlify(key)
        except ValueError:
            pass  # not hex: the key as it is
    return key.encode()


def accept_of(key):
    """Sec-WebSocket-Accept for our Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    import hashlib

    return binascii.b2a_base64(hashlib.sha1(key + _GUID).digest()).strip()


def mask(payload, key):
    """`payload` XOR the 4-byte `key`, repeated: one big-integer operation, not a byte loop
    (a 4 KB frame would take milliseconds byte by byte on an ESP32)."""
    n = len(payload)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def frame(opcode, payload, key):
    """One final, masked client frame: header and payload in one bytes object."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE, n >> 8, n & 255))
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    return head + key + mask(payload, key)


def _random(n):
    import os

    return os.urandom(n)


def _open(host, port):
    import socket

    sock = socket.socket()
    try:
        sock.connect(socket.getaddrinfo(host, port)[0][-1])
    except BaseException:
        sock.close()
        raise
    return sock


def _error_text(e):
    if isinstance(e, HandshakeError):
        return str(e.args[0]) if e.args else "handshake refused"
    name = type(e).__name__
    if isinstance(e, OSError):
        name = "OSError"
        if e.args and e.args[0] == _ETIMEDOUT:
            return "OSError: timed out"
    if not e.args:
        return name
    return "%s: %s" % (name, " ".join(str(e).split()))


class WebSocketTransport(NetThread):
    """See the module docstring. `ssl`: an SSL context for wss:// (the Central System's roots,
    and our certificate for security profile 3); `password`: bytes for HTTP Basic (profiles 1
    and 2), None for none. `opener(host, port)` returns a connected socket (tests give a
    fake); `rand(n)` random bytes (os.urandom)."""
    replays = False  # an answer that comes while the link is down is lost (engine.poll)

    def __init__(self, cp_id, url, ssl=None, password=None, ping_interval_s=0, ticks_ms=None,
                 opener=None, rand=None, jitter=None, outbox_len=8, outbox_bytes=4096,
                 inbox_len=24, inbox_bytes=4096, io_timeout_ms=10000, backoff_first_ms=1000,
                 backoff_cap_ms=120000, stable_ms=30000, before_connect=None, say=print,
                 wake=None):
        self.cp_id = cp_id
        self._ticks = ticks_ms or Clock().ticks_ms
        self._open = opener or _open
        self._rand = rand or _random
        self._io_timeout_ms = io_timeout_ms
        self.before_connect = before_connect  # NTP first on a board: TLS checks dates
        self._say = say
        self._wake = wake  # called in the network thread when a message is in the inbox
        self._brisk_until = 0  # (NetThread)
        self._stack_size = None
        self.reconnect_policy = Reconnect(self._ticks, backoff_first_ms, backoff_cap_ms,
                                          stable_ms, jitter)
        self.outbox = Mailbox(outbox_len, outbox_bytes)
        # a message is read straight into the inbox, when it has room for the largest
        self.inbox = Inbox(inbox_len, inbox_bytes, MAX_FRAME)
        self._link = TlsLink(None, io_timeout_ms, 0)
        self._url = self._ssl = self._password = None
        self.configure(url, ssl, password)
        self.ping_interval_ms = ping_interval_s * 1000
        self._sock = None
        self._pinged = None  # ticks of our ping waiting for its pong
        self._ping_at = 0  # ticks of our last ping
        self._drop = False  # reconnect() asked the thread to drop the link
        self._running = False
        self._thread_alive = False
        self.connected = False
        self.status = {"state": "idle", "connects": 0, "failures": 0, "last_error": None,
                       "published": 0, "received": 0, "dropped": 0, "refused": 0,
                       "oversize": 0, "unauthorized": 0, "pongs": 0, "fallback": None}

    # -- engine side (asyncio thread) -----------------------------------------------------

    def send(self, text):
        if not self.connected:
            return False
        return self.put(text.encode() if isinstance(text, str) else bytes(text))

    def configure(self, url=None, ssl=None, password=None, fallback=None):
        """What the next connection uses (None: as before; ssl False / password False: none).
        A url is checked at once (ValueError). `fallback`: () -> the context to use instead
        once `ssl` failed at the TLS layer before it ever connected (a certificate of the
        charger's own making the server refuses: chargepoint.transport.tls.TlsLink)."""
        if url is not None:
            parse_url(url, self.cp_id)
            self._url = url
        if ssl is not None:
            self._ssl = ssl or None
            link = self._link
            link._fallback = fallback
            link.proven = False
            link.strikes = 0
        if password is not None:
            self._password = password or None

    def reconnect(self):
        """Drop the link once what is queued has gone out (it comes back with what
        configure() set)."""
        self._drop = True

    def set_ping_interval(self, seconds):
        self.ping_interval_ms = seconds * 1000

    # -- network thread -------------------------------------------------------------------

    def step(self):
        """One turn of the network loop; returns how long to sleep (ms) before the next."""
        if self._sock is None:
            wait = self.reconnect_policy.wait_ms(self._ticks())
            if wait:
                return min(wait, _SLICE_MS)
            self._connect()
            return 0
        try:
            if self._drop and not len(self.outbox):  # what was queued goes first (answers)
                self._drop = False
                self.close(1000)
                self.status["state"] = "backoff"
                return 0
            return self._service()
        except Exception as e:  # OSError, a protocol error, a close from the server
            self._lost(e)
            return 0

    def _socket(self):
        return self._sock

    def close(self, code=1000):
        """Close politely (a close frame, then the socket)."""
        sock, self._sock = self._sock, None
        self.connected = False
        if sock is None:
            return
        try:
            self._write(sock, frame(_CLOSE, code.to_bytes(2, "big"), self._rand(4)))
        except Exception:  # the link may be gone already
            pass
        try:
            sock.close()
        except Exception:
            pass

    def _connect(self):
        if self.before_connect is not None:
            self.before_connect()
        self.reconnect_policy.attempted(self._ticks())
        self.status["state"] = "connecting"
        sock = None
        try:
            secure, host, port, path = parse_url(self._url, self.cp_id)
            if secure and self._ssl is None:
                raise ValueError("wss:// needs an SSL context")
            raw = self._open(host, port)
            link = self._link
            link.context = self._ssl if secure else None
            try:
                sock = link.wrap_socket(raw, server_hostname=host)
            finally:
                if link.fell_back and link.context is not self._ssl and secure:
                    self._ssl = link.context  # given up for the fallback: kept
                    self.status["fallback"] = link.fell_back
            self._handshake(sock, host, port if port != (443 if secure else 80) else None,
                            path)
        except Exception as e:
            if sock is not None:
                try:
                    sock.close()
                except Exception:
                    pass
            self._failed(e)
            return
        now = self._ticks()
        self.reconnect_policy.connected(now)
        self._sock = sock
        self._pinged = None
        self._ping_at = now
        self.connected = True
        self.status["state"] = "connected"
        self.status["connects"] += 1

    def _handshake(self, sock, host, port, path):
        """The opening handshake; `port` None when it is the scheme's own."""
        key = binascii.b2a_base64(self._rand(16)).strip()
        lines = ["GET %s HTTP/1.1" % path,
                 "Host: %s" % (host if port is None else "%s:%d" % (host, port)),
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: %s" % key.decode(), "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Protocol: ocpp1.6"]
        if self._password is not None:
            token = binascii.b2a_base64(self.cp_id.encode() + b":" + self._password).strip()
            lines.append("Authorization: Basic %s" % token.decode())
        self._write(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        status, headers = self._answer(sock)
        if status != 101:
            if status == 401:
                self.status["unauthorized"] += 1
                raise HandshakeError(401, "HTTP 401: the Central System refused our credentials")
            if status == 404:
                raise HandshakeError(404, "HTTP 404: unknown charge point id %s" % self.cp_id)
            raise HandshakeError(status, "HTTP %d: no upgrade to a WebSocket" % status)
        if headers.get(b"upgrade", b"").lower() != b"websocket":
            raise HandshakeError(status, "handshake: no Upgrade: websocket")
        if headers.get(b"sec-websocket-accept") != accept_of(key):
            raise HandshakeError(status, "handshake: wrong Sec-WebSocket-Accept")
        if headers.get(b"sec-websocket-protocol") != b"ocpp1.6":
            raise HandshakeError(status, "handshake: the server did not choose ocpp1.6")

    def _answer(self, sock):
        """The HTTP status and headers (lower-case names) of the answer to the upgrade."""
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            got = sock.read(1)
            if not got:
                raise OSError(_ETIMEDOUT if got is None else 104, "handshake cut short")
            data += got
            if len(data) > _HEADER_MAX:
                raise HandshakeError(0, "handshake: answer too long")
        lines = data.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise HandshakeError(0, "handshake: not an HTTP answer")
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def _service(self):
        sock = self._sock
        now = self._ticks()
        if self._pinged is not None and ticks_diff(now, self._pinged) >= PONG_MS:
            raise OSError(_ETIMEDOUT, "no pong")
        interval = self.ping_interval_ms
        if interval and self._pinged is None and ticks_diff(now, self._ping_at) >= interval:
            self._write(sock, frame(_PING, b"", self._rand(4)))
            self._pinged = self._ping_at = now
        data = self.outbox.peek()
        if data is not None:
            self._write(sock, frame(_TEXT, data, self._rand(4)))
            self.outbox.get()
            self.status["published"] += 1
        handled = 0
        while handled < _DRAIN and not self.inbox.full():
            if not self._read_message(sock):
                break
            handled += 1
        sock.flush()  # a pong gathered last
        if handled or len(self.outbox):
            return 0
        return _POLL_MS

    def _write(self, sock, data):
        view = memoryview(data)
        while len(view):
            n = sock.write(view)
            if n is None:  # (a blocking socket writes; this is only to be sure)
                n = 0
            view = view[n:]

    def _header(self, sock):
        """(fin, opcode, length) of the next frame, None when nothing has come."""
        sock.setblocking(False)
        try:
            first = sock.read(1)
        finally:
            sock.setblocking(True)
        if first is None:
            return None
        if not first:
            raise OSError(104, "the Central System closed the connection")
        second = self._exact(sock, 1)[0]
        if second & 0x80:
            raise ValueError("a masked frame from the server")
        n = second & 0x7F
        if n == 126:
            n = int.from_bytes(self._exact(sock, 2), "big")
        elif n == 127:
            n = int.from_bytes(self._exact(sock, 8), "big")
        return first[0] & 0x80, first[0] & 0x0F, n

    def _exact(self, sock, n):
        data = sock.read(n)
        if data is None or len(data) < n:
            raise OSError(104, "frame cut short")
        return bytes(data)

    def _read_message(self, sock):
        """Read frames until a whole message is in the inbox; False when nothing has come
        (or the inbox has no room for the largest message: TCP holds it meanwhile)."""
        buf = self.inbox.reserve(MAX_FRAME)  # read through when it is over
        if buf is None:
            return False
        size = 0  # bytes of the message so far
        kind = None  # its opcode: text or binary
        over = False  # larger than MAX_FRAME: read and dropped
        while True:
            header = self._header(sock) if kind is None else self._wait_header(sock)
            if header is None:
                return False
            fin, opcode, n = header
            if opcode >= _CLOSE:  # control frames come whole, also between fragments
                self._control(sock, opcode, n)
                if kind is None:
                    return True
                continue
            if opcode != 0:
                kind = opcode
            if kind is None:
                raise ValueError("a continuation without a message")
            if size + n > len(buf) or kind == _BINARY:
                over = True
                left = n
                while left:  # through the buffer: never held
                    got = sock.read_into(buf[:min(left, len(buf))])
                    if not len(got):
                        raise OSError(104, "frame cut short")
                    left -= len(got)
            else:
                got = sock.read_into(buf[size:size + n])
                if len(got) < n:
                    raise OSError(104, "frame cut short")
            size += n
            if fin:
                break
        if kind == _BINARY:
            self.status["dropped"] += 1
            raise _Closing(1003, "a binary message: OCPP-J is text")
        if over:
            self.status["oversize"] += 1
            raise _Closing(1009, "a message of %d bytes: the limit is %d" % (size, MAX_FRAME))
        buf = buf[:size]
        if not utf8(buf):
            self.status["dropped"] += 1
            raise _Closing(1007, "a text message that is not UTF-8")
        self.inbox.put(buf)
        self.status["received"] += 1
        self.arrived()
        return True

    def _wait_header(self, sock):
        # the rest of a fragmented message: it is on its way, wait for it (bounded)
        deadline = self._ticks()
        while True:
            header = self._header(sock)
            if header is not None:
                return header
            if ticks_diff(self._ticks(), deadline) >= self._io_timeout_ms:
                raise OSError(_ETIMEDOUT, "the rest of a message did not come")
            sleep_ms(1)

    def _control(self, sock, opcode, n):
        if n > 125:
            raise ValueError("a control frame over 125 bytes")
        payload = self._exact(sock, n) if n else b""
        if opcode == _PING:
            self._write(sock, frame(_PONG, payload, self._rand(4)))
        elif opcode == _PONG:
            self._pinged = None
            self.status["pongs"] += 1
        elif opcode == _CLOSE:
            code = int.from_bytes(payload[:2], "big") if n >= 2 else 1005
            raise _Closed(code, str(payload[2:HEAD], "utf-8") if n > 2 else "")

    def _lost(self, e):
        sock, self._sock = self._sock, None
        self.connected = False
        if sock is not None:
            if isinstance(e, (_Closing, _Closed)):
                try:  # a close frame ours, or the answer to theirs
                    code = e.args[0] if isinstance(e, _Closing) else 1000
                    self._write(sock, frame(_CLOSE, code.to_bytes(2, "big"), self._rand(4)))
                except Exception:
                    pass
            try:
                sock.close()
            except Exception:
                pass
        self._failed(e)

    def _failed(self, e):
        self.status["failures"] += 1
        if isinstance(e, (_Closing, _Closed)):
            text = "%s %d: %s" % ("closed" if isinstance(e, _Closing) else "closed by the "
                                  "Central System", e.args[0], e.args[1])
        else:
            text = _error_text(e)
        self.status["last_error"] = text
        self.status["state"] = "backoff"
        self._say("websocket: link down: %s" % text)
        self.reconnect_policy.failed(self._ticks())


class _Closing(Exception):
    """We close the link: (code, why)."""


class _Closed(Exception):
    """The Central System closed it: (code, why)."""
