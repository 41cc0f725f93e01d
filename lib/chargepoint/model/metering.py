"""Meter values: which measurands the meter can give, sampled values in OCPP form, and the
MeterValues the charge point sends (periodic during a transaction, clock-aligned, triggered).

Periodic samples of a running transaction go through the transaction queue (persisted, sent
in order, retried); clock-aligned ones of an idle connector and triggered ones are volatile
calls. The running transaction's record keeps its latest register reading, written at least
once a minute: what a StopTransaction made after a power cut reports.
"""
from micropython import const

from chargepoint.model import Feature
from chargepoint.ocpp.timestamps import iso

_SAVE_MS = const(60000)  # the running transaction's energy is written at least this often

# measurand -> (unit, how to read it from the connector)
MEASURANDS = {
    "Energy.Active.Import.Register": "Wh",
    "Power.Active.Import": "W",
    "Current.Import": "A",
    "Voltage": "V",
    "Current.Offered": "A",
}


def valid_list(value):
    """Validator for MeterValuesSampledData and friends: every item must be supported."""
    for m in value.split(","):
        if m and m not in MEASURANDS:
            return False
    return len(value) <= 500


def _fmt(x):
    # Integers stay integers; otherwise one decimal is what meters resolve.
    if isinstance(x, int):
        return str(x)
    return "%.1f" % x


def sample(connector, measurands, context, stamp):
    """One meterValue element for `connector` (a chargepoint.model.connector.Connector)."""
    meter = connector.hw.meter
    values = []
    for m in measurands.split(","):
        if not m:
            continue
        unit = MEASURANDS.get(m)
        if unit is None:
            continue
        if m == "Energy.Active.Import.Register":
            values.append(_sv(_fmt(meter.energy_wh()), context, m, unit, None))
        elif m == "Power.Active.Import":
            values.append(_sv(_fmt(meter.power_w()), context, m, unit, None))
        elif m == "Current.Offered":
            values.append(_sv(_fmt(connector.offered or 0), context, m, unit, None))
        else:
            readings = meter.current_a() if m == "Current.Import" else meter.voltage_v()
            for i, r in enumerate(readings):
                phase = "L%d" % (i + 1)
                if m == "Voltage":
                    phase += "-N"
                values.append(_sv(_fmt(r), context, m, unit, phase))
    return {"timestamp": stamp, "sampledValue": values}


def _sv(value, context, measurand, unit, phase):
    sv = {"value": value, "context": context, "measurand": measurand, "location": "Outlet",
          "unit": unit}
    if phase:
        sv["phase"] = phase
    return sv


class Metering(Feature):
    """Its configuration keys (MeterValueSampleInterval, ClockAlignedDataInterval,
    MeterValues*Data) are the Core profile's, declared with the charge point's."""
    name = "metering"
    triggers = ("MeterValues",)

    def __init__(self, cp, services):
        self.cp = cp
        self.aligned_slot = None  # the clock-aligned interval we are in
        self._due = 0  # ticks from which the wall time is read again (the next boundary)
        self._aligned = None  # the ClockAlignedDataInterval the slot is of
        cp.clock_listeners.append(self._clock_set)

    def _clock_set(self, source, before, now):
        self._due = None  # the boundary moved with the wall time: read it at once

    def tick(self):
        cp = self.cp
        clock = cp.clock
        config = cp.config
        interval = config.get("MeterValueSampleInterval") * 1000
        for c in cp.connectors:
            if c.tx is None:
                continue
            if interval and clock.since(c.sampled_at) >= interval:
                c.sampled_at = clock.ticks_ms()
                self._queue(c, config.get("MeterValuesSampledData"), "Sample.Periodic",
                            clock.stamp())
            if clock.since(c.saved_at) >= _SAVE_MS:
                cp.sessions.save(c)
        aligned = config.get("ClockAlignedDataInterval")
        if aligned != self._aligned:
            self._aligned = aligned
            self.aligned_slot = self._due = None
        if not aligned or (self._due is not None and clock.since(self._due) < 0):
            return  # the wall time is an int object past 2**30: not read every loop
        # while the wall time is unknown after a power cut, on the estimate from the flash:
        # the samples go on, each stamped with when it was taken, resolved once it is known
        wall = clock.estimate()
        if wall is None:
            self.aligned_slot = None
            return
        slot = wall // aligned
        # a boundary crossed forwards; a step of the clock backwards crosses none
        if self.aligned_slot is not None and slot > self.aligned_slot:
            stamp = iso(slot * aligned) if clock.is_set() else clock.stamp()
            for c in cp.connectors:
                self._queue(c, config.get("MeterValuesAlignedData"), "Sample.Clock", stamp)
        self.aligned_slot = slot
        # read again from a second before the next boundary (the wall time is in whole
        # seconds: the boundary is up to one closer than it says)
        self._due = clock.after(((slot + 1) * aligned - wall - 1) * 1000)

    def _queue(self, c, measurands, context, stamp):
        if not measurands:
            return
        cp = self.cp
        mv = sample(c, measurands, context, stamp)
        if c.tx is not None:
            cp.txq.push(cp.new_uid(), "MeterValues", {
                "connectorId": c.id, "transactionId": None, "meterValue": [mv]}, c.tx["ref"])
        else:
            cp.call("MeterValues", {"connectorId": c.id, "meterValue": [mv]})

    def trigger(self, message, cid, extended):
        cp = self.cp
        measurands = cp.config.get("MeterValuesSampledData")
        for c in ([cp.connector(cid)] if cid else cp.connectors):
            payload = {"connectorId": c.id,
                       "meterValue": [sample(c, measurands, "Trigger", cp.clock.stamp())]}
            if c.tx is not None and c.tx["id"] is not None:
                payload["transactionId"] = c.tx["id"]
            cp.call("MeterValues", payload)
