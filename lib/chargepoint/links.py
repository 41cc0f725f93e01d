"""The "links" service of a charger on a WebSocket (chargepoint.model.connection): how to reach
the Central System with each security profile, from config.json's `websocket` section and the
roots installed over OCPP. Imported only where the charger is configured so (app.py)."""


class Links:
    """Profiles 0 and 1 use config.json's `websocket.url` with ws://, 2 and 3 the same with
    wss:// (the scheme is the only difference: a Central System serves both on one host and
    path). `roots()`: the Central System roots installed with InstallCertificate (DER)."""

    def __init__(self, cfg, roots, identity=None):
        ws = cfg["websocket"]
        self.ws = ws
        self.roots = roots
        # (certificate, key) DER of the charger's own making (app.own_identity): profile 3
        # presents it instead of config.json's files, which it falls back to if refused
        self.identity = identity
        self.profile = ws["security_profile"]
        self.key = ws["auth_key"]
        self.ping_interval = ws["ping_interval"]

    def url(self, profile):
        rest = self.ws["url"].partition("://")[2]
        return ("wss://" if profile >= 2 else "ws://") + rest

    def ready(self, profile, key):
        """None when `profile` has what it needs, else what it lacks."""
        if profile in (1, 2) and not key:
            return "no AuthorizationKey"
        if profile >= 2 and not self.ws["ca"] and not self.roots():
            return "no Central System root certificate"
        if profile == 3 and not (self.ws["cert"] and self.ws["key"]) and not self.identity:
            return "no charge point certificate"
        return None

    def settings(self, profile, key):
        """(url, TLS context or False, Basic password or False, the context to fall back to
        or None) of `profile`."""
        from chargepoint.transport import tls
        from chargepoint.transport.websocket import password_of

        ssl = False
        fallback = None
        ws = self.ws
        if profile >= 2:
            mine = profile == 3
            roots = self.roots()

            def files():
                return tls.tls_context(ws["ca"], ws["cert"] if mine else None,
                                       ws["key"] if mine else None, roots,
                                       tls.WHITEPAPER_SUITES)
            if mine and self.identity is not None:
                ssl = tls.tls_context(ws["ca"], None, None, roots, tls.WHITEPAPER_SUITES,
                                      self.identity)
                if ws["cert"] and ws["key"]:
                    fallback = files
            else:
                ssl = files()
        return (self.url(profile), ssl, password_of(key) if profile in (1, 2) else False,
                fallback)


def build_websocket(cfg, roots, before_connect=None, say=print, wake=None, identity=None):
    """The transport straight to a Central System and its "links" service; the connection
    feature sets it up with the security profile in force (the flash's, else config.json's)
    before it starts. `identity`: as Links'."""
    from chargepoint.transport.websocket import WebSocketTransport

    links = Links(cfg, roots, identity)
    transport = WebSocketTransport(cfg["id"], links.url(links.profile),
                                   before_connect=before_connect, say=say, wake=wake)
    return transport, links
