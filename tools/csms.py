"""Development Central System: OCPP 1.6J over MQTT (AWS OCPP gateway topics) or over a WebSocket, for the simulator and the tests.

Over MQTT (`CentralSystem`) a charge point publishes its OCPP-J frames to `<id>/in` and reads
ours on `<id>/out`. Over a WebSocket (`WebSocketCentralSystem`, tools/csms_websocket.py) it
connects to `<url>/<id>` with the security profiles of the OCPP 1.6 Security Whitepaper. Both
keep the same records and make the same requests (`CentralSystemBase`).
Built on mobilityhouse/ocpp, which validates every frame against the OCPP 1.6 JSON schemas.
CSMS-initiated calls return the CALLRESULT payload as a plain dict with the wire's camelCase keys;
a CALLERROR raises the matching `ocpp.exceptions.OCPPError` subclass, no answer `asyncio.TimeoutError`.
"""

import asyncio
import datetime
import itertools
import json
import logging
import ssl
import sys
import uuid
from dataclasses import dataclass, field

import aiomqtt
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallResult, MessageType, unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, MessageTrigger

LOG = logging.getLogger("csms")

IN_SUFFIX = "/in"
OUT_SUFFIX = "/out"
SUBSCRIPTION = "+" + IN_SUFFIX
QOS = 1
# mobilityhouse/ocpp raises the OCPP 2.0 spellings; a 1.6 charger expects the 1.6 ones on the wire.
_SPELLING_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
_KNOWN_ACTIONS = frozenset(action.value for action in Action)


def utc_now():
    """Current UTC time as OCPP wants it: ISO 8601 with millisecond precision and 'Z'."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


# ---------------------------------------------------------------------------------------------
# Records: what the Central System saw from each charger. Payload fields keep the wire's keys.


@dataclass
class Frame:
    direction: str  # "in" (charger -> CSMS) or "out" (CSMS -> charger)
    time: str
    text: str

    def message(self):
        """The frame as a parsed JSON list, or None if it is not JSON."""
        try:
            return json.loads(self.text)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
            return None


@dataclass
class Transaction:
    id: int
    connector_id: int
    id_tag: str
    meter_start: int
    started_at: str
    status: str  # idTagInfo.status we answered at start
    meter_stop: int = None
    stopped_at: str = None
    reason: str = None
    stop_id_tag: str = None
    meter_values: list = field(default_factory=list)  # meterValue entries, wire keys
    transaction_data: list = None  # StopTransaction.transactionData, wire keys

    @property
    def stopped(self):
        return self.meter_stop is not None


@dataclass
class Session:
    """One WebSocket connection of a charger (WebSocketCentralSystem), from handshake to close."""
    opened: str
    peer: str  # "host:port" of the charger's end
    subprotocol: str
    certificate_cn: str = None  # CN of its verified client certificate (security profile 3)
    certificate_serial: str = None  # its serial number (hex, lower case, no leading zeroes)
    basic_user: str = None  # the user-id of its HTTP Basic authorization (profiles 1 and 2)
    closed: str = None
    close_code: int = None  # the WebSocket close code, 1006 for a connection that just ended

    @property
    def open(self):
        return self.closed is None


@dataclass
class Charger:
    id: str
    boots: list = field(default_factory=list)  # BootNotification payloads
    statuses: dict = field(default_factory=dict)  # connectorId -> latest StatusNotification payload
    transactions: dict = field(default_factory=dict)  # transactionId -> Transaction
    frames: list = field(default_factory=list)  # every Frame in and out, in order
    authorizations: list = field(default_factory=list)  # (idTag, status answered)
    meter_values: list = field(default_factory=list)  # MeterValues payloads outside a known transaction
    data_transfers: list = field(default_factory=list)  # DataTransfer payloads from the charger
    security_events: list = field(default_factory=list)  # SecurityEventNotification types
    csrs: list = field(default_factory=list)  # SignCertificate requests (PEM)
    certificates_signed: list = field(default_factory=list)  # CertificateSigned answers (status)
    heartbeats: int = 0
    diagnostics_status: str = None
    log_status: str = None  # the latest LogStatusNotification
    firmware_status: str = None
    # At-least-once delivery: a resent transaction message keeps its OCPP message id.
    start_message_ids: dict = field(default_factory=dict)  # message id -> transactionId
    stop_message_ids: set = field(default_factory=set)
    sessions: list = field(default_factory=list)  # WebSocket connections, oldest first (not MQTT)

    @property
    def certificate_cn(self):
        """The CN of the client certificate of its latest WebSocket connection, else None."""
        return self.sessions[-1].certificate_cn if self.sessions else None

    def calls(self, action, direction="in"):
        """Payloads of the CALLs for `action` in one direction, oldest first."""
        found = []
        for frame in self.frames:
            message = frame.message()
            if (frame.direction == direction and isinstance(message, list) and len(message) == 4
                    and message[0] == MessageType.Call and message[2] == action):
                found.append(message[3])
        return found

    def replies(self, message_id, direction="out"):
        """Every CALLRESULT/CALLERROR frame (parsed) answering `message_id` in one direction."""
        found = []
        for frame in self.frames:
            message = frame.message()
            if (frame.direction == direction and isinstance(message, list) and len(message) >= 3
                    and message[0] in (MessageType.CallResult, MessageType.CallError)
                    and message[1] == message_id):
                found.append(message)
        return found


# ---------------------------------------------------------------------------------------------
# One ocpp ChargePoint per charger, fed by the transport (MQTT subscriber or WebSocket).


class _Connection:
    """The `send(text)` / `recv()` pair ocpp's ChargePoint expects, over the charger's topics
    or its WebSocket: it outlasts the charger's connections, as its records do."""

    def __init__(self, central, charger_id):
        self._central = central
        self._charger_id = charger_id
        self.inbound = asyncio.Queue()

    async def recv(self):
        return await self.inbound.get()

    async def send(self, text):
        await self._central._transmit(self._charger_id, text)


class ChargerHandler(ChargePoint):
    """Answers one charger's CALLs and records what it reports."""

    def __init__(self, central, charger, connection):
        super().__init__(charger.id, connection, response_timeout=central.response_timeout)
        self._central = central
        self.charger = charger
        self._payload = {}  # the CALL being handled, wire keys (the handlers get snake_case)
        self._awaited = set()  # message ids of our CALLs still waiting for an answer
        self.results = {}  # message id -> CALLRESULT payload, wire keys

    async def route_message(self, raw_msg):
        try:
            await self._route(raw_msg)
        except Exception:  # a bad frame never stops the handler
            LOG.exception("%s: failed to handle %r", self.id, raw_msg)
        finally:
            self._central._changed()

    async def _route(self, raw_msg):
        try:
            msg = unpack(raw_msg)
        except OCPPError:
            LOG.warning("%s: dropped a frame that is not OCPP-J: %r", self.id, raw_msg)
            return
        if isinstance(msg, Call):
            if msg.action not in self.route_map:
                await self._send(msg.create_call_error(_unhandled(msg.action)).to_json())
                return
            self._payload = msg.payload if isinstance(msg.payload, dict) else {}
        elif isinstance(msg, CallResult) and msg.unique_id in self._awaited:
            self.results[msg.unique_id] = msg.payload
        await super().route_message(raw_msg)

    async def _send(self, message):
        if message.startswith("[4"):
            frame = json.loads(message)
            frame[2] = _SPELLING_16.get(frame[2], frame[2])
            message = json.dumps(frame, separators=(",", ":"))
        await super()._send(message)

    async def request(self, payload, timeout):
        """Send one CALL; return the CALLRESULT payload with wire keys."""
        message_id = str(uuid.uuid4())
        self._awaited.add(message_id)
        try:
            await asyncio.wait_for(
                self.call(payload, suppress=False, unique_id=message_id), timeout)
            return self.results.pop(message_id, {})
        finally:
            self._awaited.discard(message_id)
            self.results.pop(message_id, None)

    def _id_tag_info(self, id_tag):
        return {"status": self._central.id_tag_status(id_tag)}

    @on(Action.boot_notification)
    def on_boot_notification(self, **_):
        self.charger.boots.append(self._payload)
        return call_result.BootNotification(
            current_time=utc_now(), interval=self._central.heartbeat_interval, status="Accepted")

    @on(Action.heartbeat)
    def on_heartbeat(self):
        self.charger.heartbeats += 1
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id, **_):
        self.charger.statuses[connector_id] = self._payload
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        info = self._id_tag_info(id_tag)
        self.charger.authorizations.append((id_tag, info["status"]))
        return call_result.Authorize(id_tag_info=info)

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id, id_tag, meter_start, timestamp, call_unique_id,
                             **_):
        info = self._id_tag_info(id_tag)
        transaction_id = self.charger.start_message_ids.get(call_unique_id)
        if transaction_id is None:
            transaction_id = self._central._next_transaction_id()
            self.charger.start_message_ids[call_unique_id] = transaction_id
            self.charger.transactions[transaction_id] = Transaction(
                id=transaction_id, connector_id=connector_id, id_tag=id_tag,
                meter_start=meter_start, started_at=timestamp, status=info["status"])
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=info)

    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop, timestamp, transaction_id, call_unique_id,
                            id_tag=None, reason=None, **_):
        if call_unique_id not in self.charger.stop_message_ids:
            self.charger.stop_message_ids.add(call_unique_id)
            transaction = self.charger.transactions.get(transaction_id)
            if transaction is None:
                # Started before this Central System ran: keep the stop anyway.
                transaction = Transaction(
                    id=transaction_id, connector_id=None, id_tag=id_tag, meter_start=None,
                    started_at=None, status=None)
                self.charger.transactions[transaction_id] = transaction
            if not transaction.stopped:
                transaction.meter_stop = meter_stop
                transaction.stopped_at = timestamp
                transaction.reason = reason
                transaction.stop_id_tag = id_tag
                transaction.transaction_data = self._payload.get("transactionData")
        if id_tag is None:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.meter_values)
    def on_meter_values(self, connector_id, transaction_id=None, **_):
        transaction = self.charger.transactions.get(transaction_id)
        if transaction is None:
            self.charger.meter_values.append(self._payload)
        else:
            transaction.meter_values.extend(self._payload.get("meterValue", []))
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id, **_):
        self.charger.data_transfers.append(self._payload)
        status = "Accepted" if vendor_id in self._central.vendors else "UnknownVendorId"
        return call_result.DataTransfer(status=status)

    @on(Action.security_event_notification)
    def on_security_event_notification(self, type, timestamp, tech_info=None):  # noqa: A002
        self.charger.security_events.append(type)
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, csr):
        self.charger.csrs.append(csr)
        signer = self._central.signer
        status = "Accepted" if signer is not None else "Rejected"
        return call_result.SignCertificate(status=status)

    @after(Action.sign_certificate)
    async def after_sign_certificate(self, csr):
        """The development signer: the CA issues a certificate for the request and it goes
        back in CertificateSigned (a request it cannot sign gets none)."""
        signer = self._central.signer
        if signer is None:
            return
        try:
            chain = signer(self.id, csr)
        except ValueError as e:
            LOG.warning("%s: request not signed: %s", self.id, e)
            return
        answer = await self.request(call.CertificateSigned(certificate_chain=chain),
                                    self._central.response_timeout)
        self.charger.certificates_signed.append(answer.get("status"))

    @on(Action.log_status_notification)
    def on_log_status_notification(self, status, request_id=None):
        self.charger.log_status = status
        return call_result.LogStatusNotification()

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(self, status):
        self.charger.diagnostics_status = status
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, status):
        self.charger.firmware_status = status
        return call_result.FirmwareStatusNotification()

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(self, status, request_id=None):
        self.charger.firmware_status = status
        return call_result.SignedFirmwareStatusNotification()


def _unhandled(action):
    # OCPP-J 1.6 error table: a known action we do not support is NotSupported, an unknown one
    # NotImplemented (mobilityhouse/ocpp answers the other way round).
    if action in _KNOWN_ACTIONS:
        return NotSupportedError(details={"cause": "%s is not supported by this Central System" % action})
    return OcppNotImplemented(details={"cause": "%s is not an OCPP 1.6 action" % action})


# ---------------------------------------------------------------------------------------------
# What every transport shares: the records, the handlers, waiting, and the requests.


class CentralSystemBase:
    """The Central System's records and requests, whatever carries the frames. A transport
    (a subclass) gives `start()`, `stop()`, `run()`, `send_raw()` and `_transmit(id, text)`,
    and hands every inbound frame to `_received(id, text)`."""

    def __init__(self, authorized=("04A1B2C3D4E5F6",), heartbeat_interval=300, *, vendors=(),
                 response_timeout=30, signer=None):
        self.authorized = set(authorized)
        # (charger id, CSR PEM) -> certificateChain PEM: SignCertificate is Accepted and the
        # chain sent in CertificateSigned (tools.certs.signer_for); None: Rejected
        self.signer = signer
        self.heartbeat_interval = heartbeat_interval
        self.vendors = set(vendors)
        self.response_timeout = response_timeout
        self.chargers = {}  # charger id -> Charger
        self.handlers = {}  # charger id -> ChargerHandler
        self.frame_listeners = []  # callables (charger_id, Frame), e.g. a printer or a log file
        self._tasks = {}  # charger id -> ChargerHandler.start() task
        self._transaction_ids = itertools.count(1)
        self._tick = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    async def _stop_handlers(self):
        # Cancelled again until they end: on Python 3.11 asyncio.wait_for (inside aiomqtt's
        # publish) can swallow a cancellation that comes as its future completes, and the
        # handler then waits for ever for a connection that will not come (a stop that hung
        # make bench for good).
        tasks = list(self._tasks.values())
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1)
        for task in tasks:  # (retrieved: no "exception was never retrieved" at exit)
            if not task.cancelled():
                task.exception()
        self._tasks.clear()

    async def wait_for(self, predicate, timeout=10):
        """Return predicate()'s first truthy value, re-checked after every frame handled and every
        (dis)connection; asyncio.TimeoutError after `timeout` seconds (None: wait for ever)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            tick = self._tick
            value = predicate()
            if value:
                return value
            if deadline is None:
                await tick.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise asyncio.TimeoutError("condition not met within %ss" % timeout)
            try:
                await asyncio.wait_for(tick.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _changed(self):
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    # -- frames -----------------------------------------------------------------------------

    def charger(self, charger_id):
        """The record of `charger_id`, with its handler started; created on first use."""
        if charger_id not in self.handlers:
            charger = self.chargers.setdefault(charger_id, Charger(charger_id))
            self.handlers[charger_id] = ChargerHandler(
                self, charger, _Connection(self, charger_id))
        if charger_id not in self._tasks:  # again after stop() and start(): records survive
            self._tasks[charger_id] = asyncio.ensure_future(self.handlers[charger_id].start())
        return self.chargers[charger_id]

    def _received(self, charger_id, text):
        """One frame from the charger: recorded, then handed to its handler."""
        self.charger(charger_id)
        self._record(charger_id, "in", text)
        self.handlers[charger_id]._connection.inbound.put_nowait(text)

    def _record(self, charger_id, direction, text):
        frame = Frame(direction, utc_now(), text)
        self.chargers[charger_id].frames.append(frame)
        for listener in self.frame_listeners:
            try:
                listener(charger_id, frame)
            except Exception:  # a broken printer must not stop the Central System
                LOG.exception("frame listener failed")
        self._changed()

    def id_tag_status(self, id_tag):
        return "Accepted" if id_tag in self.authorized else "Invalid"

    def _next_transaction_id(self):
        return next(self._transaction_ids)

    # -- CSMS-initiated calls -----------------------------------------------------------------

    async def _request(self, charger_id, payload, timeout):
        self.charger(charger_id)
        timeout = self.response_timeout if timeout is None else timeout
        return await self.handlers[charger_id].request(payload, timeout)

    async def remote_start(self, cp_id, id_tag, connector_id=None, charging_profile=None, *,
                           timeout=None):
        return await self._request(cp_id, call.RemoteStartTransaction(
            id_tag=id_tag, connector_id=connector_id, charging_profile=charging_profile), timeout)

    async def remote_stop(self, cp_id, transaction_id, *, timeout=None):
        return await self._request(
            cp_id, call.RemoteStopTransaction(transaction_id=int(transaction_id)), timeout)

    async def change_configuration(self, cp_id, key, value, *, timeout=None):
        return await self._request(
            cp_id, call.ChangeConfiguration(key=key, value=str(value)), timeout)

    async def get_configuration(self, cp_id, keys=None, *, timeout=None):
        return await self._request(
            cp_id, call.GetConfiguration(key=list(keys) if keys else None), timeout)

    async def reset(self, cp_id, kind="Soft", *, timeout=None):
        return await self._request(cp_id, call.Reset(type=kind.capitalize()), timeout)

    async def trigger_message(self, cp_id, message, connector_id=None, *, timeout=None):
        known = [m.value for m in MessageTrigger]
        if message not in known:  # else the library's schema error reads like the charger's
            raise ValueError("no message %r to trigger; one of %s" % (message, ", ".join(known)))
        return await self._request(cp_id, call.TriggerMessage(
            requested_message=message, connector_id=connector_id), timeout)

    async def change_availability(self, cp_id, connector_id, type, *, timeout=None):  # noqa: A002
        return await self._request(cp_id, call.ChangeAvailability(
            connector_id=int(connector_id), type=type.capitalize()), timeout)

    async def unlock_connector(self, cp_id, connector_id, *, timeout=None):
        return await self._request(
            cp_id, call.UnlockConnector(connector_id=int(connector_id)), timeout)

    async def clear_cache(self, cp_id, *, timeout=None):
        return await self._request(cp_id, call.ClearCache(), timeout)

    async def data_transfer(self, cp_id, vendor_id, message_id=None, data=None, *, timeout=None):
        return await self._request(cp_id, call.DataTransfer(
            vendor_id=vendor_id, message_id=message_id, data=data), timeout)

    async def set_charging_profile(self, cp_id, connector_id, profile, *, timeout=None):
        """`profile`: a csChargingProfiles object with OCPP's camelCase keys."""
        return await self._request(cp_id, call.SetChargingProfile(
            connector_id=int(connector_id), cs_charging_profiles=profile), timeout)

    async def clear_charging_profile(self, cp_id, id=None, connector_id=None,  # noqa: A002
                                     purpose=None, stack_level=None, *, timeout=None):
        return await self._request(cp_id, call.ClearChargingProfile(
            id=id, connector_id=connector_id, charging_profile_purpose=purpose,
            stack_level=stack_level), timeout)

    async def get_composite_schedule(self, cp_id, connector_id, duration, unit=None, *,
                                     timeout=None):
        return await self._request(cp_id, call.GetCompositeSchedule(
            connector_id=int(connector_id), duration=int(duration),
            charging_rate_unit=unit), timeout)

    async def send_local_list(self, cp_id, version, update_type, entries=None, *, timeout=None):
        """`entries`: AuthorizationData objects with OCPP's camelCase keys."""
        return await self._request(cp_id, call.SendLocalList(
            list_version=int(version), update_type=update_type,
            local_authorization_list=entries), timeout)

    async def update_firmware(self, cp_id, location, retrieve_date, retries=None,
                              retry_interval=None, *, timeout=None):
        return await self._request(cp_id, call.UpdateFirmware(
            location=location, retrieve_date=retrieve_date, retries=retries,
            retry_interval=retry_interval), timeout)

    async def signed_update_firmware(self, cp_id, request_id, location, retrieve_date,
                                     certificate, signature, install_date=None, retries=None,
                                     retry_interval=None, *, timeout=None):
        """SignedUpdateFirmware (security extensions): `certificate` the signing certificate
        (PEM), `signature` base64 (tools.fwpack --sign-key writes it)."""
        firmware = {"location": location, "retrieve_date_time": retrieve_date,
                    "signing_certificate": certificate, "signature": signature}
        if install_date is not None:
            firmware["install_date_time"] = install_date
        return await self._request(cp_id, call.SignedUpdateFirmware(
            request_id=int(request_id), firmware=firmware, retries=retries,
            retry_interval=retry_interval), timeout)

    async def reserve_now(self, cp_id, connector_id, expiry_date, id_tag, reservation_id,
                          parent_id_tag=None, *, timeout=None):
        return await self._request(cp_id, call.ReserveNow(
            connector_id=int(connector_id), expiry_date=expiry_date, id_tag=id_tag,
            reservation_id=int(reservation_id), parent_id_tag=parent_id_tag), timeout)

    async def cancel_reservation(self, cp_id, reservation_id, *, timeout=None):
        return await self._request(cp_id, call.CancelReservation(
            reservation_id=int(reservation_id)), timeout)

    async def get_diagnostics(self, cp_id, location, retries=None, retry_interval=None, *,
                              timeout=None):
        return await self._request(cp_id, call.GetDiagnostics(
            location=location, retries=retries, retry_interval=retry_interval), timeout)

    async def get_log(self, cp_id, log_type, request_id, location, *, timeout=None):
        """GetLog (security extensions): log_type DiagnosticsLog or SecurityLog."""
        return await self._request(cp_id, call.GetLog(
            log={"remote_location": location}, log_type=log_type,
            request_id=int(request_id)), timeout)

    async def install_certificate(self, cp_id, pem, kind="CentralSystemRootCertificate", *,
                                  timeout=None):
        return await self._request(cp_id, call.InstallCertificate(
            certificate_type=kind, certificate=pem), timeout)

    async def get_installed_certificate_ids(self, cp_id, kind="CentralSystemRootCertificate",
                                            *, timeout=None):
        return await self._request(cp_id, call.GetInstalledCertificateIds(
            certificate_type=kind), timeout)

    async def extended_trigger_message(self, cp_id, message, connector_id=None, *,
                                       timeout=None):
        return await self._request(cp_id, call.ExtendedTriggerMessage(
            requested_message=message, connector_id=connector_id), timeout)

    async def get_local_list_version(self, cp_id, *, timeout=None):
        return await self._request(cp_id, call.GetLocalListVersion(), timeout)


# ---------------------------------------------------------------------------------------------
# Over MQTT: the broker session.


def tls_context(ca, cert, key):
    """Mutual TLS: verify the broker against `ca` (hostname included) and present our cert."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    return context


def _no_delay(client):
    """Nagle's algorithm off on the Central System's MQTT socket: an answer published right
    behind a PUBACK would otherwise wait for the broker's delayed ACK (~40 ms on Linux), and
    the bench's latency figures would measure that. (aiomqtt keeps its paho client private.)"""
    import socket

    try:
        client._client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # noqa: SLF001
    except (AttributeError, OSError):  # another aiomqtt: the figures only get slower
        LOG.warning("could not set TCP_NODELAY on the MQTT socket")


class CentralSystem(CentralSystemBase):
    """The Central System over MQTT, as a library: `async with CentralSystem(...) as cs:` or
    `await cs.run()`."""

    def __init__(self, host, port, ca, cert, key, authorized=("04A1B2C3D4E5F6",),
                 heartbeat_interval=300, *, vendors=(), response_timeout=30, client_id="csms",
                 reconnect_delay=0.25, max_reconnect_delay=5.0, signer=None):
        super().__init__(authorized, heartbeat_interval, vendors=vendors,
                         response_timeout=response_timeout, signer=signer)
        self.host = host
        self.port = port
        self._tls = tls_context(ca, cert, key)
        self.client_id = client_id
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.connections = 0  # successful MQTT connections so far
        self._client = None  # the aiomqtt client while connected
        self._run_task = None

    @property
    def connected(self):
        return self._client is not None

    async def run(self):
        """Stay connected to the broker until cancelled, reconnecting with backoff."""
        delay = self.reconnect_delay
        try:
            while True:
                connections = self.connections
                try:
                    await self._session()
                except aiomqtt.MqttError as error:
                    LOG.warning("MQTT connection to %s:%s lost or refused: %s",
                                self.host, self.port, error)
                except Exception:  # a bug must not end the Central System's session for good
                    LOG.exception("MQTT session with %s:%s failed", self.host, self.port)
                if self.connections != connections:
                    delay = self.reconnect_delay  # it was up: back off afresh
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
        finally:
            await self._stop_handlers()

    async def _session(self):
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, clean_session=False,
            tls_context=self._tls, keepalive=30)
        async with client:
            _no_delay(client)
            await client.subscribe(SUBSCRIPTION, qos=QOS)
            self._client = client
            self.connections += 1
            self._changed()
            LOG.info("connected to %s:%s as %s", self.host, self.port, self.client_id)
            try:
                async for message in client.messages:
                    self._on_mqtt_message(str(message.topic), message.payload)
            finally:
                self._client = None
                self._changed()

    async def start(self, timeout=10):
        """Start `run()` in the background and wait for the first connection."""
        self._run_task = asyncio.ensure_future(self.run())
        try:
            await self.wait_for(lambda: self.connected, timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self):
        task, self._run_task = self._run_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _on_mqtt_message(self, topic, payload):
        charger_id = topic[: -len(IN_SUFFIX)]
        if not topic.endswith(IN_SUFFIX) or not charger_id or "/" in charger_id:
            return
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        self._received(charger_id, text)

    async def _transmit(self, charger_id, text):
        self._record(charger_id, "out", text)
        while True:
            client = self._client
            if client is None:
                await self.wait_for(lambda: self.connected, timeout=None)
                continue
            try:
                await client.publish(charger_id + OUT_SUFFIX, text, qos=QOS, timeout=5)
                return
            except aiomqtt.MqttError as error:
                # At-least-once: publish again on the next connection.
                LOG.warning("publish to %s%s failed (%s), retrying", charger_id, OUT_SUFFIX, error)
                if self._client is client:
                    await asyncio.sleep(self.reconnect_delay)

    async def send_raw(self, cp_id, frames):
        """Publish `frames` (str or bytes each, any content) to the charger all at once, as a
        misbehaving or busy Central System might; the answers land in the charger's record."""
        self.charger(cp_id)
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        for frame in frames:
            self._record(cp_id, "out", frame.decode("utf-8", "replace")
                         if isinstance(frame, bytes) else frame)
        await asyncio.gather(*(client.publish(cp_id + OUT_SUFFIX, frame, qos=QOS, timeout=10)
                               for frame in frames))


def __getattr__(name):
    # The WebSocket transport lives in its own module, which imports this one: fetched on
    # first use, so `from tools.csms import WebSocketCentralSystem` works whichever is first.
    if name == "WebSocketCentralSystem":
        from tools.csms_websocket import WebSocketCentralSystem
        return WebSocketCentralSystem
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


if __name__ == "__main__":
    # The CLI lives apart; `python3 -m tools.csms` runs it.
    from tools.csms_cli import main

    sys.exit(main())
