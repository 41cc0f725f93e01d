"""The charge point: the Core profile's own messages (BootNotification, StatusNotification,
Heartbeat, Reset, the transaction queue) on top of the engine, the connectors and their
sessions, and the table of features that brings the rest.

Composition: `ChargePoint(board, transport, store, clock, reboot, boot_info, services,
features)`, then call `loop()` every few tens of milliseconds. Nothing in here blocks or
does I/O except through what is handed in:
  board      as documented in chargepoint.model.board
  transport  send(text), can_send(), connected, status (a dict), receive() -> None,
             (frame, stale), or (head, stale, size) for a frame over MAX_FRAME (only its
             head); a frame is bytes-like (valid until done() or the next receive()) or
             text; done() once the engine has handled it
  store      read(name, default), write(name, value) (atomic), remove(name), names(prefix):
             chargepoint.platform.store.FileStore on the device
  clock      chargepoint.platform.clock.Clock (tests give it fake ticks)
  reboot     reboot(hard): the platform's reset (app.py's flushes the event log first)
  services   the platform's services by name, for the features (chargepoint.model)
  features   (Feature class, ...) installed in this order: chargepoint.model.features.
             FEATURES by default
  safe_mode  None, or why the firmware runs in safe mode (chargepoint.app, main.py): every
             connector Faulted (InternalError, `info` the reason), no session starts, only
             SAFE_ACTIONS are answered

The features (chargepoint.model says what one declares). Each is `cp.<name>`, None
when it needs a service the platform does not give or is not in the table. The first four
are the Core profile's and every table has them; the others may be left out:
  security       security events (first: StartupOfTheDevice), ExtendedTriggerMessage,
                 certificate management (chargepoint.model.security)
  availability   ChangeAvailability, each connector's and the charge point's own
  remote         the Core operations the Central System starts, TriggerMessage (RemoteTrigger)
  metering       MeterValues: periodic, clock-aligned, triggered
  smartcharging  SmartCharging: the limits, applied before every safety step
  reservations   Reservation
  local_list     LocalAuthListManagement (needs "folder")
  diagnostics    GetDiagnostics, GetLog, the OCPP traffic in the event log
  firmware       UpdateFirmware (FirmwareManagement; needs "updater")

Hooks several parties observe are lists, registered once while the features are built and
called in list order:
  engine.frame_listeners  (direction, text) of every frame: the event log's journal
                          (diagnostics), then the simulator's frame log (board_sim)
  reboot_listeners        (hard, why) before every reset: security (ResetOrReboot); then the
                          platform's reboot, which flushes the event log last
  config.listeners        (name, value) after an accepted ChangeConfiguration: security
                          (ReconfigurationOfSecurityParameters)
The loop, in order: the clock; the features' before() (charging limits; the security profile
a new connection is in); the safety step of
every connector; the reader; our own next CALL; up to 4 inbound frames (and, when there were
any, the safety step again: what they changed reaches the relay now); the features' tick()
(table order); statuses; heartbeat; the engine sends; a reset that is due.
"""
from micropython import const

from chargepoint.model import handler, metering
from chargepoint.model.authcache import AuthCache
from chargepoint.model.connector import Connector
from chargepoint.model.sessions import Sessions
from chargepoint.model.txqueue import TxQueue, resolve_stamps
from chargepoint.ocpp.config import BOOL, CSL, INT, RO, Config
from chargepoint.ocpp.engine import Call, Engine
from chargepoint.ocpp.timestamps import parse_iso

_OUTBOX = const(16)  # volatile calls waiting; the oldest goes when full
_WALL = "wall"  # the wall time as last known, and the boots' bases (Clock.boots)
_WALL_EVERY_MS = const(60000)
_BOOTS_KEPT = const(32)  # boots whose markers can still be resolved from their base
_BOOT_RETRY_S = const(60)  # after Pending/Rejected with interval 0
_BOOT_LOST_S = const(10)  # after an unanswered BootNotification
_FRAMES_PER_LOOP = const(4)
_RESET_GRACE_MS = const(3000)  # lets the Reset answer and the stops leave before rebooting

# The standard features' names (chargepoint.model.features.FEATURES): cp.<name> is there,
# None, whatever the table holds
_NAMES = ("security", "availability", "remote", "metering", "smartcharging", "reservations",
          "local_list", "diagnostics", "firmware", "identity")
# What a charge point in safe mode answers (chargepoint.app): enough to be reached, looked at
# and repaired; any other CALL of OCPP 1.6 is NotSupported
SAFE_ACTIONS = ("ChangeConfiguration", "GetConfiguration", "Reset", "TriggerMessage",
                "ExtendedTriggerMessage", "UpdateFirmware", "SignedUpdateFirmware",
                "GetDiagnostics", "GetLog")
_OWN_TRIGGERS = ("BootNotification", "Heartbeat", "StatusNotification")


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
                 services=None, features=None, safe_mode=None):
        if features is None:
            from chargepoint.model.features import FEATURES as features
        self.safe_mode = safe_mode  # why the charge point is in safe mode, or None
        self.board = board
        self.transport = transport
        self.store = store
        n = store.read("boot", {"n": 0}).get("n")
        n = n if isinstance(n, int) and n >= 0 else 0
        # never a number used before (message ids are "<boot>.<n>"), also when that record
        # was damaged and its copy before read: the boots the wall record knows count too
        seen = store.read(_WALL, {}).get("boots")
        if isinstance(seen, dict):
            for k in seen:
                if isinstance(k, str) and k.isdigit() and int(k) > n:
                    n = int(k)
        state = {"n": n + 1}
        store.write("boot", state)
        self.boot = state["n"]
        self.clock = clock
        clock.boot = self.boot
        self._wall_at = clock.ticks_ms()
        self._load_wall()
        self._uid = 0
        self._ref = 0
        self._reboot = reboot
        self.reboot_listeners = []
        self.clock_listeners = []  # (source, unix before or None, unix now): set_clock
        self.boot_info = boot_info or board.info
        self.connectors = [Connector(i + 1, hw) for i, hw in enumerate(board.connectors)]
        self.config = Config(store)
        self._declare_config()
        self.cache = AuthCache(store, self.clock)
        self.engine = Engine(transport, self.clock, self._next_call, resolve=self._route)
        self.sessions = Sessions(self)
        self.txq = TxQueue(store, self.clock, self.config, self.sessions.on_tx_answer)
        self.outbox = []
        self.registration = None  # None (not asked yet), "Pending", "Rejected", "Accepted"
        self._boot_due = None  # ticks at which to (re)send BootNotification; None = now
        self._boot_asked = False
        self.status0 = None  # connector 0's status as last computed
        self.error0 = "NoError"  # and its errorCode: ReaderFailure while the reader is dead
        self._notify0 = False
        self._reset = None  # (hard, why, ticks requested)
        self.stale_rejected = 0
        for c in self.connectors:
            self.sessions.recover(c)
            if c.hw.lock is not None:
                c.hw.lock.unlock()  # no transaction survives a boot: release the cable
        self._floor_wall()
        self._install(features, services or {})

    def _install(self, features, services):
        """Build the features in order; derive the routes, keys, profiles and per-loop work
        from what each declares (chargepoint.model); triggers and DataTransfer vendors are
        looked up in `features` when asked. The standard names are there (None) whatever the
        table holds: a table without reservations, say, is a charge point without the
        Reservation profile."""
        for name in _NAMES:
            setattr(self, name, None)
        self._before = []
        self._ticks = []
        self.features = []  # installed, in table order (trigger_request, vendor look here)
        self._handlers = {}  # action -> its handler's name, for the actions that came
        profiles = ["Core"]
        config = self.config
        for kind in features:
            feature = None
            if not [need for need in kind.needs if services.get(need) is None]:
                for key in kind.keys:
                    config.declare(*key)
                feature = kind(self, services)
                self.features.append(feature)
                if kind.profile is not None and kind.profile not in profiles:
                    profiles.append(kind.profile)
                if feature.before is not None:
                    self._before.append(feature.before)
                if feature.tick is not None:
                    self._ticks.append(feature.tick)
            setattr(self, kind.name, feature)
        config.declare("SupportedFeatureProfiles", CSL, ",".join(profiles), RO)
        config.declare("SupportedFeatureProfilesMaxLength", INT, len(profiles), RO)

    def _route(self, action):
        """The handler of an inbound CALL: the method of the feature whose routes name it
        (looked up when the CALL comes: no bound method per route is kept). The method's
        name is kept for each action that came: handler() spelled it out character by
        character for every CALL, a third of the instructions an inbound call took."""
        if self.safe_mode is not None and action not in SAFE_ACTIONS:
            return None
        for feature in self.features:
            if action in feature.routes:
                name = self._handlers.get(action)
                if name is None:
                    name = self._handlers[action] = handler(action)
                return getattr(feature, name)
        return None

    # -- the wall time across boots --------------------------------------------------------

    def _load_wall(self):
        """The boots' entries (Clock.boots) and this one's estimate: the wall time last saved
        (a save is due every minute), raised once the queue is read to what was stamped last
        before this boot (_floor_wall). Behind the real time by the outage and up to a minute
        (never ahead of it: adding the minute made stamps run ahead, by a minute per boot, of
        a charger that restarts again and again), never behind anything stamped before."""
        clock = self.clock
        rec = self.store.read(_WALL, {})
        boots = rec.get("boots")
        if isinstance(boots, dict):
            for k, v in boots.items():
                if (isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
                        and k.isdigit() and int(k) > self.boot - _BOOTS_KEPT):
                    clock.boots[int(k)] = v
        last = rec.get("t")
        if isinstance(last, int):
            clock.boots[self.boot] = [last * 1000 - clock.ticks_ms(), False]

    def _floor_wall(self):
        known = self.clock.boots.get(self.boot)
        if known is not None and not known[1]:
            newest = self.txq.newest()
            if newest is not None:
                lag = (newest + 1) * 1000 - (known[0] + self.clock.ticks_ms())
                if lag > 0:
                    known[0] += lag
        self._save_wall()

    def _save_wall(self):
        clock = self.clock
        self._wall_at = clock.ticks_ms()
        now = clock.estimate()
        if now is None:
            return  # never known on this charger: nothing to estimate from
        self.store.write(_WALL, {"t": now, "boots": dict(
            (str(k), v) for k, v in clock.boots.items() if k > self.boot - _BOOTS_KEPT)})

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
        d("MaxEnergyOnInvalidId", INT, 0, 0, _nonneg)
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
        self.set_clock(payload["currentTime"], "BootNotification")
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

    # -- TriggerMessage, ExtendedTriggerMessage ---------------------------------------------

    def trigger_request(self, message, cid, extended=False):
        """A Central System asks for `message` (about connector `cid`, or None): "Accepted"
        and queued by whoever offers it (this charge point or a feature), "Rejected" for an
        unknown connector, "NotImplemented" when nobody offers it."""
        if cid is not None and cid != 0 and self.connector(cid) is None:
            return "Rejected"
        owner = self if message in _OWN_TRIGGERS else None
        for feature in self.features:
            if message in feature.triggers:
                owner = feature
        if owner is None:
            return "NotImplemented"
        owner.trigger(message, cid, extended)
        return "Accepted"

    def vendor(self, vendor_id):
        """The feature that answers DataTransfer for `vendor_id`, or None."""
        for feature in self.features:
            if feature.vendor_id == vendor_id:
                return feature
        return None

    def trigger(self, message, cid, extended):
        if message == "BootNotification":  # register again; answered as at boot
            self.call("BootNotification", self._boot_payload(), self._boot_done)
        elif message == "Heartbeat":
            self.send_heartbeat()
        else:  # StatusNotification
            for i in ([cid] if cid is not None else [0] + [c.id for c in self.connectors]):
                status = self.status_call(i)
                self.call(status.action, status.payload, status.done, status.fail)

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
            reported = c.reported  # (compared field by field: no tuple every loop)
            c.notify = ((reported is None or c.status != reported[0] or c.error != reported[1])
                        and self.clock.since(c.changed_at) >= min_ms)
        availability = self.availability
        status0 = ("Available" if availability is None or availability.operative0
                   else "Unavailable")
        rfid = self.board.rfid
        error0 = "ReaderFailure" if getattr(rfid, "failed", False) else "NoError"
        if self.safe_mode is not None:
            status0 = "Faulted"
            error0 = "InternalError"
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
        if self.safe_mode is not None:
            payload["info"] = self.safe_mode[:50]

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
        self.set_clock(payload["currentTime"], "Heartbeat")

    def set_clock(self, text, source):
        """The wall clock from a Central System's currentTime (`source`: the message it came
        with); the clock_listeners hear (source, unix time before or None, unix time now)."""
        was = self.clock.wall()
        self.clock.set_wall(*parse_iso(text, True))
        now = self.clock.wall()
        if was is None:  # this boot's markers now have an exact base: keep it
            self._save_wall()
        for listener in self.clock_listeners:
            listener(source, was, now)

    # -- reset ----------------------------------------------------------------------------

    def request_reset(self, hard, why=None):
        """Stop every transaction now and reset once their StopTransactions had a moment to
        leave. `why`: what the reboot listeners hear (ResetOrReboot's techInfo)."""
        reason = "HardReset" if hard else "SoftReset"
        for c in self.connectors:
            if c.tx is not None:
                self.sessions.stop(c, reason)
        self._reset = (hard, why, self.clock.ticks_ms())

    def _reset_if_due(self):
        hard, why, at = self._reset
        waited = self.clock.since(at)
        # a soft reset lets the StopTransactions go first (they are persisted either way)
        if waited >= _RESET_GRACE_MS and (hard or not len(self.txq) or waited >= 10000):
            self._reset = None
            self.reboot(hard, why)

    def reboot(self, hard, why=None):
        """Reset the board now: the reboot listeners first, then the platform's reboot."""
        self.announce_reboot(hard, why)
        if self._reboot is not None:
            self._reboot(hard)

    def announce_reboot(self, hard, why=None):
        """Tell the reboot listeners (in order) that the board is about to reset: also for a
        reset the firmware does not make itself (Ctrl-D at the console)."""
        for listener in self.reboot_listeners:
            listener(hard, why)

    # -- the loop -------------------------------------------------------------------------

    def loop(self):
        self.clock.keep()
        if self.clock.since(self._wall_at) >= _WALL_EVERY_MS:
            self._save_wall()
        for work in self._before:  # the charging limits, before the step offers current
            work()
        sessions = self.sessions
        for c in self.connectors:
            sessions.step(c)  # the safety path runs first, every time
        rfid = self.board.rfid
        if rfid is not None:
            uid = rfid.poll()
            if uid and self.safe_mode is None:
                sessions.tap(uid)
        transport = self.transport
        # our own next call first: a flood of inbound CALLs fills the outbox with answers,
        # and the MeterValues and statuses behind it must still find a place
        self.engine.poll()
        fed = False
        for _ in range(_FRAMES_PER_LOOP):
            if not transport.can_send():  # no room for an answer: leave the frame queued
                break
            msg = transport.receive()
            if msg is None:
                break
            self.engine.feed(*msg)
            transport.done()  # its room in the inbox is free
            fed = True
        if fed:  # an authorisation, a start or a stop that came in moves the relay now
            for c in self.connectors:
                sessions.step(c)
        for work in self._ticks:  # before the engine: what they queue goes out now
            work()
        self._statuses()
        if self.registration == "Accepted":
            self._heartbeat()
        self.engine.poll()
        if self._reset is not None:
            self._reset_if_due()

    def view(self):
        return {
            "online": self.online(),
            "registration": self.registration,
            "queued": len(self.txq),
            "connectors": dict((str(c.id), c.view()) for c in self.connectors),
        }
