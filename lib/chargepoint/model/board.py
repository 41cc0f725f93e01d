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

Drivers (package chargepoint.hardware) implement it and take their pins and buses as
arguments; one composition root (chargepoint.app) builds the board.
"""

_PILOT_ERRORS = {"E": "EVCommunicationError", "F": "EVCommunicationError"}


def fault_code(hw, pilot_state):
    """The OCPP errorCode the connector's inputs show now ("NoError" when healthy)."""
    rcd = hw.rcd
    if rcd is not None and rcd.tripped():
        return "GroundFailure"
    return _PILOT_ERRORS.get(pilot_state, "NoError")
