"""Local Authorization List Management (OCPP 1.6 §3.5.2, SendLocalList, GetLocalListVersion).

The list stays on flash and is looked up there: a file of fixed-width records sorted by idTag,
binary-searched with seek + readinto into buffers allocated once, so a list of 1000 idTags
costs a few hundred bytes of heap instead of 1000 dicts. File `locallist` in the store's
folder:
  header  8 bytes: b"LAL1", listVersion (int32 little-endian)
  record  45 bytes each, sorted by key:
          key          20 bytes: the idTag in UTF-8, ASCII letters upper-cased (IdToken is a
                       CiString20: case-insensitive), NUL-padded
          status       1 byte: index into _STATUSES
          expiryDate   4 bytes: unix seconds, uint32 little-endian, 0 = none
          parentIdTag  20 bytes: UTF-8 as sent, NUL-padded (none: all NUL)
An update (Full or Differential) writes the whole new list to `locallist.tmp` and renames it
over `locallist`: a power cut leaves the old list or the new one, with its own version.

An empty list has version 0 (what GetLocalListVersion must report for it); a disabled list
(LocalAuthListEnabled false) reports -1, refuses updates and is never consulted.
"""
import os
import struct

from micropython import const

from chargepoint.model import Feature
from chargepoint.ocpp.config import BOOL, INT, RO
from chargepoint.ocpp.timestamps import parse_iso

_MAGIC = b"LAL1"
_HEADER = const(8)
_TAG = const(20)  # IdToken: CiString20
_STATUS_AT = const(20)
_EXPIRY_AT = const(21)
_PARENT_AT = const(25)
_RECORD = const(45)
_TAIL = const(25)  # a record past its key: status, expiry, parent
_COPY = const(16)  # records moved per read/write while an update copies the old list
_MAX_LENGTH = const(1000)  # LocalAuthListMaxLength
# SendLocalListMaxLength: 24 entries of the longest kind (20-character idTag and parentIdTag,
# expiryDate with milliseconds and offset, ConcurrentTx) make a 4,035-byte frame with a 36-
# character message id and JSON's default ", "/": " separators (3,812 bytes compact), so any
# SendLocalList we accept fits the transport's 4 KB inbound budget.
_SEND_MAX = const(24)
_NO_EXPIRY = const(0)

_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
_NAME = "locallist"


def _fill(buf, text, fold):
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


def _record(id_tag, info):
    """The record of one AuthorizationData entry, or None when its idTag or parentIdTag is
    longer than 20 bytes in UTF-8 (20 characters that are not all ASCII)."""
    rec = bytearray(_RECORD)
    mv = memoryview(rec)
    if not _fill(mv[0:_TAG], id_tag, True):
        return None
    if info is None:
        return rec  # a Differential's removal: only the key counts
    rec[_STATUS_AT] = _STATUSES.index(info["status"])
    expiry = parse_iso(info.get("expiryDate"))
    if expiry is None:
        expiry = _NO_EXPIRY
    elif expiry < 1:
        expiry = 1  # before 1970: expired all the same, and 0 means none
    elif expiry > 0xFFFFFFFF:
        expiry = 0xFFFFFFFF
    struct.pack_into("<I", rec, _EXPIRY_AT, expiry)
    parent = info.get("parentIdTag")
    if parent and not _fill(mv[_PARENT_AT:_RECORD], parent, False):
        return None
    return rec


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
        config = self.config
        if not config.get("LocalAuthListEnabled"):
            return {"status": "NotSupported"}
        full = p["updateType"] == "Full"
        version = p["listVersion"]
        if not full and version <= self.version:
            return {"status": "VersionMismatch"}
        entries = p.get("localAuthorizationList") or []
        if len(entries) > config.get("SendLocalListMaxLength"):
            return {"status": "Failed"}
        return {"status": self.update(entries, version, full)}

    def _load(self):
        try:
            size = os.stat(self.path)[6]
            with open(self.path, "rb") as f:
                head = f.read(_HEADER)
        except OSError:
            return  # no list yet
        if head[:4] != _MAGIC or size < _HEADER or (size - _HEADER) % _RECORD:
            return  # not ours, or damaged by the medium: no list rather than a wrong one
        self.count = (size - _HEADER) // _RECORD
        self.version = struct.unpack_from("<i", head, 4)[0] if self.count else 0

    def _search(self, f, key):
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
        if not _fill(self._key, id_tag, True):
            return None  # too long to be listed
        tail = self._tail
        with open(self.path, "rb") as f:
            i, found = self._search(f, self._key)
            if not found:
                return None
            f.seek(_HEADER + i * _RECORD + _TAG)
            f.readinto(tail)
        status = _STATUSES[tail[0]]
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

    def update(self, entries, version, full):
        """Apply a SendLocalList's entries: "Accepted", or "Failed" with the list unchanged."""
        changes = []  # (key, position in the request, record or None to remove)
        n = 0
        for entry in entries:
            info = entry.get("idTagInfo")
            if info is None and full:
                return "Failed"  # a Full update must say what each idTag is
            rec = _record(entry["idTag"], info)
            if rec is None:
                return "Failed"
            changes.append((bytes(rec[0:_TAG]), n, None if info is None else rec))
            n += 1
        changes.sort()  # by key, then by position: the last entry for an idTag wins
        merged = []
        for change in changes:
            if merged and merged[-1][0] == change[0]:
                merged[-1] = change
            else:
                merged.append(change)
        changes = None
        old = None
        try:
            if not full and self.count:
                old = open(self.path, "rb")
            count = self.count if old else 0
            plan = []  # (index in the old list, found there, record or None)
            for key, _, rec in merged:
                i, found = self._search(old, key) if old else (0, False)
                plan.append((i, found, rec))
                if rec is None:
                    if found:
                        count -= 1
                elif not found:
                    count += 1
            if count > self.config.get("LocalAuthListMaxLength"):
                return "Failed"
            if count and version < 1:
                return "Failed"  # 0 reports an empty list, -1 an unsupported one
            self._write(old, plan, count, version if count else 0)
        except OSError:  # flash full or failing: the old list stays as it was
            try:
                os.remove(self.path + ".tmp")
            except OSError:
                pass
            return "Failed"
        finally:
            if old is not None:
                old.close()
        self.count = count
        self.version = version if count else 0
        return "Accepted"

    def _write(self, old, plan, count, version):
        tmp = self.path + ".tmp"
        head = bytearray(_HEADER)
        head[0:4] = _MAGIC
        struct.pack_into("<i", head, 4, version)
        buf = memoryview(bytearray(_COPY * _RECORD)) if old else None
        with open(tmp, "wb") as f:
            f.write(head)
            at = 0  # the next record of the old list to copy
            for i, found, rec in plan:
                if old:
                    self._copy(old, f, at, i, buf)
                if rec is not None:
                    f.write(rec)
                at = i + 1 if found else i
            if old:
                self._copy(old, f, at, self.count, buf)
        os.rename(tmp, self.path)

    def _copy(self, old, f, start, stop, buf):
        left = (stop - start) * _RECORD
        if left <= 0:
            return
        old.seek(_HEADER + start * _RECORD)
        while left:
            n = min(left, len(buf))
            chunk = buf[0:n]
            if old.readinto(chunk) != n:
                raise OSError(5, "local list shorter than its size")  # EIO
            f.write(chunk)
            left -= n
