"""The charger model: connectors, sessions, transactions and the features on the core. It
imports only the protocol core (chargepoint.ocpp). What it is handed (board, transport, store,
clock) is documented in chargepoint.model.chargepoint and chargepoint.model.board.

What a feature is: one class that says in one place what it needs and what it offers. The
charge point installs the features of its table in order (chargepoint.model.features.
FEATURES, or the list app.py hands it) and derives the rest from them: routes, configuration keys,
SupportedFeatureProfiles, what TriggerMessage and ExtendedTriggerMessage may ask for, the
DataTransfer vendors, the per-loop work.

    class Reservations(Feature):
        name = "reservations"     # what the charge point calls it: cp.reservations
        profile = "Reservation"   # its name in SupportedFeatureProfiles; None: not a profile
        needs = ()                # services it cannot work without (else not installed)
        keys = (("ReserveConnectorZeroSupported", BOOL, True, RO),)  # Config.declare args,
                                  # declared before the feature is built (literals only: the
                                  # tuple stays in flash when frozen)
        triggers = ()             # messages TriggerMessage may ask of it -> trigger()
        vendor_id = None          # the DataTransfer vendorId it answers -> data_transfer()
        routes = ("ReserveNow", "CancelReservation")  # the actions it handles, each by the
                                  # method of its name in snake_case (handler() below):
        def reserve_now(self, payload, stale): ...   # -> the answer payload

        def __init__(self, cp, services): ...   # the charge point; the platform's services
        def before(self): ...     # every loop, before the safety step (its inputs: limits)
        def tick(self): ...       # every loop, after the inbound frames
        def trigger(self, message, connector_id, extended): ...  # queue the message
        def data_transfer(self, message_id, data): ...           # the answer payload

Services (a dict app.py builds once; a test gives what it needs): "log" (the event log,
chargepoint.platform.log.Log), "upload" (url, path: an HTTP PUT), "run_in_thread" (fn),
"updater" (chargepoint.platform.update.Updater), "folder" (the flash folder of the records),
"timesync" (chargepoint.platform.timesync.TimeSync), "ca_certificates" (() -> [DER] of
config.json's CA), "charge_point_id" (config.json's `id`), "client_certificate" (() -> the DER
of config.json's client certificate, or None). A test charge point gets what the test gives. A feature reaches the charge point's own parts through `cp` (config,
engine, clock, store, connectors, call) and the features before it in the table by their
names there (cp.security, cp.availability, ...); one that was not installed is None.
Rarely used modules of a feature are imported for a request and dropped after it (unload).
"""


class Feature:
    name = None
    profile = None
    needs = ()
    keys = ()
    triggers = ()
    vendor_id = None
    routes = ()
    before = None
    tick = None


def handler(action):
    """The name of the method that handles `action`: "ReserveNow" -> "reserve_now"."""
    out = []
    for ch in action:
        if "A" <= ch <= "Z" and out:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def unload(package, name):
    """Drop module `package.name`, giving its heap back: a feature's rarely used module
    (certificates, GetLog) is imported for a request and dropped after it."""
    import sys

    sys.modules.pop(package + "." + name, None)
    parent = sys.modules.get(package)
    if parent is not None and hasattr(parent, name):
        delattr(parent, name)
