"""The OCPP-J 1.6 CALLERROR: one exception carrying its error code.

Codes (OCPP-J 1.6 table): NotImplemented (action not known to this receiver), NotSupported (a
known 1.6 action this charge point does not support), InternalError, ProtocolError,
SecurityError, FormationViolation, PropertyConstraintViolation, OccurenceConstraintViolation,
TypeConstraintViolation, GenericError. One class rather than one per code: every class costs
about 400 bytes of heap on MicroPython.
"""


class CallError(Exception):
    def __init__(self, code, description="", details=None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.details = details
