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
board), and `busy` / `error` tell the model how it went. Their code (reading, checking and
writing a package: chargepoint.platform.package) is imported for that work and dropped after.
"""
import os
import sys

RECORD = "fwupdate"


class UpdateError(ValueError):
    pass


def frozen():
    """Whether our code runs from the image (its modules are not files)."""
    try:
        os.stat(__file__)
        return False
    except OSError:
        return True


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
        self.digest = None  # SHA-256 of the whole package file downloaded last (its signature's)

    # -- download (in the thread) ---------------------------------------------------------

    def download(self, url):
        """Start fetching and checking the package; `busy` until done, then `error`."""
        self.busy = True
        self.error = None
        self.refused = None
        self.digest = None
        self.spawn(lambda: self._work("download", url))

    def _work(self, job, arg):
        # The package's module is imported for the work and dropped after it: an update is
        # rare, and its code would hold heap all the time (UpdateError and http's HttpError
        # are ValueErrors).
        try:
            from chargepoint.platform import package

            getattr(package, job)(self, arg)
        except (OSError, ValueError) as e:
            self.error = str(e) or type(e).__name__
        except MemoryError:
            self.error = "out of memory"
        finally:
            package = None
            sys.modules.pop("chargepoint.platform.package", None)
            parent = sys.modules.get("chargepoint.platform")
            if parent is not None and hasattr(parent, "package"):
                delattr(parent, "package")
        self.busy = False

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
        self.spawn(lambda: self._work("install", None))

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
