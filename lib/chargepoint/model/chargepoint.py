"""The charge point: OCPP 1.6 Core profile on top of the engine, the connectors and the queue.

Composition: `ChargePoint(board, transport, store, clock, ...)`, then call `loop()` every few
tens of milliseconds. Nothing in here blocks or does I/O except through the injected store,
transport, clock and hardware:
  board      as documented in chargepoint.model.board
  transport  send(text), can_send(), connected, receive() -> None, (text, stale), or
             (head, stale, size) for a frame over the engine's MAX_FRAME (only its head kept)
  store      read(name, default), write(name, value) (atomic), remove(name), names(prefix):
             chargepoint.platform.store.FileStore on the device
  clock      chargepoint.platform.clock.Clock (tests give it fake ticks)
"""
from micropython import const

from chargepoint.model import (diagnostics, localauth, metering, remote, reservation, security,
                              smartcharging)
from chargepoint.model.authcache import AuthCache
from chargepoint.model.connector import Connector
from chargepoint.model.sessions import Sessions
from chargepoint.model.txqueue import TxQueue, resolve_stamps
from chargepoint.ocpp.config import BOOL, CSL, INT, RO, STR, Config
from chargepoint.ocpp.engine import Call, Engine

_OUTBOX = const(16)  # volatile calls waiting; the oldest goes when full
_BOOT_RETRY_S = const(60)  # after Pending/Rejected with interval 0
_BOOT_LOST_S = const(10)  # after an unanswered BootNotification
_FRAMES_PER_LOOP = const(4)
_RESET_GRACE_MS = const(3000)  # lets the Reset answer and the stops leave before rebooting

# always supported; + LocalAuthListManagement on a file store
PROFILES = "Core,RemoteTrigger,SmartCharging,Reservation"


def _nonneg(v):
    return v >= 0


def _positive(v):
    return v > 0


def _valid_rotation(value):
    # "<connector>.<RST|RTS|SRT|STR|TRS|TSR|NotApplicable|Unknown>", comma separated
    for item in value.split(","):
        cid, _, rotation = item.partition(".")
        if not cid.isdigit() or rotation not in _ROTATIONS:
            return False
    return True


_ROTATIONS = ("NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR")


class ChargePoint:
    def __init__(self, board, transport, store, clock, reboot=None, boot_info=None,
                 updater=None):
        self.board = board
        self.transport = transport
        self.store = store
        state = store.read("boot", {"n": 0})
        state["n"] += 1
        store.write("boot", state)
        self.boot = state["n"]
        self.clock = clock
        clock.boot = self.boot
        self._uid = 0
        self._ref = 0
        self.reboot = reboot  # reboot(hard): the platform's reset, injected
        self.boot_info = boot_info or board.info
        self.connectors = [Connector(i + 1, hw) for i, hw in enumerate(board.connectors)]
        self.config = Config(store)
        self._declare_config()
        self.cache = AuthCache(store, self.clock)
        self.engine = Engine(transport, self.clock)
        self.engine.next_call = self._next_call
        self.txq = TxQueue(store, self.clock, self.config)
        self.sessions = Sessions(self)
        self.outbox = []
        self.registration = None  # None (not asked yet), "Pending", "Rejected", "Accepted"
        self._boot_due = None  # ticks at which to (re)send BootNotification; None = now
        self._boot_asked = False
        self.status0 = None  # connector 0's status as last computed
        self.error0 = "NoError"  # and its errorCode: ReaderFailure while the reader is dead
        self._notify0 = False
        self._reset = None  # (hard, ticks requested)
        self.stale_rejected = 0
        self.vendor_data = {}  # DataTransfer vendorId -> handler(messageId, data) -> answer
        availability = store.read("availability", {})
        # A change scheduled for the end of a transaction applies now: none survives a boot.
        scheduled = availability.pop("s", None)
        if scheduled:
            availability.update(scheduled)
            store.write("availability", availability)
        # connector 0 (the charge point as a whole) has an availability of its own
        self.operative0 = availability.get("0", True)
        self.scheduled0 = None  # its change waiting for the connectors' transactions to end
        for c in self.connectors:
            c.operative = availability.get(str(c.id), True)
            self.sessions.recover(c)
            if c.hw.lock is not None:
                c.hw.lock.unlock()  # no transaction survives a boot: release the cable
        security.install(self)  # cp.security: events from here on, certificates
        remote.install(self)
        localauth.install(self)  # cp.local_list; None where the store has no folder
        smartcharging.install(self)  # cp.smartcharging
        reservation.install(self)  # cp.reservations
        diagnostics.install(self)  # cp.diagnostics; app.py attaches the log and uploader
        self.firmware = None
        if updater is not None:  # chargepoint.platform.update on a board
            from chargepoint.model import firmware
            firmware.install(self, updater)  # cp.firmware
        profiles = PROFILES + (",LocalAuthListManagement" if self.local_list else "") + (
            ",FirmwareManagement" if self.firmware else "")
        self.config.declare("SupportedFeatureProfiles", CSL, profiles, RO)
        self.config.declare("SupportedFeatureProfilesMaxLength", INT,
                            len(profiles.split(",")), RO)

    # -- identity of messages and transactions --------------------------------------------

    def new_uid(self):
        self._uid += 1
        return "%d.%d" % (self.boot, self._uid)

    def new_ref(self):
        self._ref += 1
        return "%d.%d" % (self.boot, self._ref)

    # -- configuration keys of the Core profile -------------------------------------------

    def _declare_config(self):
        d = self.config.declare
        n = len(self.connectors)
        d("AllowOfflineTxForUnknownId", BOOL, False)
        d("AuthorizationCacheEnabled", BOOL, True)
        d("AuthorizeRemoteTxRequests", BOOL, False)
        d("ClockAlignedDataInterval", INT, 0, 0, _nonneg)
        d("ConnectionTimeOut", INT, 60, 0, _positive)
        d("ConnectorPhaseRotation", CSL, ",".join("%d.RST" % i for i in range(n + 1)), 0,
          _valid_rotation)
        d("ConnectorPhaseRotationMaxLength", INT, n + 1, RO)
        d("GetConfigurationMaxKeys", INT, 50, RO)
        d("HeartbeatInterval", INT, 300, 0, _nonneg)
        d("LocalAuthorizeOffline", BOOL, True)
        d("LocalPreAuthorize", BOOL, False)
        d("MeterValuesAlignedData", CSL, "Energy.Active.Import.Register", 0, metering.valid_list)
        d("MeterValuesAlignedDataMaxLength", INT, len(metering.MEASURANDS), RO)
        d("MeterValuesSampledData", CSL, "Energy.Active.Import.Register,Power.Active.Import", 0,
          metering.valid_list)
        d("MeterValuesSampledDataMaxLength", INT, len(metering.MEASURANDS), RO)
        d("MeterValueSampleInterval", INT, 60, 0, _nonneg)
        d("MinimumStatusDuration", INT, 0, 0, _nonneg)
        d("NumberOfConnectors", INT, n, RO)
        d("ResetRetries", INT, 1, 0, _nonneg)
        d("StopTransactionOnEVSideDisconnect", BOOL, True)
        d("StopTransactionOnInvalidId", BOOL, True)
        d("StopTxnAlignedData", CSL, "", 0, metering.valid_list)
        d("StopTxnAlignedDataMaxLength", INT, len(metering.MEASURANDS), RO)
        d("StopTxnSampledData", CSL, "Energy.Active.Import.Register", 0, metering.valid_list)
        d("StopTxnSampledDataMaxLength", INT, len(metering.MEASURANDS), RO)
        d("TransactionMessageAttempts", INT, 3, 0, _positive)
        d("TransactionMessageRetryInterval", INT, 60, 0, _nonneg)
        d("UnlockConnectorOnEVSideDisconnect", BOOL, True)

    # -- state the rest of the firmware asks about ----------------------------------------

    def online(self):
        return self.transport.connected and self.registration == "Accepted"

    def connector(self, cid):
        if 1 <= cid <= len(self.connectors):
            return self.connectors[cid - 1]
        return None

    def cache_info(self, id_tag, info):
        # an idTag on the local list is not cached (OCPP 1.6 §3.5.3): the list decides
        if self.config.get("AuthorizationCacheEnabled") and self.known(id_tag, True) is None:
            self.cache.put(id_tag, info)

    def known(self, id_tag, listed_only=False):
        """(status, parentIdTag) of `id_tag` from the local list, else (unless listed_only)
        the authorisation cache; None when neither knows it."""
        local_list = self.local_list
        hit = local_list.lookup(id_tag) if local_list is not None else None
        if hit is not None or listed_only:
            return hit
        if self.config.get("AuthorizationCacheEnabled"):
            status = self.cache.status(id_tag)
            if status is not None:
                return status, self.cache.parent(id_tag)
        return None

    def set_operative(self, c, operative):
        """Apply an availability change to connector c, or with 0 to the charge point itself
        and every connector (OCPP 1.6 §5.2). Connector 0 follows a change scheduled for it
        once no connector waits for its transaction to end."""
        availability = self.store.read("availability", {})
        if c == 0:
            self.operative0 = operative
            self.scheduled0 = None
            availability["0"] = operative
        for each in (self.connectors if c == 0 else [c]):
            each.operative = operative
            each.scheduled = None
            availability[str(each.id)] = operative
        if self.scheduled0 is not None and not [x for x in self.connectors
                                                if x.scheduled is not None]:
            self.operative0 = availability["0"] = self.scheduled0
            self.scheduled0 = None
        self._write_availability(availability)

    def schedule_availability(self):
        """Persist the changes scheduled for the end of transactions: a power cut first
        still applies them (at the boot)."""
        self._write_availability(self.store.read("availability", {}))

    def _write_availability(self, availability):
        scheduled = {}
        if self.scheduled0 is not None:
            scheduled["0"] = self.scheduled0
        for x in self.connectors:
            if x.scheduled is not None:
                scheduled[str(x.id)] = x.scheduled
        availability.pop("s", None)
        if scheduled:
            availability["s"] = scheduled
        self.store.write("availability", availability)

    # -- outgoing calls -------------------------------------------------------------------

    def call(self, action, payload, done=None, fail=None, timeout_ms=0):
        """Queue a volatile (not transaction-related) request."""
        if len(self.outbox) >= _OUTBOX:
            old = self.outbox.pop(0)
            if old.fail:
                old.fail("Dropped", "outbox full")
        self.outbox.append(Call(None, action, payload, done, fail, timeout_ms))

    def _next_call(self):
        if self.registration != "Accepted":
            if self._boot_asked or (self._boot_due is not None
                                    and self.clock.since(self._boot_due) < 0):
                return None
            self._boot_asked = True
            return Call(self.new_uid(), "BootNotification", self._boot_payload(),
                        self._boot_done, self._boot_fail)
        if self.outbox:
            c = self.outbox.pop(0)
            c.uid = self.new_uid()
            resolve_stamps(self.clock, c.payload)
            return c
        # Start/Stop before status changes, so the Central System sees "Charging" after the
        # transaction it belongs to; periodic MeterValues wait behind the statuses.
        if self.txq.front_action() not in ("StartTransaction", "StopTransaction"):
            status = self._status_call()
            if status is not None:
                return status
        return self.txq.next_call() or self._status_call()

    def _boot_payload(self):
        info = {}
        for k, v in self.boot_info.items():
            if v:
                info[k] = v
        return info

    def _boot_done(self, payload):
        self._boot_asked = False
        self.registration = payload["status"]
        self.engine.answer_calls = self.registration != "Rejected"
        security.set_clock(self, payload["currentTime"], "BootNotification")
        interval = payload["interval"]
        if self.registration == "Accepted":
            if interval > 0:
                self.config.override("HeartbeatInterval", interval)
            self._notify0 = True
            for c in self.connectors:
                c.notify = True
        else:
            wait = interval if interval > 0 else _BOOT_RETRY_S
            self._boot_due = self.clock.after(wait * 1000)

    def _boot_fail(self, code, _):
        self._boot_asked = False
        wait = 0 if code == "Offline" else _BOOT_LOST_S * 1000
        self._boot_due = self.clock.after(wait)

    def trigger_boot(self):
        """TriggerMessage(BootNotification): register again; the answer is handled as at boot."""
        self.call("BootNotification", self._boot_payload(), self._boot_done)

    # -- status notifications -------------------------------------------------------------

    def _statuses(self):
        min_ms = self.config.get("MinimumStatusDuration") * 1000
        for c in self.connectors:
            status = c.compute_status()
            if status != c.status or c.fault != c.error:
                c.status = status
                c.error = c.fault
                c.changed_at = self.clock.ticks_ms()
                c.stamp = self.clock.stamp()
            c.notify = ((c.status, c.error) != c.reported
                        and self.clock.since(c.changed_at) >= min_ms)
        status0 = "Available" if self.operative0 else "Unavailable"
        rfid = self.board.rfid
        error0 = "ReaderFailure" if getattr(rfid, "failed", False) else "NoError"
        if status0 != self.status0 or error0 != self.error0:
            self.status0 = status0
            self.error0 = error0
            self._notify0 = True

    def _status_call(self):
        if self._notify0:
            self._notify0 = False
            return self.status_call(0)
        for c in self.connectors:
            if c.notify and c.status is not None:
                c.notify = False
                return self.status_call(c.id)
        return None

    def status_call(self, cid):
        if cid == 0:
            payload = {"connectorId": 0, "errorCode": self.error0, "status": self.status0}
        else:
            c = self.connectors[cid - 1]
            payload = {"connectorId": cid, "errorCode": c.error, "status": c.status,
                       "timestamp": self.clock.resolve(c.stamp)}
            c.reported = (c.status, c.error)  # in flight counts as told; undone on failure

        def fail(code, _):
            if code in ("Timeout", "Offline", "Dropped"):
                if cid:
                    self.connectors[cid - 1].reported = None
                else:
                    self._notify0 = True

        return Call(self.new_uid(), "StatusNotification", payload, None, fail)

    # -- heartbeat ------------------------------------------------------------------------

    def _heartbeat(self):
        interval = self.config.get("HeartbeatInterval") * 1000
        if (interval and self.transport.connected and self.engine.inflight is None
                and not self.outbox and self.clock.since(self.engine.sent_at) >= interval):
            self.send_heartbeat()

    def send_heartbeat(self):
        self.call("Heartbeat", {}, self._clock_from)

    def _clock_from(self, payload):
        security.set_clock(self, payload["currentTime"], "Heartbeat")

    # -- reset ----------------------------------------------------------------------------

    def request_reset(self, hard):
        reason = "HardReset" if hard else "SoftReset"
        for c in self.connectors:
            if c.tx is not None:
                self.sessions.stop(c, reason)
        self._reset = (hard, self.clock.ticks_ms())

    def _reset_if_due(self):
        hard, at = self._reset
        waited = self.clock.since(at)
        # a soft reset lets the StopTransactions go first (they are persisted either way)
        if waited >= _RESET_GRACE_MS and (hard or not len(self.txq) or waited >= 10000):
            self._reset = None
            if self.reboot is not None:
                self.reboot(hard)

    # -- the loop -------------------------------------------------------------------------

    def loop(self):
        self.clock.keep()
        self.smartcharging.apply()  # the limits in place before the step offers current
        sessions = self.sessions
        for c in self.connectors:
            sessions.step(c)  # the safety path runs first, every time
        rfid = self.board.rfid
        if rfid is not None:
            uid = rfid.poll()
            if uid:
                sessions.tap(uid)
        transport = self.transport
        # our own next call first: a flood of inbound CALLs fills the outbox with answers,
        # and the MeterValues and statuses behind it must still find a place
        self.engine.poll()
        for _ in range(_FRAMES_PER_LOOP):
            if not transport.can_send():  # no room for an answer: leave the frame queued
                break
            msg = transport.receive()
            if msg is None:
                break
            self.engine.feed(*msg)
        sessions.meter()
        self.reservations.tick()  # expiry with the clock this step may have set
        self._statuses()
        if self.registration == "Accepted":
            self._heartbeat()
        self.diagnostics.poll()  # before the engine: a status it queues goes out now
        self.security.poll()
        self.engine.poll()
        if self.firmware is not None:
            self.firmware.step()
        if self._reset is not None:
            self._reset_if_due()

    def view(self):
        return {
            "online": self.online(),
            "registration": self.registration,
            "queued": len(self.txq),
            "connectors": dict((str(c.id), c.view()) for c in self.connectors),
        }
