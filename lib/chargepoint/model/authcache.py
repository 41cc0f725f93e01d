"""Authorization cache (OCPP 1.6 §3.5.2): the latest idTagInfo of recently seen idTags."""
from micropython import const

from chargepoint.ocpp.timestamps import parse_iso

_SIZE = const(32)


class AuthCache:
    def __init__(self, store, clock):
        self.store = store
        self.clock = clock
        # idTag -> [status, expiry unix or 0, parentIdTag or None]
        self.entries = store.read("authcache", {})

    def put(self, id_tag, info):
        expiry = parse_iso(info.get("expiryDate")) or 0
        entry = [info["status"], expiry, info.get("parentIdTag")]
        if self.entries.get(id_tag) == entry:
            return
        self.entries.pop(id_tag, None)
        while len(self.entries) >= _SIZE:
            self.entries.pop(next(iter(self.entries)))
        self.entries[id_tag] = entry
        self.store.write("authcache", self.entries)

    def status(self, id_tag):
        """Cached status, "Expired" once past its expiry, or None when unknown."""
        entry = self.entries.get(id_tag)
        if entry is None:
            return None
        now = self.clock.wall()
        if entry[1] and now is not None and now > entry[1]:
            return "Expired"
        return entry[0]

    def parent(self, id_tag):
        """The cached parentIdTag of `id_tag`, or None."""
        entry = self.entries.get(id_tag)
        return entry[2] if entry is not None and len(entry) > 2 else None

    def clear(self):
        self.entries = {}
        self.store.write("authcache", self.entries)
