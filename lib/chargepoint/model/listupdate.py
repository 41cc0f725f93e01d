"""SendLocalList (OCPP 1.6 §5.15): the local list (chargepoint.model.localauth says its file)
rewritten with a Full or Differential update. Imported by the feature for the request and
dropped after it. `ll` below is the feature."""
import os
import struct

from micropython import const

from chargepoint.model.localauth import MAGIC, STATUSES, fill
from chargepoint.ocpp.timestamps import parse_iso

# the file's layout (chargepoint.model.localauth)
_HEADER = const(8)
_TAG = const(20)
_RECORD = const(45)
_STATUS_AT = const(20)
_EXPIRY_AT = const(21)
_PARENT_AT = const(25)
_COPY = const(16)  # records moved per read/write while an update copies the old list
_NO_EXPIRY = const(0)


def send_local_list(ll, p):
    """SendLocalList.conf's status."""
    config = ll.config
    if not config.get("LocalAuthListEnabled"):
        return "NotSupported"
    full = p["updateType"] == "Full"
    version = p["listVersion"]
    if not full and version <= ll.version:
        return "VersionMismatch"
    entries = p.get("localAuthorizationList") or []
    if len(entries) > config.get("SendLocalListMaxLength"):
        return "Failed"
    return update(ll, entries, version, full)


def _record(id_tag, info):
    """The record of one AuthorizationData entry, or None when its idTag or parentIdTag is
    longer than 20 bytes in UTF-8 (20 characters that are not all ASCII)."""
    rec = bytearray(_RECORD)
    mv = memoryview(rec)
    if not fill(mv[0:_TAG], id_tag, True):
        return None
    if info is None:
        return rec  # a Differential's removal: only the key counts
    rec[_STATUS_AT] = STATUSES.index(info["status"])
    expiry = parse_iso(info.get("expiryDate"))
    if expiry is None:
        expiry = _NO_EXPIRY
    elif expiry < 1:
        expiry = 1  # before 1970: expired all the same, and 0 means none
    elif expiry > 0xFFFFFFFF:
        expiry = 0xFFFFFFFF
    struct.pack_into("<I", rec, _EXPIRY_AT, expiry)
    parent = info.get("parentIdTag")
    if parent and not fill(mv[_PARENT_AT:_RECORD], parent, False):
        return None
    return rec


def update(ll, entries, version, full):
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
        if not full and ll.count:
            old = open(ll.path, "rb")
        count = ll.count if old else 0
        plan = []  # (index in the old list, found there, record or None)
        for key, _, rec in merged:
            i, found = ll.search(old, key) if old else (0, False)
            plan.append((i, found, rec))
            if rec is None:
                if found:
                    count -= 1
            elif not found:
                count += 1
        if count > ll.config.get("LocalAuthListMaxLength"):
            return "Failed"
        if count and version < 1:
            return "Failed"  # 0 reports an empty list, -1 an unsupported one
        _write(ll, old, plan, count, version if count else 0)
    except OSError:  # flash full or failing: the old list stays as it was
        try:
            os.remove(ll.path + ".tmp")
        except OSError:
            pass
        return "Failed"
    finally:
        if old is not None:
            old.close()
    ll.count = count
    ll.version = version if count else 0
    return "Accepted"


def _write(ll, old, plan, count, version):
    tmp = ll.path + ".tmp"
    head = bytearray(_HEADER)
    head[0:4] = MAGIC
    struct.pack_into("<i", head, 4, version)
    buf = memoryview(bytearray(_COPY * _RECORD)) if old else None
    with open(tmp, "wb") as f:
        f.write(head)
        at = 0  # the next record of the old list to copy
        for i, found, rec in plan:
            if old:
                _copy(old, f, at, i, buf)
            if rec is not None:
                f.write(rec)
            at = i + 1 if found else i
        if old:
            _copy(old, f, at, ll.count, buf)
    os.rename(tmp, ll.path)


def _copy(old, f, start, stop, buf):
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
