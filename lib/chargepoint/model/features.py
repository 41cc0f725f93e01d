"""The standard table of features, in the order the charge point installs them (chargepoint.
model says what a feature is; chargepoint.model.chargepoint what each of these does). Its own
module, so that a charge point built from another table (safe mode: chargepoint.app) imports
none of the others."""
from chargepoint.model import (availability, diagnostics, firmware, identity, localauth, metering,
                              remote, reservation, security, smartcharging)

FEATURES = (
    security.Security,
    availability.Availability,
    remote.Remote,
    metering.Metering,
    smartcharging.SmartCharging,
    reservation.Reservations,
    localauth.LocalList,
    diagnostics.Diagnostics,
    firmware.Firmware,
    identity.Identity,
)
