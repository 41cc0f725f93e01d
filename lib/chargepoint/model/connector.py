"""One connector's state and its OCPP 1.6 status (§4.9 StatusNotification state machine)."""
from micropython import const

from chargepoint.model.board import DEGRADED

# Connector.auth, a session granted but not started: [idTag, ticks granted, chargingProfile
# (a RemoteStart's TxProfile or None), parentIdTag or None]
AUTH_TAG = const(0)
AUTH_AT = const(1)
AUTH_PROFILE = const(2)
AUTH_PARENT = const(3)


class Connector:
    def __init__(self, cid, hw):
        self.id = cid
        self.hw = hw
        self.pilot = "A"
        self.plugged = False
        self.fault = "NoError"
        self.start_fault = None  # errorCode of a check that failed at start: until unplugged
        self.offered = None  # amps on the pilot, None = PWM off
        self.limit = None  # amps a charging limit allows (SmartCharging), None = max_amps
        self.withdrawn = None  # ticks a limit withdrew the offer with the relay closed
        self.tx = None  # the running transaction's persisted record
        self.auth = None  # a session granted, not started: see AUTH_* above
        self.authorizing = None  # idTag whose Authorize is in flight
        self.finishing = False  # transaction over, cable still in
        self.operative = True
        self.scheduled = None  # availability to apply once the transaction ends
        self.reserved = False  # held for a reservation (set by the Reservation profile)
        self.reported = None  # (status, errorCode) last confirmed by the Central System
        self.status = None
        self.error = "NoError"
        self.changed_at = 0  # ticks of the last status change
        self.stamp = None  # when it changed, as Clock.stamp()
        self.notify = False  # a StatusNotification is due
        self.sampled_at = 0  # ticks of the last periodic sample
        self.saved_at = 0  # ticks the transaction record was last written

    def idle(self):
        """Free to take a new session."""
        return (self.tx is None and self.auth is None and self.authorizing is None
                and self.operative and self.fault == "NoError")

    def usable(self):
        """No fault that stops charging (a meter failure only stops new sessions)."""
        return self.fault in DEGRADED

    def compute_status(self):
        if self.fault not in DEGRADED:
            return "Faulted"
        tx = self.tx
        if tx is not None:
            if self.hw.relay.get() and self.offered is not None:
                return "Charging"
            if not tx["ok"] or self.offered is None:
                return "SuspendedEVSE"
            return "SuspendedEV"
        if not self.operative:
            return "Unavailable"
        if self.finishing:
            return "Finishing"
        if self.auth is not None:
            return "Preparing"
        if self.reserved:
            return "Reserved"  # Preparing only once the reserved idTag is granted (§4.9)
        if self.plugged or self.authorizing is not None:
            return "Preparing"
        return "Available"

    def view(self):
        """What the simulator and the REPL show of this connector."""
        tx = self.tx
        return {
            "status": self.status,
            "error": self.error,
            "pilot": self.pilot,
            "relay": self.hw.relay.get(),
            "pilot_amps": self.offered,
            "transaction_id": tx["id"] if tx else None,
            "id_tag": tx["tag"] if tx else (self.auth[AUTH_TAG] if self.auth else None),
            "energy_wh": self.hw.meter.energy_wh(),
        }
