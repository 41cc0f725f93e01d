"""Persistent JSON records on the device filesystem: each written atomically, each carrying
its length and CRC32, checked on every read.

A record is one file: a header line `#R1 <length> <crc32, 8 hex digits>` and the record's
JSON (UTF-8) of that length. It is written to `name.tmp`, closed, then renamed over `name`,
the copy it replaces kept as `name.old`, so a power cut leaves the old or the new copy,
never half of one (LittleFS renames atomically).

A record that does not check out (a header that does not match its body: truncated, bits
flipped; not JSON; not of the type its reader expects, e.g. a list where a dict must be) is
damaged: moved aside as `name.bad` (the latest kept, for diagnostics), and the read gives
the previous copy (`name.old`) if that checks out, else the reader's default. Never an
exception. A file without the header is damaged too, but at the first start of this firmware
on a flash of the one before it (no `store.r1` yet): its records are taken as they are (JSON)
and written again with their header then. `damaged` lists (name, why) for the charge point to report (Security).

A log of records (the transaction queue's segments) is one file of such records one after
the other, each header and JSON on a line of its own: `append` adds one at the end (the
file's first block holds about 4 KB of them: LittleFS gives each file over 128 bytes a
block of its own), `scan` reads them back from an offset, skipping a damaged one, and
`rewrite` replaces the whole file as `write` does.

A write that fails (flash full: ENOSPC; any OSError) leaves the record as it was, removes
what it wrote and returns False; `errors` counts them and `failed` holds (name, error) of
the first one after a write that succeeded, for the charge point to report once. At start,
a `.tmp` is removed, unless it is the only copy of its record and checks out (a power cut
between the two renames of a write): then it becomes the record.
"""
import binascii
import json
import os

_MAGIC = b"#R1 "
_MARK = "store.r1"  # there once the records of the firmware before checksums were taken
_NOT_RECORDS = (_MARK, "bootguard", "locallist", "fw.part")  # files of the folder kept apart
_LEGACY_MAX = 12288  # a file larger than this is no record of ours
_DAMAGED_MAX = 8  # reports waiting; more are counted in `damaged_total` only
_SUFFIXES = (".tmp", ".old", ".bad")


class FileStore:
    """`read(name, default)`, `write(name, value) -> bool`, `remove(name)`, `names(prefix)`."""

    def __init__(self, folder):
        self.folder = folder
        self.damaged = []  # (name, why), oldest first, until reported
        self.damaged_total = 0
        self.errors = 0  # writes the flash refused
        self.failed = None  # (name, error text) of the first refusal since a good write
        self._ok = True  # the last write went through
        try:
            os.mkdir(folder)
        except OSError:
            pass  # already there
        names = os.listdir(folder)
        for name in names:
            if not name.endswith(".tmp"):
                continue
            base = name[:-4]
            tmp = self._path(name)
            if base not in names and _check(_load(tmp, True), None) is None:
                os.rename(tmp, self._path(base))
            else:
                _remove(tmp)
        # Records of the firmware before checksums are taken once, at the first start of this
        # one, and written again with theirs; from then on a record without is damaged.
        self._legacy = _MARK not in names
        if self._legacy:
            for name in self.names():
                if (name in _NOT_RECORDS or name.startswith("log")
                        or os.stat(self._path(name))[6] > _LEGACY_MAX):
                    continue  # (the event log, a firmware package: files of their own)
                got = _load(self._path(name), True)
                if got is not None and got[0] is None:
                    self.write(name, got[1])
            self._legacy = False
            self.write(_MARK, 1)

    def _path(self, name):
        return self.folder + "/" + name

    def read(self, name, default=None):
        path = self._path(name)
        got = _load(path, self._legacy)
        why = _check(got, default)
        if why is None:
            return got[1]
        if got is not None:  # there, but damaged: aside, and the copy before it
            self.report(name, why)
            try:
                os.rename(path, path + ".bad")
            except OSError:
                pass
        old = _load(path + ".old", self._legacy)  # (also a write cut between two renames)
        if old is not None and _check(old, default) is None:
            return old[1]
        return default

    def write(self, name, value):
        return self._replace(name, (value,), False)

    def _replace(self, name, values, log):
        path = self._path(name)
        try:
            with open(path + ".tmp", "wb") as f:
                for value in values:
                    f.write(_frame(value, log))
            try:
                os.rename(path, path + ".old")
            except OSError:
                pass  # its first copy
            os.rename(path + ".tmp", path)
        except OSError as e:
            _remove(path + ".tmp")
            return self._refused(name, e)
        if log:
            _remove(path + ".old")  # (a log's old copy would hold a block for nothing)
        self._ok = True
        return True

    def _refused(self, name, e):
        self.errors += 1
        if self._ok:
            self.failed = (name, "%s: %s" % (type(e).__name__, e))
        self._ok = False
        return False

    def append(self, name, value):
        """Add a record at the end of the log `name` (LittleFS commits it whole at close)."""
        try:
            with open(self._path(name), "ab") as f:
                f.write(_frame(value, True))
        except OSError as e:
            return self._refused(name, e)
        self._ok = True
        return True

    def rewrite(self, name, values):
        """Replace the log `name` by these records, atomically as write()."""
        return self._replace(name, values, True)

    def size(self, name):
        try:
            return os.stat(self._path(name))[6]
        except OSError:
            return 0

    def scan(self, name, offset=0, report=False):
        """The intact records of the log `name` from byte `offset`: (value, the offset after
        it) each. A damaged one (a write cut short, bits flipped) is skipped, and reported
        with report=True. A log cut between the two renames of a rewrite is read from its
        old copy."""
        path = self._path(name)
        try:
            f = open(path, "rb")
        except OSError:
            try:
                f = open(path + ".old", "rb")
            except OSError:
                return
        with f:
            f.seek(offset)
            pos = offset  # where `line` starts in the file
            line = f.readline()
            while line:
                cut = line.rfind(_MAGIC)
                if cut > 0:  # a record cut short, the header of the next one run on after it
                    if report:
                        self.report(name, "cut short")
                    pos += cut
                    line = line[cut:]
                body = f.readline()
                nxt = None
                why, value = _parse(line, body[:-1] if body.endswith(b"\n") else body)
                if why is None:
                    pos += len(line) + len(body)
                    yield value, pos
                else:
                    if report:
                        self.report(name, why)
                    cut = body.find(_MAGIC)  # a header where the body should be: read on
                    if cut >= 0:
                        pos += len(line) + cut
                        nxt = body[cut:]
                    else:
                        pos += len(line) + len(body)
                line = nxt if nxt is not None else f.readline()

    def discard(self, name, why):
        """A record that checked out but its reader cannot use (a record of an older firmware,
        say): set aside and reported as a damaged one."""
        path = self._path(name)
        self.report(name, why)
        try:
            os.rename(path, path + ".bad")
        except OSError:
            pass
        _remove(path + ".old")

    def remove(self, name):
        path = self._path(name)
        _remove(path)
        _remove(path + ".old")

    def names(self, prefix=""):
        return sorted(n for n in os.listdir(self.folder)
                      if n.startswith(prefix) and n[-4:] not in _SUFFIXES and n != _MARK)

    def report(self, name, why):
        """A damaged record (name, why) for the charge point to report (Security)."""
        self.damaged_total += 1
        if len(self.damaged) < _DAMAGED_MAX:
            self.damaged.append((name, why))


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _frame(value, log):
    body = json.dumps(value).encode()
    return b"%s%d %08x\n%s%s" % (_MAGIC, len(body), binascii.crc32(body) & 0xFFFFFFFF, body,
                                 b"\n" if log else b"")


def _load(path, legacy=False):
    """None (no such file), or (why it is damaged or None, value). `legacy`: a file without
    the header is a record of the firmware before checksums, else a damaged one."""
    try:
        with open(path, "rb") as f:
            head = f.readline()
            body = f.read()
    except OSError:
        return None
    if not head.startswith(_MAGIC) and legacy:
        return _json(head + body)  # before checksums
    return _parse(head, body)


def _parse(head, body):
    if not head.startswith(_MAGIC):
        return "no checksum", None
    try:
        size, crc = head[len(_MAGIC):].split()
        size = int(size)
        crc = int(crc, 16)
    except ValueError:
        return "bad header", None
    if len(body) != size:
        return "%d bytes of %d" % (len(body), size), None
    if binascii.crc32(body) & 0xFFFFFFFF != crc:
        return "checksum mismatch", None
    return _json(body)


def _json(body):
    try:
        return None, json.loads(body)
    except (ValueError, RuntimeError):  # not JSON (or not UTF-8); nested past the stack
        return "not JSON", None


def _check(got, default):
    """Why `got` (from _load) is no good as a record read with `default`, or None if it is."""
    if got is None:
        return "missing"
    why, value = got
    if why is not None:
        return why
    if isinstance(default, (dict, list)) and not isinstance(value, type(default)):
        return "a %s, not a %s" % (type(value).__name__, type(default).__name__)
    return None
