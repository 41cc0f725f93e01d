"""OCPP 1.6 field rules for the payloads this charge point receives, and the checker.

A rule is (name, kind, required, arg). Kinds: "i" integer (arg: minimum or None), "n" number,
"s" CiString (arg: maximum length, 0 = unbounded), "e" enumeration (arg: allowed values),
"t" dateTime, "b" boolean, "o" object (arg: its rules), "a" array (arg: (kind, arg) of items).

Error codes (OCPP-J 1.6 table): a payload that is not an object, or has a field the PDU does
not define, is a FormationViolation; a missing required field an OccurenceConstraintViolation;
a value of the wrong JSON type, or a string longer than its CiString type, a
TypeConstraintViolation; a value outside an enumeration, below its minimum or a malformed
dateTime a PropertyConstraintViolation.
"""
from chargepoint.clock import parse_iso
from chargepoint.errors import (
    FormationViolationError,
    OccurenceConstraintViolationError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)

_ID_TAG_INFO = (
    ("status", "e", 1, ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")),
    ("expiryDate", "t", 0, None),
    ("parentIdTag", "s", 0, 20),
)

_CHARGING_PROFILE = (
    ("chargingProfileId", "i", 1, None),
    ("transactionId", "i", 0, None),
    ("stackLevel", "i", 1, 0),
    ("chargingProfilePurpose", "e", 1, ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")),
    ("chargingProfileKind", "e", 1, ("Absolute", "Recurring", "Relative")),
    ("recurrencyKind", "e", 0, ("Daily", "Weekly")),
    ("validFrom", "t", 0, None),
    ("validTo", "t", 0, None),
    ("chargingSchedule", "o", 1, (
        ("duration", "i", 0, 0),
        ("startSchedule", "t", 0, None),
        ("chargingRateUnit", "e", 1, ("A", "W")),
        ("chargingSchedulePeriod", "a", 1, ("o", (
            ("startPeriod", "i", 1, 0),
            ("limit", "n", 1, None),
            ("numberPhases", "i", 0, 1),
        ))),
        ("minChargingRate", "n", 0, None),
    )),
)

# Central System -> charge point requests.
REQUESTS = {
    "ChangeAvailability": (
        ("connectorId", "i", 1, 0),
        ("type", "e", 1, ("Inoperative", "Operative")),
    ),
    "ChangeConfiguration": (
        ("key", "s", 1, 50),
        ("value", "s", 1, 500),
    ),
    "ClearCache": (),
    "DataTransfer": (
        ("vendorId", "s", 1, 255),
        ("messageId", "s", 0, 50),
        ("data", "s", 0, 0),
    ),
    "GetConfiguration": (
        ("key", "a", 0, ("s", 50)),
    ),
    "RemoteStartTransaction": (
        ("connectorId", "i", 0, 0),
        ("idTag", "s", 1, 20),
        ("chargingProfile", "o", 0, _CHARGING_PROFILE),
    ),
    "RemoteStopTransaction": (
        ("transactionId", "i", 1, None),
    ),
    "Reset": (
        ("type", "e", 1, ("Hard", "Soft")),
    ),
    "TriggerMessage": (
        ("requestedMessage", "e", 1, ("BootNotification", "DiagnosticsStatusNotification",
                                      "FirmwareStatusNotification", "Heartbeat", "MeterValues",
                                      "StatusNotification")),
        ("connectorId", "i", 0, 0),
    ),
    "UnlockConnector": (
        ("connectorId", "i", 1, 0),
    ),
}

# Central System answers to our requests.
CONFIRMATIONS = {
    "Authorize": (("idTagInfo", "o", 1, _ID_TAG_INFO),),
    "BootNotification": (
        ("status", "e", 1, ("Accepted", "Pending", "Rejected")),
        ("currentTime", "t", 1, None),
        ("interval", "i", 1, None),
    ),
    "DataTransfer": (
        ("status", "e", 1, ("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId")),
        ("data", "s", 0, 0),
    ),
    "DiagnosticsStatusNotification": (),
    "FirmwareStatusNotification": (),
    "Heartbeat": (("currentTime", "t", 1, None),),
    "MeterValues": (),
    "StartTransaction": (
        ("idTagInfo", "o", 1, _ID_TAG_INFO),
        ("transactionId", "i", 1, None),
    ),
    "StatusNotification": (),
    "StopTransaction": (("idTagInfo", "o", 0, _ID_TAG_INFO),),
}

# Every action OCPP 1.6 defines for the Central System to send: one we do not handle is
# NotSupported, anything else NotImplemented.
KNOWN_ACTIONS = (
    "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache",
    "ClearChargingProfile", "DataTransfer", "GetCompositeSchedule", "GetConfiguration",
    "GetDiagnostics", "GetLocalListVersion", "RemoteStartTransaction", "RemoteStopTransaction",
    "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile", "TriggerMessage",
    "UnlockConnector", "UpdateFirmware",
)


def check(rules, payload, where=""):
    """Raise the CallError an OCPP 1.6 receiver owes for `payload`, or return None."""
    if not isinstance(payload, dict):
        raise FormationViolationError("payload%s is not an object" % where)
    for key in payload:
        for rule in rules:
            if rule[0] == key:
                break
        else:
            raise FormationViolationError("unexpected field %s%s" % (where, key))
    for name, kind, required, arg in rules:
        if name not in payload:
            if required:
                raise OccurenceConstraintViolationError("missing field %s%s" % (where, name))
            continue
        _value(kind, arg, payload[name], where + name)


def _value(kind, arg, v, name):
    if kind == "i":
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeConstraintViolationError("%s must be an integer" % name)
        if arg is not None and v < arg:
            raise PropertyConstraintViolationError("%s must be >= %d" % (name, arg))
    elif kind == "n":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeConstraintViolationError("%s must be a number" % name)
    elif kind == "s":
        if not isinstance(v, str):
            raise TypeConstraintViolationError("%s must be a string" % name)
        if arg and len(v) > arg:
            raise TypeConstraintViolationError("%s longer than CiString%d" % (name, arg))
    elif kind == "e":
        if not isinstance(v, str):
            raise TypeConstraintViolationError("%s must be a string" % name)
        if v not in arg:
            raise PropertyConstraintViolationError("%s: %s is not allowed" % (name, v))
    elif kind == "t":
        if not isinstance(v, str):
            raise TypeConstraintViolationError("%s must be a dateTime string" % name)
        if parse_iso(v) is None:
            raise PropertyConstraintViolationError("%s is not an ISO 8601 dateTime" % name)
    elif kind == "b":
        if not isinstance(v, bool):
            raise TypeConstraintViolationError("%s must be a boolean" % name)
    elif kind == "o":
        if not isinstance(v, dict):
            raise TypeConstraintViolationError("%s must be an object" % name)
        check(arg, v, name + ".")
    elif kind == "a":
        if not isinstance(v, list):
            raise TypeConstraintViolationError("%s must be an array" % name)
        for item in v:
            _value(arg[0], arg[1], item, name + "[]")
