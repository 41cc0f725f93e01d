"""The link to a Central System over OCPP-J (a WebSocket): its security profile, the keys of the
OCPP 1.6 security whitepaper that rule it, and a profile change with its fall-back (A05).

A feature (`cp.connection`), installed where the platform connects over a WebSocket (the
"links" service: app.py's, which knows the URL, the files and how to make a TLS context for
each profile). Keys:
  SecurityProfile     RW, 0..3: what the charger connects with (config.json's at first boot)
  AuthorizationKey    write-only (never in GetConfiguration, never in a log): 32..40 hex
                      digits, sent as the Basic auth password hex-decoded, or 16..20
                      characters sent as they are (valid_key); config.json's at first boot
  (CpoName, the CSR's organisation, is chargepoint.model.identity's)
  WebSocketPingInterval  RW, seconds, 0 = no pings; negative: Rejected
  SecurityProfileFallbackSeconds  RW: how long a new profile may take to connect

Profile change (ChangeConfiguration SecurityProfile): a value not above the current one is
Rejected; one above it without what it needs (an AuthorizationKey for 1 and 2, a Central
System root for 2 and 3: config.json's `websocket.ca` or one installed with
InstallCertificate; our certificate for 3) is Rejected; else Accepted and the charger
reconnects with it. The key keeps the old value until a connection with the new profile
succeeds: then the new one is kept (on flash) and the old one forgotten. If none succeeds
within SecurityProfileFallbackSeconds, the charger goes back to the old profile and reports
it: a security event SecurityProfileFallback (not in the whitepaper's list, which has none for
it), once it is connected again. An AuthorizationKey change reconnects with the new key
(nothing queued is lost: the queue is the engine's); the security feature records
ReconfigurationOfSecurityParameters for both.
"""
from micropython import const

from chargepoint.model import Feature
from chargepoint.ocpp.config import INT, SECRET, STR

_FALLBACK_S = const(60)
_LOADED = const(1)


def valid_key(key):
    """An AuthorizationKey the firmware takes: 32..40 hex digits (an even number: 16..20
    bytes), or 16..20 characters used as they are."""
    if 32 <= len(key) <= 40 and not len(key) % 2:
        for ch in key:
            if ch not in "0123456789abcdefABCDEF":
                return False
        return True
    return 16 <= len(key) <= 20


def _nonneg(v):
    return v >= 0


class Connection(Feature):
    name = "connection"
    needs = ("links",)

    def __init__(self, cp, services):
        self.cp = cp
        self.log = services.get("log")
        links = self.links = services["links"]
        config = self.config = cp.config
        self._state = 0
        config.declare("SecurityProfile", INT, links.profile, 0, self._allowed)
        config.declare("AuthorizationKey", STR, links.key, SECRET, valid_key)
        config.declare("WebSocketPingInterval", INT, links.ping_interval, 0, _nonneg)
        config.declare("SecurityProfileFallbackSeconds", INT, _FALLBACK_S, 0, lambda v: v > 0)
        self._state = _LOADED
        config.listeners.append(self._changed)
        self._trying = None  # (old profile, ticks deadline, connects when asked)
        self._old = None  # the profile in use when a change was accepted
        self._target = None  # the profile being tried
        self._reconnect = False  # a change asks for a new connection (from the next tick)
        self._fell_back = None  # the profile that did not connect, to report once online
        # what the flash kept may differ from config.json's: the transport starts with it
        self._apply(config.get("SecurityProfile"))
        cp.transport.set_ping_interval(config.get("WebSocketPingInterval"))

    def _allowed(self, value):
        if not 0 <= value <= 3:
            return False
        if self._state != _LOADED:
            return True  # the value kept on flash, at boot
        current = self.config.get("SecurityProfile")
        if value <= current or self.links.ready(value, self.config.get("AuthorizationKey")):
            return False
        self._old = current  # (while a change is tried, the key shows the old profile)
        return True

    def _apply(self, profile):
        """The transport's next connection with `profile`; False if it cannot be made (a
        file gone, a certificate mbedTLS refuses): the link stays as it is."""
        try:
            self.cp.transport.configure(*self.links.settings(
                profile, self.config.get("AuthorizationKey")))
            return True
        except (OSError, ValueError) as e:
            self._log("security profile %d: %s" % (profile, e))
            return False

    def _changed(self, name, value):
        transport = self.cp.transport
        if name == "WebSocketPingInterval":
            transport.set_ping_interval(value)
        elif name == "AuthorizationKey":
            # the reconnect waits for the next tick: the answer to this request first
            self._reconnect = self._apply(self.config.get("SecurityProfile"))
        elif name == "SecurityProfile":
            old = self._old
            # the key keeps the old profile until the new one has connected
            self.config.override("SecurityProfile", old)
            self._trying = (old, self.cp.clock.after(
                self.config.get("SecurityProfileFallbackSeconds") * 1000),
                transport.status["connects"])
            self._target = value
            self._reconnect = self._apply(value)

    def before(self):
        # Before the loop takes the first frame of a connection with the new profile (a
        # GetConfiguration, say): the key says the profile in use from then on.
        trying = self._trying
        if trying is not None:
            transport = self.cp.transport
            if transport.connected and transport.status["connects"] > trying[2]:
                self._trying = None
                self.config.override("SecurityProfile", self._target)  # kept from now on
                self._log("security profile %d in use" % self._target)

    def tick(self):
        trying = self._trying
        cp = self.cp
        if self._reconnect:
            self._reconnect = False
            cp.transport.reconnect()
        if trying is not None:
            old, deadline, _ = trying
            transport = cp.transport
            if cp.clock.since(deadline) >= 0:
                self._trying = None
                self._fell_back = self._target
                self._apply(old)
                transport.reconnect()
                self._log("security profile %d did not connect: back to %d"
                          % (self._target, old))
        if self._fell_back is not None and cp.online():
            cp.security.record("SecurityProfileFallback", "profile %d did not connect, %d kept"
                               % (self._fell_back, self.config.get("SecurityProfile")))
            self._fell_back = None

    def _log(self, line):
        if self.log is not None:
            self.log.write("link", line)
