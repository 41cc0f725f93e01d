"""Local Authorization List Management (OCPP 1.6 §3.5.2, SendLocalList, GetLocalListVersion).

The list stays on flash and is looked up there: a file of fixed-width records sorted by idTag,
binary-searched with seek + readinto into buffers allocated once, so a list of 1000 idTags
costs a few hundred bytes of heap instead of 1000 dicts. File `locallist` in the store's
folder:
  header  8 bytes: b"LAL1", listVersion (int32 little-endian)
  record  45 bytes each, sorted by key:
          key          20 bytes: the idTag in UTF-8, ASCII letters upper-cased (IdToken is a
                       CiString20: case-insensitive), NUL-padded
          status       1 byte: index into STATUSES
          expiryDate   4 bytes: unix seconds, uint32 little-endian, 0 = none
          parentIdTag  20 bytes: UTF-8 as sent, NUL-padded (none: all NUL)
An update (Full or Differential) writes the whole new list to `locallist.tmp` and renames it
over `locallist`: a power cut leaves the old list or the new one, with its own version.

The feature keeps the file's name, its version and size, and the lookup; an update
(chargepoint.model.listupdate) is imported for a SendLocalList and dropped after it.

An empty list has version 0 (what GetLocalListVersion must report for it); a disabled list
(LocalAuthListEnabled false) reports -1, refuses updates and is never consulted.
"""
import os
import struct

from micropython import const

from chargepoint.model import Feature, unload
from chargepoint.ocpp.config import BOOL, INT, RO

MAGIC = b"LAL1"
# (the layout's numbers are private, costing no RAM: chargepoint.model.listupdate has its own
# copy of those it needs)
_HEADER = const(8)
_TAG = const(20)  # IdToken: CiString20
_PARENT_AT = const(25)
_RECORD = const(45)
_TAIL = const(25)  # a record past its key: status, expiry, parent
_MAX_LENGTH = const(1000)  # LocalAuthListMaxLength
# SendLocalListMaxLength: 24 entries of the longest kind (20-character idTag and parentIdTag,
# expiryDate with milliseconds and offset, ConcurrentTx) make a 4,035-byte frame with a 36-
# character message id and JSON's default ", "/": " separators (3,812 bytes compact), so any
# SendLocalList we accept fits the transport's 4 KB inbound budget.
_SEND_MAX = const(24)

STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
_NAME = "locallist"


def fill(buf, text, fold):
    """Copy `text` as UTF-8 into `buf`, NUL-padded; ASCII letters upper-cased when `fold`.
    False when it does not fit."""
    raw = text.encode()
    n = len(raw)
    if n > len(buf):
        return False
    for i in range(len(buf)):
        if i < n:
            c = raw[i]
            buf[i] = c - 32 if fold and 97 <= c <= 122 else c
        else:
            buf[i] = 0
    return True


class LocalList(Feature):
    """The feature (`cp.local_list`): installed where the platform gives the "folder" of the
    records (a test charge point on a memory store has none, and both actions stay
    NotSupported). LocalAuthorizeOffline and LocalPreAuthorize are the Core keys."""
    name = "local_list"
    profile = "LocalAuthListManagement"
    needs = ("folder",)
    routes = ("GetLocalListVersion", "SendLocalList")
    keys = (("LocalAuthListEnabled", BOOL, True),
            ("LocalAuthListMaxLength", INT, _MAX_LENGTH, RO),
            ("SendLocalListMaxLength", INT, _SEND_MAX, RO))

    def __init__(self, cp, services):
        self.path = services["folder"] + "/" + _NAME
        self.config = cp.config
        self.clock = cp.clock
        self._key = bytearray(_TAG)  # the idTag looked up
        self._probe = bytearray(_TAG)  # the key of the record under the cursor
        self._tail = bytearray(_TAIL)
        self.version = 0
        self.count = 0
        self._load()

    def get_local_list_version(self, p, stale):
        if not self.config.get("LocalAuthListEnabled"):
            return {"listVersion": -1}
        return {"listVersion": self.version}

    def send_local_list(self, p, stale):
        # Carried out even when stale: it is configuration, not actuation.
        from chargepoint.model import listupdate

        try:
            return {"status": listupdate.send_local_list(self, p)}
        finally:
            unload("chargepoint.model", "listupdate")

    def _load(self):
        try:
            size = os.stat(self.path)[6]
            with open(self.path, "rb") as f:
                head = f.read(_HEADER)
        except OSError:
            return  # no list yet
        if head[:4] != MAGIC or size < _HEADER or (size - _HEADER) % _RECORD:
            return  # not ours, or damaged by the medium: no list rather than a wrong one
        self.count = (size - _HEADER) // _RECORD
        self.version = struct.unpack_from("<i", head, 4)[0] if self.count else 0

    def search(self, f, key):
        """(index, found): where `key` is, or where it would go."""
        probe = self._probe
        lo = 0
        hi = self.count
        while lo < hi:
            mid = (lo + hi) >> 1
            f.seek(_HEADER + mid * _RECORD)
            f.readinto(probe)
            if probe == key:
                return mid, True
            if probe < key:
                lo = mid + 1
            else:
                hi = mid
        return lo, False

    def lookup(self, id_tag):
        """(status, parentIdTag or None) of a listed idTag, the status "Expired" once past its
        expiryDate (while the wall clock is known); None when the idTag is not listed or the
        list is disabled."""
        if not self.count or not self.config.get("LocalAuthListEnabled"):
            return None
        if not fill(self._key, id_tag, True):
            return None  # too long to be listed
        tail = self._tail
        with open(self.path, "rb") as f:
            i, found = self.search(f, self._key)
            if not found:
                return None
            f.seek(_HEADER + i * _RECORD + _TAG)
            f.readinto(tail)
        status = STATUSES[tail[0]]
        expiry = struct.unpack_from("<I", tail, 1)[0]
        if expiry:
            now = self.clock.wall()
            if now is not None and now > expiry:
                status = "Expired"
        parent = None
        if tail[_PARENT_AT - _TAG]:
            end = _TAIL
            while not tail[end - 1]:
                end -= 1
            parent = str(tail[_PARENT_AT - _TAG:end], "utf-8")
        return status, parent
