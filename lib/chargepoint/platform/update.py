"""Firmware updates on the device: the package, where it goes on each code placement, and the
trial of the new firmware until it reaches the Central System.

A package (tools/fwpack.py) is one JSON line, then the payload:
    {"format": 1, "kind": "mpy"|"image", "target": "esp32"|"twin", "version": "1.2.3",
     "size": N, "sha256": "<64 hex>"}\\n<N bytes>
- kind "image" (our image, firmware frozen in): a whole application image. It is streamed
  into the other OTA partition while it downloads (esp32.Partition), made the boot partition
  once its SHA-256 matches, and confirmed (mark_app_valid_cancel_rollback) only when the new
  firmware has been accepted by the Central System: a reset before that makes the bootloader
  go back to the old image (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE).
- kind "mpy" (a stock MicroPython image, our code in /lib): our .mpy files, entries
  "<path below lib/> <size>\\n<bytes>". Downloaded to data/fw.part, checked, unpacked into
  lib.new/; boot.py swaps it in (lib -> lib.old, lib.new -> lib) before anything of ours is
  imported, and swaps back after three boots that did not reach the Central System.
The package must be of the kind and target this board runs, else it is refused unapplied: a
package of another kind or target is still downloaded to its end and its SHA-256 checked, but
its payload is written nowhere (not into the OTA partition, not into data/fw.part, and the
room it would take is not asked for); the download succeeds, `refused` says what the package
is, and `install()` fails at once with that as its `error`. So the Central System learns that
a sound package was not for this board (Downloaded, then InstallationFailed), apart from a
download that failed (DownloadFailed: HTTP errors, a SHA-256 mismatch, a package cut short,
not a package at all, too big for the room there is).
The record "fwupdate" (the store's data/fwupdate, which boot.py reads) follows an update:
{"kind", "version", "state": "ready" (mpy unpacked) | "trying" (new firmware on trial) |
"failed" (rolled back)}.

Downloads and unpacking block: they run in a thread (`spawn`, _thread.start_new_thread on a
board), and `busy` / `error` tell the model how it went.
"""
import json
import os
import sys

from micropython import const

RECORD = "fwupdate"
_HEADER_MAX = const(512)
_BLOCK = const(4096)  # the flash's erase block: what Partition.writeblocks takes
_COPY = const(512)  # bytes moved at a time while unpacking


class UpdateError(ValueError):
    pass


def frozen():
    """Whether our code runs from the image (its modules are not files)."""
    try:
        os.stat(__file__)
        return False
    except OSError:
        return True


class _Sink:
    """What http.download writes into: the header line first, then the payload, hashed and
    passed to `out(chunk)`; the payload of a package not for this board is only hashed, and
    `wrong` says what it is."""

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

    def write(self, chunk):
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


class _FileWriter:
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


class _PartitionWriter:
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


def rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        sub = path + "/" + entry[0]
        if entry[1] == 0x4000:  # a folder
            rmtree(sub)
        else:
            os.remove(sub)
    os.rmdir(path)


class Updater:
    """`version`: the firmware's own. `spawn(f)`: runs f() in a thread."""

    def __init__(self, store, version, spawn=None):
        self.store = store
        self.version = version
        self.kind = "image" if frozen() else "mpy"
        self.target = "esp32" if sys.platform == "esp32" else "twin"
        self.spawn = spawn or _thread_spawn
        self.busy = False
        self.error = None  # what went wrong with the last download or install
        self.refused = None  # why the package downloaded last is not for this board, or None
        self.new_version = None

    # -- download (in the thread) ---------------------------------------------------------

    def download(self, url):
        """Start fetching and checking the package; `busy` until done, then `error`."""
        self.busy = True
        self.error = None
        self.refused = None
        self.spawn(lambda: self._work(self._download, url))

    def _work(self, job, arg):
        # (UpdateError and http's HttpError are ValueErrors)
        try:
            job(arg)
        except (OSError, ValueError) as e:
            self.error = str(e) or type(e).__name__
        except MemoryError:
            self.error = "out of memory"
        self.busy = False

    def _download(self, url):
        from chargepoint.platform import http  # the first download brings it into the heap

        if self.kind == "image":
            import esp32

            part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
            sink = _Sink("image", self.target, part.info()[3])
            sink.out = _PartitionWriter(part)
            http.download(url, sink)
            self.new_version = sink.verify()["version"]
            self._part = part
            self.refused = sink.wrong
            return
        path = self.store.folder + "/fw.part"
        _remove(path)  # an earlier package's: this one replaces it
        sink = _Sink("mpy", self.target, 1 << 20)
        sink.out = _FileWriter(path)
        try:
            http.download(url, sink)
        finally:
            sink.out.close()
        self.new_version = sink.verify()["version"]
        self.refused = sink.wrong

    # -- install --------------------------------------------------------------------------

    def install(self):
        """Make the downloaded firmware the one the next boot runs (in the thread: unpacking
        writes the flash); then the caller reboots. A package not for this board (`refused`)
        fails at once, `error` its reason: nothing of it was written, nothing is touched."""
        if self.refused is not None:
            self.error = self.refused
            return
        self.busy = True
        self.error = None
        self.spawn(lambda: self._work(self._install, None))

    def _install(self, _):
        if self.kind == "image":
            self._part.set_boot()
            self.store.write(RECORD, {"kind": "image", "version": self.new_version,
                                      "state": "trying"})
            return
        rmtree("lib.new")
        rmtree("lib.old")
        path = self.store.folder + "/fw.part"
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
        self.store.write(RECORD, {"kind": "mpy", "version": self.new_version,
                                  "state": "ready"})

    # -- after the boot -------------------------------------------------------------------

    def outcome(self):
        """At start: "trying" (this firmware is an update on trial), "failed" (an update was
        rolled back), or None."""
        rec = self.store.read(RECORD)
        if rec is None:
            return None
        if rec["state"] == "trying" and rec["kind"] == "image" and rec["version"] != self.version:
            return "failed"  # the bootloader went back to the old image
        return rec["state"] if rec["state"] in ("trying", "failed") else None

    def commit(self):
        """The firmware on trial reached the Central System: keep it."""
        rec = self.store.read(RECORD) or {}
        if rec.get("kind") == "image":
            import esp32

            esp32.Partition.mark_app_valid_cancel_rollback()
        else:
            rmtree("lib.old")
        self.store.remove(RECORD)

    def forget(self):
        """A rolled-back update has been reported."""
        rmtree("lib.bad")
        self.store.remove(RECORD)


def _thread_spawn(f):
    import _thread

    _thread.start_new_thread(f, ())
