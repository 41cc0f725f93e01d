"""OCPP 1.6 field rules for the payloads this charge point receives, and the checker.

The rules of a PDU are one string, and each table a flat tuple (name, rules, name, rules...)
of literals: frozen into the image it is a constant in flash, where a dict would be built in
the heap at import. `find(table, name)` looks one up. Fields are separated by ";", each field
"name kind required arg". Kinds: "i" integer (arg: minimum, "-" none), "n" number, "s" CiString
(arg: maximum length, 0 unbounded), "e" enumeration (arg: values separated by "|"),
"t" dateTime, "o" object (arg: the name of its rules in TYPES), "a" array (arg: the item's
kind followed by its arg, e.g. "s50" or "oChargingSchedulePeriod").

Error codes (OCPP-J 1.6 table): a payload that is not an object, or has a field the PDU does
not define, is a FormationViolation; a missing required field an OccurenceConstraintViolation;
a value of the wrong JSON type, or a string longer than its CiString type, a
TypeConstraintViolation; a value outside an enumeration, below its minimum or a malformed
dateTime a PropertyConstraintViolation.
"""
from chargepoint.ocpp.errors import CallError
from chargepoint.ocpp.timestamps import parse_iso

TYPES = (
    "AuthorizationData", "idTag s 1 20;idTagInfo o 0 IdTagInfo",
    "IdTagInfo", "status e 1 Accepted|Blocked|Expired|Invalid|ConcurrentTx;"
                 "expiryDate t 0 -;parentIdTag s 0 20",
    "ChargingProfile", "chargingProfileId i 1 -;transactionId i 0 -;stackLevel i 1 0;"
                       "chargingProfilePurpose e 1 ChargePointMaxProfile|TxDefaultProfile|TxProfile;"
                       "chargingProfileKind e 1 Absolute|Recurring|Relative;"
                       "recurrencyKind e 0 Daily|Weekly;validFrom t 0 -;validTo t 0 -;"
                       "chargingSchedule o 1 ChargingSchedule",
    "ChargingSchedule", "duration i 0 0;startSchedule t 0 -;chargingRateUnit e 1 A|W;"
                        "chargingSchedulePeriod a 1 oChargingSchedulePeriod;"
                        "minChargingRate n 0 -",
    "ChargingSchedulePeriod", "startPeriod i 1 0;limit n 1 -;numberPhases i 0 1",
    "CertificateHashData", "hashAlgorithm e 1 SHA256|SHA384|SHA512;issuerNameHash s 1 128;"
                           "issuerKeyHash s 1 128;serialNumber s 1 40",
    "LogParameters", "remoteLocation s 1 512;oldestTimestamp t 0 -;latestTimestamp t 0 -",
    "FirmwareType", "location s 1 512;retrieveDateTime t 1 -;installDateTime t 0 -;"
                    "signingCertificate s 1 5500;signature s 1 800",
)

# Central System -> charge point requests.
REQUESTS = (
    "CancelReservation", "reservationId i 1 -",
    "CertificateSigned", "certificateChain s 1 10000",
    "ChangeAvailability", "connectorId i 1 0;type e 1 Inoperative|Operative",
    "ChangeConfiguration", "key s 1 50;value s 1 500",
    "ClearCache", "",
    "ClearChargingProfile", "id i 0 -;connectorId i 0 0;chargingProfilePurpose e 0 "
                            "ChargePointMaxProfile|TxDefaultProfile|TxProfile;stackLevel i 0 0",
    "DataTransfer", "vendorId s 1 255;messageId s 0 50;data s 0 0",
    "DeleteCertificate", "certificateHashData o 1 CertificateHashData",
    "ExtendedTriggerMessage", "requestedMessage e 1 BootNotification|LogStatusNotification|"
                              "FirmwareStatusNotification|Heartbeat|MeterValues|"
                              "SignChargePointCertificate|StatusNotification;connectorId i 0 -",
    "GetCompositeSchedule", "connectorId i 1 0;duration i 1 0;chargingRateUnit e 0 A|W",
    "GetConfiguration", "key a 0 s50",
    "GetDiagnostics", "location s 1 0;retries i 0 -;retryInterval i 0 -;startTime t 0 -;"
                      "stopTime t 0 -",
    "GetInstalledCertificateIds", "certificateType e 1 "
                                  "CentralSystemRootCertificate|ManufacturerRootCertificate",
    "GetLocalListVersion", "",
    "GetLog", "log o 1 LogParameters;logType e 1 DiagnosticsLog|SecurityLog;requestId i 1 -;"
              "retries i 0 -;retryInterval i 0 -",
    "InstallCertificate", "certificateType e 1 "
                          "CentralSystemRootCertificate|ManufacturerRootCertificate;"
                          "certificate s 1 5500",
    "RemoteStartTransaction", "connectorId i 0 0;idTag s 1 20;chargingProfile o 0 ChargingProfile",
    "RemoteStopTransaction", "transactionId i 1 -",
    "ReserveNow", "connectorId i 1 0;expiryDate t 1 -;idTag s 1 20;parentIdTag s 0 20;"
                  "reservationId i 1 -",
    "Reset", "type e 1 Hard|Soft",
    "SendLocalList", "listVersion i 1 -;localAuthorizationList a 0 oAuthorizationData;"
                     "updateType e 1 Differential|Full",
    "SetChargingProfile", "connectorId i 1 0;csChargingProfiles o 1 ChargingProfile",
    "SignedUpdateFirmware", "retries i 0 0;retryInterval i 0 0;requestId i 1 -;"
                            "firmware o 1 FirmwareType",
    "TriggerMessage", "requestedMessage e 1 BootNotification|DiagnosticsStatusNotification|"
                      "FirmwareStatusNotification|Heartbeat|MeterValues|StatusNotification;"
                      "connectorId i 0 0",
    "UnlockConnector", "connectorId i 1 0",
    "UpdateFirmware", "location s 1 0;retries i 0 0;retrieveDate t 1 -;retryInterval i 0 0",
)

# Central System answers to our requests.
CONFIRMATIONS = (
    "Authorize", "idTagInfo o 1 IdTagInfo",
    "BootNotification", "status e 1 Accepted|Pending|Rejected;currentTime t 1 -;interval i 1 -",
    "DataTransfer", "status e 1 Accepted|Rejected|UnknownMessageId|UnknownVendorId;data s 0 0",
    "DiagnosticsStatusNotification", "",
    "FirmwareStatusNotification", "",
    "Heartbeat", "currentTime t 1 -",
    "LogStatusNotification", "",
    "MeterValues", "",
    "SecurityEventNotification", "",
    "SignCertificate", "status e 1 Accepted|Rejected",
    "SignedFirmwareStatusNotification", "",
    "StartTransaction", "idTagInfo o 1 IdTagInfo;transactionId i 1 -",
    "StatusNotification", "",
    "StopTransaction", "idTagInfo o 0 IdTagInfo",
)

# Every action OCPP 1.6 defines for the Central System to send, with those of its security
# extensions (whitepaper edition 3): one we do not handle is NotSupported, anything else
# NotImplemented.
KNOWN_ACTIONS = (
    "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache",
    "ClearChargingProfile", "DataTransfer", "GetCompositeSchedule", "GetConfiguration",
    "GetDiagnostics", "GetLocalListVersion", "RemoteStartTransaction", "RemoteStopTransaction",
    "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile", "TriggerMessage",
    "UnlockConnector", "UpdateFirmware",
    "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
    "GetInstalledCertificateIds", "GetLog", "InstallCertificate", "SignedUpdateFirmware",
)


def find(table, name):
    """The rules of `name` in `table` (TYPES, REQUESTS, CONFIRMATIONS), or None."""
    for i in range(0, len(table), 2):
        if table[i] == name:
            return table[i + 1]
    return None


def _fields(rules):
    return [f.split(" ") for f in rules.split(";")] if rules else []


def check(rules, payload, where=""):
    """Raise the CallError an OCPP 1.6 receiver owes for `payload`, or return None."""
    if not isinstance(payload, dict):
        raise CallError("FormationViolation", "payload%s is not an object" % where)
    fields = _fields(rules)
    for key in payload:
        for field in fields:
            if field[0] == key:
                break
        else:
            raise CallError("FormationViolation", "unexpected field %s%s" % (where, key))
    for name, kind, required, arg in fields:
        if name not in payload:
            if required == "1":
                raise CallError("OccurenceConstraintViolation",
                                "missing field %s%s" % (where, name))
            continue
        _value(kind, arg, payload[name], where + name)


def _value(kind, arg, v, name):
    if kind == "i":
        if not isinstance(v, int) or isinstance(v, bool):
            raise CallError("TypeConstraintViolation", "%s must be an integer" % name)
        if arg != "-" and v < int(arg):
            raise CallError("PropertyConstraintViolation", "%s must be >= %s" % (name, arg))
    elif kind == "n":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise CallError("TypeConstraintViolation", "%s must be a number" % name)
    elif kind == "s":
        if not isinstance(v, str):
            raise CallError("TypeConstraintViolation", "%s must be a string" % name)
        if arg != "0" and len(v) > int(arg):
            raise CallError("TypeConstraintViolation", "%s longer than CiString%s" % (name, arg))
    elif kind == "e":
        if not isinstance(v, str):
            raise CallError("TypeConstraintViolation", "%s must be a string" % name)
        if v not in arg.split("|"):
            raise CallError("PropertyConstraintViolation", "%s: %s is not allowed" % (name, v))
    elif kind == "t":
        if not isinstance(v, str):
            raise CallError("TypeConstraintViolation", "%s must be a dateTime string" % name)
        if parse_iso(v) is None:
            raise CallError("PropertyConstraintViolation", "%s is not an ISO 8601 dateTime" % name)
    elif kind == "o":
        if not isinstance(v, dict):
            raise CallError("TypeConstraintViolation", "%s must be an object" % name)
        check(find(TYPES, arg), v, name + ".")
    elif kind == "a":
        if not isinstance(v, list):
            raise CallError("TypeConstraintViolation", "%s must be an array" % name)
        for item in v:
            _value(arg[0], arg[1:], item, name + "[]")
