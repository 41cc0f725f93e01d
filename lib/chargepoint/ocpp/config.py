"""OCPP configuration keys: typed, read-only or read-write, validated, persisted.

Each feature declares its own keys with a default and a validator; the store answers
GetConfiguration and ChangeConfiguration and persists the values that differ from defaults.
"""
from micropython import const

INT = const(0)
BOOL = const(1)
STR = const(2)
CSL = const(3)  # comma-separated list

RO = const(1)  # read-only
REBOOT = const(2)  # a change takes effect after a reboot
SECRET = const(4)  # write-only: never in GetConfiguration, never logged (AuthorizationKey)


class Config:
    """Per key three small entries, no list or tuple of its own: its value, its kind and
    flags in one small int (kind | flags << 2), and its validator where it has one."""

    def __init__(self, store):
        self._store = store
        self._values = {}  # name -> value
        self._specs = {}  # name -> kind | flags << 2
        self._checks = {}  # name -> validator(value) -> bool, for the keys that have one
        self._saved = store.read("config", {})
        self.listeners = []  # f(name, value) after an accepted change

    def declare(self, name, kind, default, flags=0, validator=None):
        value = default
        if name in self._saved and not flags & RO:
            saved = _parse(kind, self._saved[name])
            if saved is not None and (validator is None or validator(saved)):
                value = saved
        self._values[name] = value
        self._specs[name] = kind | flags << 2
        if validator is not None:
            self._checks[name] = validator
        elif name in self._checks:  # declared again, without one now
            del self._checks[name]

    def get(self, name):
        return self._values[name]

    def has(self, name):
        """Whether GetConfiguration knows `name` (a write-only key it does not)."""
        spec = self._specs.get(name)
        return spec is not None and not spec >> 2 & SECRET

    def names(self):
        """The keys GetConfiguration shows (a write-only one is not among them)."""
        return [n for n, spec in self._specs.items() if not spec >> 2 & SECRET]

    def override(self, name, value):
        """Set a value from inside the firmware (e.g. HeartbeatInterval from boot)."""
        self._values[name] = value
        self._persist(name, value)

    def change(self, name, text):
        """ChangeConfiguration: Accepted, Rejected, RebootRequired or NotSupported."""
        spec = self._specs.get(name)
        if spec is None:
            return "NotSupported"
        flags = spec >> 2
        if flags & RO:
            return "Rejected"
        value = _parse(spec & 3, text)
        validator = self._checks.get(name)
        if value is None or (validator is not None and not validator(value)):
            return "Rejected"
        self._persist(name, value)
        if flags & REBOOT:
            return "RebootRequired"
        self._values[name] = value
        for f in self.listeners:
            f(name, value)
        return "Accepted"

    def wire(self, name):
        spec = self._specs[name]
        return {"key": name, "readonly": bool(spec >> 2 & RO),
                "value": _text(spec & 3, self._values[name])}

    def _persist(self, name, value):
        self._saved[name] = _text(self._specs[name] & 3, value)
        self._store.write("config", self._saved)


def _parse(kind, text):
    if not isinstance(text, str):
        return None
    if kind == INT:
        t = text.strip()
        if not t or not (t.isdigit() or (t[0] == "-" and t[1:].isdigit())):
            return None
        return int(t)
    if kind == BOOL:
        t = text.strip().lower()
        return True if t == "true" else False if t == "false" else None
    if kind == CSL:
        return ",".join(p.strip() for p in text.split(",") if p.strip())
    return text


def _text(kind, value):
    if kind == BOOL:
        return "true" if value else "false"
    return str(value)
