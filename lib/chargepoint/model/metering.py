"""Meter values: which measurands the meter can give, and sampled values in OCPP form."""

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
