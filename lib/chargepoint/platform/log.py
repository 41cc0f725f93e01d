"""The firmware's event log on flash: bounded, rotating, one stamped line per event.

    log = Log("data", clock)               # data/log.txt, rotated to data/log.1.txt
    log.write("ocpp", "> [2,\"5.3\",\"StartTransaction\",...]")
    log.say("mqtt: link down: ...")       # printed on the console, and a "console" line

A line is "<stamp> <category> <text>\\n", the stamp the injected clock's (`clock.stamp()`: ISO
8601 UTC once the wall time is known, "@<boot>:<ms>" before). Text is one line, cut at
`_LINE` characters.

Bounds: the current file is rotated before a flush would take it past `max_bytes` (16 KB):
log.txt becomes log.1.txt (log.1 becomes log.2 ... up to `files` files in all, the oldest
dropped), so the log never holds more than files x max_bytes on flash; rotation is a remove
and renames, each atomic, never a half-written file. The file is never read back into the
heap. Lines gather in a buffer of `_BUF` bytes allocated once, which is appended to the file
(open, write, close: closing commits it on LittleFS) when the next line would not fit (in
the buffer, or in `max_bytes` when that is less), when `poll()` finds its first line
`_FLUSH_MS` old, before a snapshot, and on `flush()` (the firmware calls it before it resets
or stops). So a power cut loses at most those seconds of lines, while a burst of lines costs
the heap no file object per line (a burst of OCPP frames fragmented it badly enough that a
3 KB frame found no room) and the flash far fewer writes (LittleFS rewrites a file's last
block on every append). At most `_BURST` lines are taken in a burst, then one per
`_REFILL_MS`: a flood (a link flapping, a Central System polling) cannot keep the flash busy;
the lines held back are counted in the next line taken.
Thread-safe: the MQTT network thread writes through hooked prints, and `snapshot()` (for a
diagnostics upload) runs in a network thread; one lock guards the buffer and the files. A
failing flash (full, worn) counts in `errors` and never raises into the firmware; a refused
write makes the log smaller (each file's bound halved, down to 2 KB, the oldest file
removed) and is tried once more.
"""
import _thread
import os

from micropython import const

MAX_BYTES = const(16384)
FILES = const(2)
_LINE = const(240)  # longest text of a line, in characters
_STEP = const(512)  # bytes a snapshot copies per hold of the lock
_BURST = const(30)  # lines written back to back before the rate limit applies
_REFILL_MS = const(20000)  # then one line per this long: at most 180 lines an hour
_SNAPSHOT = "diagnostics.tmp"
_BAD_MAX = const(2048)  # bytes of each damaged record a GetDiagnostics carries
_BUF = const(1024)  # lines waiting for the flash
_MIN_BYTES = const(2048)  # a file's bound, shrunk by a full flash, never goes below this
_FLUSH_MS = const(10000)  # the oldest of them waits at most this long (poll())


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Log:
    def __init__(self, folder="data", clock=None, max_bytes=MAX_BYTES, files=FILES, name="log"):
        self.folder = folder
        self.clock = clock
        self.max_bytes = max_bytes
        self.files = max(1, files)
        self.name = name
        self.errors = 0  # writes the flash refused
        self.dropped = 0  # lines held back by the rate limit, not yet reported
        self.written = 0  # bytes appended since boot (flash wear accounting)
        self._lock = _thread.allocate_lock()
        self._held = 0  # snapshots in progress: no rotation meanwhile
        self._tokens = _BURST
        self._refilled = None
        self._buf = bytearray(_BUF)
        self._fill = 0
        self._first = None  # ticks of the oldest line in the buffer
        try:
            os.mkdir(folder)
        except OSError:
            pass  # already there
        self._remove(folder + "/" + _SNAPSHOT)  # an upload cut short by a reset
        try:
            self.size = os.stat(self.path(0))[6]
        except OSError:
            self.size = 0

    def path(self, n):
        """log.txt (n = 0), log.1.txt, log.2.txt ..."""
        if n:
            return "%s/%s.%d.txt" % (self.folder, self.name, n)
        return "%s/%s.txt" % (self.folder, self.name)

    def paths(self):
        """The log files there are, oldest first."""
        return [p for p in (self.path(n) for n in range(self.files - 1, -1, -1)) if _exists(p)]

    # -- writing ----------------------------------------------------------------------------

    def write(self, category, text):
        clock = self.clock
        stamp = clock.stamp() if clock is not None else "-"
        text = str(text)
        if len(text) > _LINE:  # first: no copy of a long text is made
            text = text[:_LINE] + "..."
        if "\n" in text or "\r" in text:
            text = text.replace("\r", " ").replace("\n", " ")
        with self._lock:
            if not self._allow():
                self.dropped += 1
                return False
            if self.dropped:
                text = "%s (%d lines not logged before)" % (text, self.dropped)
                self.dropped = 0
            data = ("%s %s %s\n" % (stamp, category, text)).encode()[:_BUF]
            n = len(data)
            if self._fill + n > _BUF or self._fill + n > self.max_bytes:
                self._flush()  # (more than max_bytes at once: a file past its bound)
            self._buf[self._fill:self._fill + n] = data
            self._fill += n
            if self._first is None and clock is not None:
                self._first = clock.ticks_ms()
            return True

    def poll(self):
        """Call now and then (the firmware's loop): writes lines that have waited long."""
        first = self._first
        if first is not None and self.clock.since(first) >= _FLUSH_MS:
            self.flush()

    def flush(self):
        """The buffered lines to the flash now (before a reset, at a stop)."""
        with self._lock:
            self._flush()

    def _flush(self):
        fill = self._fill
        if not fill:
            return
        self._fill = 0
        self._first = None
        for retry in (False, True):
            try:
                if self.size and self.size + fill > self.max_bytes and not self._held:
                    self._rotate()
                with open(self.path(0), "ab") as f:
                    f.write(memoryview(self._buf)[:fill])  # closing commits it
            except OSError:
                self.errors += 1
                if retry or not self._shrink():
                    return  # these lines are lost; the firmware goes on
                continue
            self.size += fill
            self.written += fill
            return

    def _shrink(self):
        """The flash refused a write (full): from now on the log keeps half the bytes per
        file, down to _MIN_BYTES, and its oldest file goes now. False when at the floor."""
        if self.max_bytes <= _MIN_BYTES:
            return False
        self.max_bytes = max(_MIN_BYTES, self.max_bytes // 2)
        for n in range(self.files - 1, 0, -1):
            if _exists(self.path(n)):
                self._remove(self.path(n))
                break
        return True

    def _allow(self):
        clock = self.clock
        if clock is None:
            return True
        now = clock.ticks_ms()
        if self._refilled is None:
            self._refilled = now
        gained = clock.since(self._refilled) // _REFILL_MS
        if gained > 0:
            self._tokens = min(_BURST, self._tokens + gained)
            self._refilled = now
        if self._tokens <= 0:
            return False
        self._tokens -= 1
        return True

    def _rotate(self):
        last = self.files - 1
        if last < 1:
            self._remove(self.path(0))
        else:
            self._remove(self.path(last))
            for n in range(last, 0, -1):  # log.(n-1) -> log.n, log.txt -> log.1.txt last
                if _exists(self.path(n - 1)):
                    os.rename(self.path(n - 1), self.path(n))
        self.size = 0

    @staticmethod
    def _remove(path):
        try:
            os.remove(path)
        except OSError:
            pass

    # -- the console ------------------------------------------------------------------------

    def say(self, text):
        """A line for the console: printed as before, and a "console" line of the log. The
        composition root hands it to the modules that have something to say (transport,
        NTP) in place of print."""
        print(text)
        self.write("console", text)

    # -- reading, for a diagnostics upload (network thread) ---------------------------------

    def snapshot(self, since=None, until=None, category=None):
        """Copy the log files, oldest first, into one file `<folder>/diagnostics.tmp`: lines
        stamped before `since` or after `until` (ISO strings as `clock.stamp()` makes them,
        or None) are left out; lines without a wall time ("@boot:ms") are kept; with a
        `category`, only the lines of that category. Returns (path, size). Blocking (tens
        of KB of flash I/O): for a network thread. The lock is held for one step of `_STEP`
        bytes at a time, so writers wait milliseconds at most; rotation waits until the copy
        is done. Without a category (the whole log: GetDiagnostics), the records the store
        set aside as damaged (`*.bad` in the same folder) follow, each in hex, up to
        _BAD_MAX bytes of it."""
        since = since.encode() if since else None
        until = until.encode() if until else None
        category = (" %s " % category).encode() if category else None
        out_path = self.folder + "/" + _SNAPSHOT
        size = 0
        with self._lock:
            self._flush()
            self._held += 1
        try:
            with open(out_path, "wb") as out:
                for path in self.paths():
                    pos = 0
                    while True:
                        lines, pos = self._read_step(path, pos)
                        if not lines:
                            break
                        for line in lines:
                            if category and not line.startswith(category, line.find(b" ")):
                                continue
                            stamp = line[:20]
                            if b"0" <= stamp[:1] <= b"9" and (since and stamp < since
                                                               or until and stamp > until):
                                continue
                            out.write(line)
                            size += len(line)
                if category is None:
                    size += self._attach_bad(out)
        finally:
            with self._lock:
                self._held -= 1
        return out_path, size

    def _attach_bad(self, out):
        import binascii

        size = 0
        for name in sorted(os.listdir(self.folder)):
            if not name.endswith(".bad"):
                continue
            path = self.folder + "/" + name
            with open(path, "rb") as f:
                data = f.read(_BAD_MAX)
                more = f.read(1)
            head = ("--- %s, set aside as damaged (hex%s) ---\n"
                    % (name, ", its first %d bytes" % _BAD_MAX if more else "")).encode()
            out.write(head)
            size += len(head)
            for i in range(0, len(data), 48):
                line = binascii.hexlify(data[i:i + 48]) + b"\n"
                out.write(line)
                size += len(line)
        return size

    def _read_step(self, path, pos):
        lines = []
        with self._lock:
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    n = 0
                    while n < _STEP:
                        line = f.readline()
                        if not line:
                            break
                        lines.append(line)
                        n += len(line)
                    pos = f.tell()
            except OSError:
                pass  # gone: nothing more from this file
        return lines, pos

    def discard(self, path):
        """Remove a snapshot once it has been sent."""
        self._remove(path)
