"""The development Central System over a WebSocket (OCPP-J 1.6), with the security profiles of
the OCPP 1.6 Security Whitepaper: the same records and requests as over MQTT (tools.csms).

A charge point connects to `<url>/<its id percent-encoded>` offering the subprotocol `ocpp1.6`:

  profile 0  ws://,  no authentication (an allow-list of ids may still apply)
  profile 1  ws://,  HTTP Basic: `Authorization: Basic base64(<id>:<password>)`
  profile 2  wss://, the server's certificate checked by the charger, and Basic as in profile 1
  profile 3  wss://, a client certificate (the server's context asks for one), no Basic

The password is the charger's AuthorizationKey: its bytes hex-decoded when it is 32..40 hex
digits, else the 16..20 characters as they are. The handshake is refused with 404 for a path
that names no charger or an id outside the allow-list (`chargers`, and the ids of `keys`),
401 for a missing or wrong Basic authorization where the id has a key and no verified client
certificate came, 400 without `ocpp1.6` among the offered subprotocols; every refusal is kept
in `refusals`. A second connection for an id replaces the first (closed with 1000).

    async with WebSocketCentralSystem("127.0.0.1", 0, keys={"CP001": "0123..."}) as cs:
        url = cs.url                                   # ws://127.0.0.1:PORT/ocpp
        await cs.wait_for(lambda: "CP001" in cs.connected_ids)
        await cs.remote_start("CP001", "04A1B2C3D4E5F6")
        await cs.close("CP001")                        # the charger reconnects
"""

import asyncio
import base64
import binascii
import hmac
import logging
import ssl as ssl_module
import urllib.parse
from dataclasses import dataclass

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from tools.basic_auth import authorization_password, basic_authorization  # noqa: F401
from tools.csms import CentralSystemBase, Session, utc_now

LOG = logging.getLogger("csms")

SUBPROTOCOL = "ocpp1.6"
DEFAULT_PATH = "/ocpp"
REALM = "OCPP"
_CLOSE_TIMEOUT = 5  # seconds a closing handshake may take before the TCP connection is cut


@dataclass
class Refusal:
    """A handshake the Central System refused."""
    time: str
    path: str  # as requested, query included
    charger_id: str  # percent-decoded from the path; None if the path names none
    status: int  # the HTTP status answered: 400, 401 or 404
    reason: str


def server_tls_context(cert, key, client_ca=None, client_cert_required=True):
    """wss:// for the Central System: our certificate and key; with `client_ca`, chargers'
    certificates are asked for and checked against it (security profile 3): required, or
    optional (client_cert_required=False: profile 2 chargers on the same port)."""
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl_module.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = (ssl_module.CERT_REQUIRED if client_cert_required
                               else ssl_module.CERT_OPTIONAL)
    return context


def _basic_credentials(header):
    """(user-id, password bytes) of a Basic `Authorization` header, or None."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password


def _offered_subprotocols(headers):
    return [word.strip() for value in headers.get_all("Sec-WebSocket-Protocol")
            for word in value.split(",")]


def _certificate(connection):
    """(CN, serial number in hex) of the charger's verified client certificate, or Nones."""
    tls = connection.transport.get_extra_info("ssl_object")
    peer = tls.getpeercert() if tls is not None else None
    serial = (peer or {}).get("serialNumber")
    serial = serial.lower().lstrip("0") or "0" if serial else None
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value, serial
    return None, serial


class WebSocketCentralSystem(CentralSystemBase):
    """The Central System as a WebSocket server: `async with WebSocketCentralSystem(...) as cs:`
    or `await cs.run()`. `port` 0 picks a free one (`cs.port` once started).

    `keys`: {charger id: AuthorizationKey}; such an id needs Basic auth (unless it came with a
    verified client certificate). `chargers`: ids let in without a key. When either is given,
    only their ids are let in (404 for others). `ssl`: an ssl.SSLContext for wss://
    (`server_tls_context`). `ping_interval`: seconds between our pings (None: the charger's
    WebSocketPingInterval alone keeps the link checked)."""

    def __init__(self, host="127.0.0.1", port=0, path=DEFAULT_PATH, keys=None, ssl=None,
                 authorized=("04A1B2C3D4E5F6",), heartbeat_interval=300, *, chargers=None,
                 vendors=(), response_timeout=30, ping_interval=None, max_size=2 ** 20,
                 signer=None):
        super().__init__(authorized, heartbeat_interval, vendors=vendors,
                         response_timeout=response_timeout, signer=signer)
        self.host = host
        self.port = port
        self.path = "/" + path.strip("/") if path.strip("/") else ""
        self.keys = dict(keys or {})
        self._passwords = {cp_id: authorization_password(key) for cp_id, key in self.keys.items()}
        self.allowed = None  # None: every id
        if keys is not None or chargers is not None:
            self.allowed = set(self.keys) | set(chargers or ())
        self.ssl = ssl
        self.ping_interval = ping_interval
        self.max_size = max_size
        self.refusals = []  # Refusal, oldest first
        self._server = None
        self._sockets = {}  # charger id -> its open ServerConnection
        self._closing = set()  # closes of replaced connections, going on

    def set_key(self, cp_id, key):
        """Charger `cp_id`'s AuthorizationKey from now on (a Central System learns it before it
        sends the charger ChangeConfiguration AuthorizationKey)."""
        self.keys[cp_id] = key
        self._passwords[cp_id] = authorization_password(key)
        if self.allowed is not None:
            self.allowed.add(cp_id)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def connected(self):
        """True while listening (the MQTT Central System's `connected`: ready for chargers)."""
        return self._server is not None

    @property
    def url(self):
        """The base URL chargers are given; each appends "/" + its id."""
        scheme = "wss" if self.ssl is not None else "ws"
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s:%d%s" % (scheme, host, self.port, self.path)

    @property
    def connected_ids(self):
        """The ids of the chargers whose socket is open now."""
        return frozenset(self._sockets)

    def is_connected(self, cp_id):
        return cp_id in self._sockets

    async def start(self):
        """Listen; OSError if the address is taken."""
        if self._server is not None:
            return
        self._server = await serve(
            self._serve_charger, self.host, self.port, ssl=self.ssl,
            subprotocols=[SUBPROTOCOL], process_request=self._check_handshake,
            compression=None, ping_interval=self.ping_interval, max_size=self.max_size,
            close_timeout=_CLOSE_TIMEOUT, server_header=None)
        self.port = self._server.sockets[0].getsockname()[1]
        self._changed()
        LOG.info("listening on %s", self.url)

    async def stop(self):
        """Close every charger's socket (1001) and stop listening; the records stay."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self._stop_handlers()
        self._changed()

    async def run(self):
        """Serve until cancelled."""
        await self.start()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.stop()

    # -- the handshake ----------------------------------------------------------------------

    def _charger_id(self, path):
        """The charger id a request path names (percent-decoded), or None."""
        path = path.split("?", 1)[0]
        prefix = self.path + "/"
        if not path.startswith(prefix):
            return None
        segment = path[len(prefix):]
        if not segment or "/" in segment:
            return None
        return urllib.parse.unquote(segment, errors="strict") or None

    def _refuse(self, connection, path, cp_id, status, reason):
        self.refusals.append(Refusal(utc_now(), path, cp_id, status, reason))
        LOG.info("refused %s (%s): %d %s", path, cp_id, status, reason)
        self._changed()
        response = connection.respond(status, reason + "\n")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="%s", charset="UTF-8"' % REALM
        return response

    def _check_handshake(self, connection, request):
        path = request.path
        try:
            cp_id = self._charger_id(path)
        except UnicodeDecodeError:
            cp_id = None
        if cp_id is None:
            return self._refuse(connection, path, None, 404,
                                "no charge point id under %s/" % self.path)
        if self.allowed is not None and cp_id not in self.allowed:
            return self._refuse(connection, path, cp_id, 404, "unknown charge point")
        password = self._passwords.get(cp_id)
        if password is not None and _certificate(connection)[0] is None:
            credentials = _basic_credentials(request.headers.get("Authorization"))
            if credentials is None:
                return self._refuse(connection, path, cp_id, 401, "Basic authorization needed")
            user, given = credentials
            # both compared whatever the first gives: no timing hint of which was wrong
            good = hmac.compare_digest(user.encode("utf-8"), cp_id.encode("utf-8"))
            good &= hmac.compare_digest(given, password)
            if not good:
                return self._refuse(connection, path, cp_id, 401, "wrong Basic authorization")
        if SUBPROTOCOL not in _offered_subprotocols(request.headers):
            return self._refuse(connection, path, cp_id, 400,
                                "the %s subprotocol is required" % SUBPROTOCOL)
        return None

    # -- a charger's connection -------------------------------------------------------------

    async def _serve_charger(self, connection):
        cp_id = self._charger_id(connection.request.path)
        credentials = _basic_credentials(connection.request.headers.get("Authorization"))
        peer = connection.remote_address
        cn, serial = _certificate(connection)
        session = Session(opened=utc_now(), peer="%s:%s" % (peer[0], peer[1]),
                          subprotocol=connection.subprotocol,
                          certificate_cn=cn, certificate_serial=serial,
                          basic_user=credentials[0] if credentials else None)
        charger = self.charger(cp_id)
        charger.sessions.append(session)
        old = self._sockets.get(cp_id)
        self._sockets[cp_id] = connection
        if old is not None:  # the charger came again: its old link is dead or a duplicate
            closing = asyncio.ensure_future(
                old.close(1000, "another connection for this charge point"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        LOG.info("%s connected from %s", cp_id, session.peer)
        self._changed()
        try:
            async for message in connection:
                self._received(cp_id, message if isinstance(message, str)
                               else message.decode("utf-8", "replace"))
        except ConnectionClosed:
            pass
        finally:
            session.closed = utc_now()
            session.close_code = connection.close_code
            if self._sockets.get(cp_id) is connection:
                del self._sockets[cp_id]
            LOG.info("%s disconnected (%s)", cp_id, session.close_code)
            self._changed()

    async def _transmit(self, charger_id, text):
        connection = self._sockets.get(charger_id)
        if connection is None:
            if not text.startswith("[2"):
                # An answer for a link that has gone: lost, as with any Central System; the
                # charger sends its CALL again on the next one.
                LOG.warning("%s: not connected, answer dropped: %s", charger_id, text)
                return
            # Our CALL waits for the charger (the request's timeout bounds the wait).
            connection = await self.wait_for(lambda: self._sockets.get(charger_id), None)
        self._record(charger_id, "out", text)
        try:
            await connection.send(text)
        except ConnectionClosed:
            LOG.warning("%s: the link closed while sending %s", charger_id, text)

    async def send_raw(self, cp_id, frames, binary=False):
        """Send `frames` (str or bytes each, any content) on the charger's socket back to back,
        as text messages (bytes as they are, valid UTF-8 or not), or as binary ones;
        ConnectionError if it is not connected. The answers land in the charger's record."""
        self.charger(cp_id)
        connection = self._sockets.get(cp_id)
        if connection is None:
            raise ConnectionError("charge point %s is not connected" % cp_id)
        for frame in frames:
            self._record(cp_id, "out", frame.decode("utf-8", "replace")
                         if isinstance(frame, bytes) else frame)
            await connection.send(frame, text=not binary)

    async def close(self, cp_id, code=1000, reason="", abort=False):
        """Drop the charger's socket: a closing handshake with `code`, or with abort=True the
        TCP connection cut without one. Returns once it is gone; False if none was open."""
        connection = self._sockets.get(cp_id)
        if connection is None:
            return False
        if abort:
            connection.transport.abort()
        else:
            await connection.close(code, reason)
        await self.wait_for(lambda: self._sockets.get(cp_id) is not connection, _CLOSE_TIMEOUT)
        return True
