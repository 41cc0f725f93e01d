"""Reading, checking and writing a firmware package (chargepoint.platform.update has the
format): imported by the updater's thread for a download or an install and dropped after."""
import json
import os

from micropython import const

from chargepoint.platform.update import RECORD, UpdateError, rmtree

_HEADER_MAX = const(512)
_BLOCK = const(4096)  # the flash's erase block: what Partition.writeblocks takes
_COPY = const(512)  # bytes moved at a time while unpacking


def download(up, url):
    """Fetch and check the package for the Updater `up` (chargepoint.platform.update): into
    the other OTA partition (an image) or data/fw.part (.mpy files)."""
    from chargepoint.platform import http  # the first download brings it into the heap

    if up.kind == "image":
        import esp32

        part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
        sink = Sink("image", up.target, part.info()[3])
        sink.out = PartitionWriter(part)
        http.download(url, sink)
        up.new_version = sink.verify()["version"]
        up.digest = sink.whole.digest()
        up.part = part
        up.refused = sink.wrong
        return
    path = up.store.folder + "/fw.part"
    _remove(path)  # an earlier package's: this one replaces it
    sink = Sink("mpy", up.target, 1 << 20)
    sink.out = FileWriter(path)
    try:
        http.download(url, sink)
    finally:
        sink.out.close()
    up.new_version = sink.verify()["version"]
    up.digest = sink.whole.digest()
    up.refused = sink.wrong


def install(up, _):
    """Make the package `up` downloaded the firmware of the next boot."""
    if up.kind == "image":
        up.part.set_boot()
        up.store.write(RECORD, {"kind": "image", "version": up.new_version, "state": "trying"})
        return
    rmtree("lib.new")
    rmtree("lib.old")
    path = up.store.folder + "/fw.part"
    view = memoryview(bytearray(_COPY))
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                break
            name, _, size = line.decode().rstrip("\n").rpartition(" ")
            if not name or name.startswith("/") or ".." in name.split("/"):
                raise UpdateError("bad path in package: %s" % name)
            dest = "lib.new/" + name
            _makedirs(dest)
            left = int(size)
            with open(dest, "wb") as out:
                while left:
                    k = f.readinto(view[:min(left, _COPY)])
                    if not k:
                        raise UpdateError("package cut short")
                    out.write(view[:k])
                    left -= k
    os.remove(path)
    up.store.write(RECORD, {"kind": "mpy", "version": up.new_version, "state": "ready"})


class Sink:
    """What http.download writes into: the header line first, then the payload, hashed and
    passed to `out(chunk)`; the payload of a package not for this board is only hashed, and
    `wrong` says what it is. `whole` hashes every byte of the file: what a signed update's
    signature is over."""

    def __init__(self, kind, target, room):
        self.kind = kind
        self.target = target
        self.room = room  # bytes the payload may have
        self.head = b""
        self.header = None
        self.size = 0
        self.out = None
        self.wrong = None  # "a <kind> package for <target>: this board takes ...", or None
        import hashlib

        self.hash = hashlib.sha256()
        self.whole = hashlib.sha256()

    def write(self, chunk):
        self.whole.update(chunk)
        if self.header is None:
            self.head += bytes(chunk)
            end = self.head.find(b"\n")
            if end < 0:
                if len(self.head) > _HEADER_MAX:
                    raise UpdateError("not a firmware package")
                return
            self._check(self.head[:end])
            chunk = memoryview(self.head)[end + 1:]
        if len(chunk):
            self.size += len(chunk)
            if self.size > self.header["size"]:
                raise UpdateError("longer than its header says")
            self.hash.update(chunk)
            if self.wrong is None:
                self.out(chunk)

    def _check(self, line):
        try:
            h = json.loads(line)
            ok = (h["format"] == 1 and isinstance(h["size"], int) and len(h["sha256"]) == 64
                  and isinstance(h["kind"], str) and isinstance(h["target"], str)
                  and isinstance(h["version"], str))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UpdateError("not a firmware package")
        if h["kind"] != self.kind or h["target"] != self.target:
            # checked to its end all the same (never written, so its size does not matter):
            # a sound package for another board is not a failed download
            self.wrong = "a %s package for %s: this board takes %s for %s" % (
                h["kind"], h["target"], self.kind, self.target)
        elif h["size"] > self.room:
            raise UpdateError("%d bytes do not fit in %d" % (h["size"], self.room))
        self.header = h

    def verify(self):
        if self.header is None or self.size != self.header["size"]:
            raise UpdateError("incomplete package")
        from chargepoint.platform.http import hexdigest

        if hexdigest(self.hash) != self.header["sha256"]:
            raise UpdateError("SHA-256 mismatch")
        return self.header


class FileWriter:
    """Payload bytes into a file, created at the first of them: a package whose payload is
    not written leaves no file."""

    def __init__(self, path):
        self.path = path
        self.f = None

    def __call__(self, chunk):
        if self.f is None:
            self.f = open(self.path, "wb")
        self.f.write(chunk)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


class PartitionWriter:
    """Payload bytes straight into a partition, each erase block erased as it is reached: no
    buffer of a block's size (after hours of running the heap may have no 4 KB in one
    piece)."""

    def __init__(self, part):
        self.part = part
        self.at = 0  # bytes written

    def __call__(self, chunk):
        i = 0
        n = len(chunk)
        while i < n:
            block, offset = divmod(self.at, _BLOCK)
            if not offset:
                self.part.ioctl(6, block)  # MP_BLOCKDEV_IOCTL_BLOCK_ERASE
            k = min(n - i, _BLOCK - offset)
            self.part.writeblocks(block, chunk[i:i + k], offset)
            self.at += k
            i += k


def _makedirs(path):
    at = ""
    for part in path.split("/")[:-1]:
        at = at + "/" + part if at else part
        try:
            os.mkdir(at)
        except OSError:
            pass  # there already


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # not there
