"""The board interface the charger model drives. This docstring is its one definition.

A *board* is any object with:
  board.connectors  list of connector hardware; index 0 is OCPP connector 1
  board.rfid        reader with poll() -> card UID (upper-case hex str) or None; a card held
                    on the reader is reported once per presentation. May be None.
  board.info        dict of BootNotification fields (chargePointVendor, chargePointModel,
                    chargePointSerialNumber, firmwareVersion, meterType, ...)

Connector hardware:
  pilot.state()      -> "A".."F": the EV's state as read from the control pilot (the driver
                        debounces). A unplugged, B plugged, C/D asking for charge, E/F error.
  pilot.offer(amps)  start PWM offering `amps` (float), or stop PWM (steady +12 V) with None
  relay.set(closed)  close (True) or open (False) the contactor; relay.get() -> bool
  meter.energy_wh()  -> int import register, never decreasing, kept across power loss
  meter.power_w()    -> float active import power
  meter.current_a()  -> tuple of per-phase currents (1 or 3 items)
  meter.voltage_v()  -> tuple of per-phase voltages
  rcd                residual-current monitor with tripped() -> bool, or None if absent
  lock               cable lock of a socket outlet, or None (tethered cable): lock() -> bool
                     and unlock() -> bool, False when the motor or its feedback fails
  max_amps           current the installation allows on this connector (float)
Optional health signals (absent means healthy):
  pilot.diode_fault  True while PWM runs and the EV's diode is missing
  relay.welded()     True once the contact stayed closed after an open command; latched by
                     the driver until a reset (the contactor needs service)
  meter.ok           False while the meter does not answer or answers wrong (the register
                     keeps its last good value)
  board.rfid.failed  True while the reader does not answer (ReaderFailure on connector 0)

Drivers (package chargepoint.hardware) implement it and take their pins and buses as
arguments; one composition root (chargepoint.app) builds the board.
"""

_PILOT_ERRORS = {"E": "EVCommunicationError", "F": "EVCommunicationError"}
# Errors that leave the connector usable: reported, but not Faulted. A meter failure lets a
# running session go on (billing keeps the last good register), but starts none.
DEGRADED = ("NoError", "PowerMeterFailure")


def fault_code(hw, pilot_state):
    """The OCPP errorCode the connector's inputs show now ("NoError" when healthy)."""
    rcd = hw.rcd
    if rcd is not None and rcd.tripped():
        return "GroundFailure"
    relay = hw.relay
    if hasattr(relay, "welded") and relay.welded():  # (getattr would make a bound method)
        return "PowerSwitchFailure"
    if getattr(hw.pilot, "diode_fault", False):
        return "EVCommunicationError"
    error = _PILOT_ERRORS.get(pilot_state)
    if error is not None:
        return error
    if not getattr(hw.meter, "ok", True):
        return "PowerMeterFailure"
    return "NoError"
