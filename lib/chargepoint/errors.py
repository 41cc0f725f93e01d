"""The OCPP-J 1.6 CALLERROR vocabulary: one exception class per error code."""


class CallError(Exception):
    code = "GenericError"

    def __init__(self, description="", details=None):
        super().__init__(description)
        self.description = description
        self.details = details


class NotImplementedActionError(CallError):
    code = "NotImplemented"  # action not known to this receiver


class NotSupportedError(CallError):
    code = "NotSupported"  # a known OCPP 1.6 action this charge point does not support


class InternalError(CallError):
    code = "InternalError"


class ProtocolError(CallError):
    code = "ProtocolError"


class SecurityError(CallError):
    code = "SecurityError"


class FormationViolationError(CallError):
    code = "FormationViolation"


class PropertyConstraintViolationError(CallError):
    code = "PropertyConstraintViolation"


class OccurenceConstraintViolationError(CallError):
    code = "OccurenceConstraintViolation"


class TypeConstraintViolationError(CallError):
    code = "TypeConstraintViolation"


class GenericError(CallError):
    code = "GenericError"
