"""Mutual TLS for the MQTT link: the context from PEM/DER files, a socket with bounded reads.

Mechanism: `TlsLink` is handed to umqtt.simple as its `ssl=` object. It sets a timeout on the
TCP socket before the TLS handshake (a server that accepts and then says nothing cannot hang
the thread), keeps that timeout whenever umqtt asks for a blocking socket, and counts inbound
bytes, which is how a PINGRESP (swallowed by umqtt) is noticed. Only the TCP connect itself
is bounded by the OS/lwIP timeout; the asyncio loop does not wait for it, but stop() does.

A read longer than `_BIG` bytes (a PUBLISH's payload: umqtt reads it in one piece) lands in
room the link's `inbox` (the transport's mailbox.Inbox, allocated once) gives it: the payload
is read straight into it and handed back as a memoryview of it (umqtt hands it to the
transport's callback, which keeps it there). Without an inbox it lands in the link's own
buffer (`buffer` bytes). A payload never needs a fresh block of its size: in a
fragmented heap (a burst of frames) a 3 KB one found none, and the link went down for it
again at each redelivery. A payload larger than MAX_FRAME (up to the 2 MB MQTT allows), or
one the inbox has no room for, is read through the link's buffer (512 bytes) piece by piece
and dropped, its first `HEAD` bytes kept: umqtt gets an `Oversize` instead of the bytes,
acknowledges the PUBLISH as usual (the transport refuses one it had no room for first), and
the packet stream stays in step. Nothing of the frame's size is ever allocated.

With context None the link is plain TCP (a local broker without TLS, tests): the same
bounded reads, no handshake.

Latency. umqtt.simple writes a PUBLISH in four or five small writes (header, topic length,
topic, packet id, payload): each would be a TLS record and a TCP segment, and with Nagle's
algorithm every segment after the first waits for the broker's delayed ACK (40 ms on Linux,
lwIP alike). So the socket gets TCP_NODELAY (the ESP32's lwIP takes it as Linux does), and
small writes are gathered in the link's `out` buffer (`OUT` bytes, allocated once) and go as
one write when the buffer would overflow, before any read, before the network thread waits
(`wait()`) and on `flush()`/`close()`: a PUBLISH of a usual OCPP frame is one TLS record and
one segment. `wait(ms)` sleeps until the socket has bytes to read (select.poll), so an
inbound frame is read at once instead of at the thread's next turn.
"""
import select

from micropython import const

from chargepoint.ocpp.framing import HEAD, MAX_FRAME, head_text

_ETIMEDOUT = const(110)
_BIG = const(256)
_SCRATCH = const(512)  # the link's own buffer: payloads with no inbox room are read through it
OUT = const(512)  # bytes of small writes gathered into one (a StatusNotification's PUBLISH)
_IPPROTO_TCP = const(6)  # Linux and lwIP alike
_TCP_NODELAY = const(1)
_STRIKES = const(2)  # handshakes failed before a certificate never proven is given up


class Oversize:
    """What umqtt hands the transport for a payload over the buffer: its size and head."""

    def __init__(self, size, head):
        self.size = size
        self.head = head  # bytes

    def text(self):
        """The head as text (less the end of a character the cut split); None if not UTF-8."""
        return head_text(self.head) or None


class TlsLink:
    """umqtt.simple's `ssl=` object: TLS with SNI, bounded reads, inbound byte counting."""

    def __init__(self, context, timeout_ms=10000, buffer=_SCRATCH, fallback=None):
        self.context = context
        # () -> the context to use instead once `context` failed at the TLS layer before it
        # ever connected (a certificate of the charger's own making the server refuses)
        self._fallback = fallback
        self.proven = False  # `context` has completed a handshake
        self.fell_back = None  # why the fallback was taken
        self.strikes = 0  # handshakes of `context` failed in a row
        self.timeout_s = timeout_ms / 1000
        self.rx = 0  # inbound reads that returned data; only the network thread touches it
        self.buf = bytearray(buffer)  # payloads are read into it or through it
        # the transport's inbox (mailbox.Inbox), which payloads are read into; None: those up
        # to len(buf) are read into buf
        self.inbox = None
        self.out = bytearray(OUT)  # small writes gathered into one
        self.oversize = 0  # payloads larger than the buffer, read through it and dropped

    def wrap_socket(self, sock, server_hostname=None):
        sock.settimeout(self.timeout_s)  # bounds the handshake too
        try:
            sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except Exception:  # a socket without TCP options (a test's fake): no harm done
            pass
        tls = sock
        if self.context is not None:
            try:
                tls = self.context.wrap_socket(sock, server_hostname=server_hostname)
            except (OSError, ValueError) as e:
                self._failed(e)
                raise
            self.proven = True
        return _TimedSocket(self, sock, tls)

    def _failed(self, e):
        # A server refusing our certificate shows as its alert (an mbedTLS code, negative)
        # or, as often, as the socket it closed under our next write (EPIPE, ECONNRESET):
        # the same as a network failing in the middle of a handshake, so a context never
        # proven is given up after _STRIKES such failures in a row, never for a timeout or
        # for a ValueError (the server's certificate refused by us: the fallback would not
        # help).
        if self._fallback is None or self.proven or not isinstance(e, OSError):
            return
        code = e.args[0] if e.args else None
        if code == _ETIMEDOUT:
            return
        self.strikes += 1
        if self.strikes < _STRIKES:
            return
        self.context = self._fallback()
        self._fallback = None
        self.fell_back = "TLS handshake failed %d times (last: %s)" % (self.strikes, code)


class _TimedSocket:
    # umqtt toggles setblocking(False/True) around check_msg; on ESP32 and unix that would
    # drop the timeout, so "blocking" here always means "blocking for at most timeout_s".

    def __init__(self, link, raw, tls):
        self._link = link
        self._raw = raw
        self._tls = tls
        self._blocking = True
        self._out = 0  # bytes gathered in link.out
        self._poll = None

    def read(self, n):
        if self._out:
            self.flush()
        buf = self._link.buf
        if n > _BIG:
            inbox = self._link.inbox
            if inbox is None:
                if n <= len(buf):
                    return self.read_into(memoryview(buf)[:n])
            elif n <= MAX_FRAME:
                view = inbox.reserve(n)
                if view is not None:
                    return self.read_into(view)
            return self._read_over(n, memoryview(buf))
        data = self._tls.read(n)
        if data:
            self._link.rx += 1
        elif data is None and self._blocking:
            raise OSError(_ETIMEDOUT)
        return data

    def read_into(self, view):
        """Fill `view` (fewer bytes only when the peer closed); a memoryview of what came."""
        if self._out:
            self.flush()
        got = 0
        n = len(view)
        while got < n:
            k = self._tls.readinto(view[got:])
            if k is None:
                if not self._blocking and not got:
                    return None
                raise OSError(_ETIMEDOUT)
            if not k:
                break  # the peer closed: umqtt sees a short read
            got += k
            self._link.rx += 1
        return view[:got]

    def _read_over(self, n, view):
        head = None
        left = n
        while left:
            got = self.read_into(view[:min(left, len(view))])
            if got is None or not len(got):
                break  # the peer closed: umqtt fails on what follows
            if head is None:
                head = bytes(got[:HEAD])
            left -= len(got)
        self._link.oversize += 1
        return Oversize(n, head or b"")

    def write(self, data, n=None):
        """Gather `data` (its first `n` bytes: umqtt's form) with the writes before it; all
        of it is taken (a large one is written at once, after what was gathered)."""
        if n is not None:
            data = memoryview(data)[:n]
        elif isinstance(data, str):  # umqtt writes its client id and topics as given
            data = data.encode()
        m = len(data)
        out = self._link.out
        k = self._out
        if k + m > len(out):
            self.flush()
            k = 0
            if m > len(out):
                self._send(data)
                return m
        out[k:k + m] = data
        self._out = k + m
        return m

    def flush(self):
        """Write what was gathered."""
        k = self._out
        if k:
            self._out = 0
            self._send(memoryview(self._link.out)[:k])

    def _send(self, data):
        # every byte, blocking for at most timeout_s each time (umqtt may have left the
        # socket non-blocking: a PUBACK gathered during check_msg is flushed by its read)
        if not self._blocking:
            self._raw.settimeout(self._link.timeout_s)
        try:
            view = memoryview(data)
            while len(view):
                n = self._tls.write(view)
                if not n:
                    raise OSError(_ETIMEDOUT, "write timed out")
                view = view[n:]
        finally:
            if not self._blocking:
                self._raw.settimeout(0)

    def wait(self, ms, bell=None):
        """Flush, then sleep until the socket (or `bell`, always the same one) has bytes to
        read or `ms` have passed."""
        if self._out:
            self.flush()
        poll = self._poll
        if poll is None:
            poll = self._poll = select.poll()
            poll.register(self._raw, select.POLLIN)
            if bell is not None:
                poll.register(bell, select.POLLIN)
        poll.poll(ms)

    def setblocking(self, flag):
        self._blocking = flag
        self._raw.settimeout(self._link.timeout_s if flag else 0)

    def close(self):
        try:
            self.flush()  # a DISCONNECT or close frame gathered last
        finally:
            self._tls.close()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def pem_blocks(data):
    """Every PEM block of `data` as DER, in order; DER input is returned as the one block."""
    if b"-----BEGIN" not in data:
        return [data]
    import binascii

    blocks = []
    begin = data.find(b"-----BEGIN")
    while begin >= 0:
        start = data.index(b"\n", begin) + 1
        end = data.index(b"-----END", start)
        blocks.append(binascii.a2b_base64(data[start:end]))
        begin = data.find(b"-----BEGIN", end + 8)
    return blocks


def ca_certificates(cafile):
    """The DER of each certificate in `cafile` (PEM bundle or DER)."""
    return pem_blocks(_read(cafile))


# The OCPP 1.6 security whitepaper's cipher suites, as mbedTLS names them (wss:// only: AWS IoT
# chooses its own for MQTT).
WHITEPAPER_SUITES = ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
                     "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
                     "TLS-RSA-WITH-AES-128-GCM-SHA256", "TLS-RSA-WITH-AES-256-GCM-SHA384")


def tls_context(cafile, certfile=None, keyfile=None, installed_ca=(), ciphers=None,
                identity=None):
    """The server checked against `cafile` (and `installed_ca`), our certificate presented when
    `certfile` and `keyfile` are given (AWS IoT's mutual TLS; security profile 3), only the
    suites in `ciphers` offered when given. `identity`: (certificate DER, SEC 1 key DER) of
    the charger's own making (chargepoint.model.enrolment), presented instead of the files.

    Files may be PEM or DER; `cafile` may be a bundle of several CA certificates (AWS's RSA
    and ECC roots, say). mbedTLS builds without PEM parsing (the unix port's, measured) reject
    PEM with "invalid cert"; then each PEM block is converted to DER and loaded on its own
    (every load adds to the trusted chain). `installed_ca`: DER certificates installed over
    OCPP (InstallCertificate), appended to the same chain after `cafile`'s, so the server
    is checked against the concatenation; one mbedTLS refuses is left out, not fatal.
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cafile:
        ca = _read(cafile)
        try:
            ctx.load_verify_locations(cadata=ca)
        except ValueError:
            for der in pem_blocks(ca):
                ctx.load_verify_locations(cadata=der)
        del ca
    for der in installed_ca:
        try:
            ctx.load_verify_locations(cadata=der)
        except ValueError:
            print("tls: an installed CA certificate is unusable, left out")
    if identity is not None:
        ctx.load_cert_chain(identity[0], identity[1])
    elif certfile:
        cert, key = _read(certfile), _read(keyfile)
        try:
            ctx.load_cert_chain(cert, key)
        except ValueError:
            ctx.load_cert_chain(pem_blocks(cert)[0], pem_blocks(key)[0])
    if ciphers:
        # MicroPython's ssl.SSLContext wraps a tls.SSLContext, which chooses the suites
        getattr(ctx, "_context", ctx).set_ciphers(list(ciphers))
    return ctx
