"""Where the asyncio side and a transport's network thread meet: the bounded mailboxes (the
outbox of frames to send, the inbox of frames in, one buffer), and the network thread itself
(NetThread: what the MQTT and WebSocket transports share)."""
import _thread
import time
from os import urandom

from micropython import const

from chargepoint.ocpp.framing import MAX_FRAME
from chargepoint.platform.clock import ticks_add, ticks_diff

try:
    from uctypes import addressof, bytearray_at
except ImportError:  # CPython: a frame is handed over as a copy
    bytearray_at = None

_HDR = const(6)  # an inbox record's header: length (2 bytes), flags, frame size (3 bytes)
_STALE = const(1)
_HEAD = const(2)  # only the head of a frame over MAX_FRAME: the header holds its size
_BRISK_MS = const(1)  # the thread's longest sleep while the engine is about to queue a frame
_BRISK_WINDOW_MS = const(100)  # ... that is, after an inbound frame
_BELL_TRIES = const(8)

try:
    sleep_ms = time.sleep_ms
except AttributeError:  # CPython
    def sleep_ms(ms):
        time.sleep(ms / 1000)


class Mailbox:
    """The outbox: a bounded FIFO shared by the asyncio side and the network thread, at most
    `limit` items; past `max_bytes` of them it counts as `full()` (the sender asks before it
    commits to a frame: put() then never refuses one for its size)."""

    def __init__(self, limit, max_bytes=0):
        if limit < 1:
            raise ValueError("mailbox size must be >= 1")
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items = []  # [(item, size)]
        self._lock = _thread.allocate_lock()

    def __len__(self):
        return len(self._items)

    def full(self):
        return len(self._items) >= self.limit or (
            self.max_bytes and self.bytes >= self.max_bytes)

    def put(self, item, size=0):
        with self._lock:
            if len(self._items) >= self.limit:
                return False
            self._items.append((item, size))
            self.bytes += size
            return True

    def peek(self):
        with self._lock:
            return self._items[0][0] if self._items else None

    def get(self):
        with self._lock:
            if not self._items:
                return None
            item, size = self._items.pop(0)
            self.bytes -= size
            return item


class Inbox:
    """The inbound frames, in one buffer allocated once (`size` bytes of frames, at most
    `limit` of them, and their headers), so that a frame never needs a fresh block of its
    size: in a fragmented heap a 4 KB frame found none (the allocation this replaces).

    The network thread writes, the asyncio side reads, one each (a ring whose records are
    never split: one that does not fit before the end starts again at 0). The thread asks
    for room with `reserve(n)` (a memoryview it reads the frame straight into, None when
    there is none) and hands the frame in with `put(data, stale, size)`: the reserved view
    itself, or bytes that are copied in. `get()` gives the oldest frame as a bytearray over
    the buffer (no copy; bytes under CPython), valid until `free()` (the engine is through
    with it) or the next `get()`, which frees it first. Only the lock's holder moves the
    indexes; the bytes of a reserved record and of the frame being read are each one side's
    alone.
    `need`: bytes a read must find room for besides (a WebSocket message's size is known
    only once read: MAX_FRAME); `full()` then also says when there is not."""

    def __init__(self, limit, size, need=0):
        if limit < 1:
            raise ValueError("mailbox size must be >= 1")
        self.limit = limit
        self.max_bytes = size
        self.need = need
        self.bytes = 0  # of the frames waiting in it (not the one being read)
        self._n = 0  # frames in it, the one being read included
        self._buf = bytearray(max(size, MAX_FRAME) + _HDR * limit)  # any frame when empty
        self._mv = memoryview(self._buf)
        self._head = 0  # the oldest record
        self._tail = 0  # where the next one goes
        self._end = -1  # where the records before a restart at 0 end (-1: none)
        self._out = False  # the oldest record is the frame being read (until free())
        self._lock = _thread.allocate_lock()

    def __len__(self):
        return self._n - self._out

    def full(self):
        if len(self) >= self.limit or self.bytes >= self.max_bytes:
            return True
        if not self.need:
            return False
        with self._lock:  # as reserve(need) finds it
            return not self._fits(self.need) or self._room(self.need) < 0

    def _room(self, n):
        # where a record of n bytes would start, -1 when there is no room for it
        if not self._n:
            self._head = self._tail = 0
            self._end = -1
        n += _HDR
        tail = self._tail
        if self._end >= 0:  # restarted at 0: the room is up to the oldest record
            return tail if tail + n <= self._head else -1
        if tail + n <= len(self._buf):
            return tail
        return 0 if n <= self._head else -1

    def reserve(self, n):
        """(network thread) A memoryview of `n` bytes for a frame to be read into, or None
        when it would not be taken."""
        with self._lock:
            at = self._room(n) if self._fits(n) else -1
            return None if at < 0 else self._mv[at + _HDR:at + _HDR + n]

    def _fits(self, n):
        k = len(self)
        return k < self.limit and (not k or self.bytes + n <= self.max_bytes)

    def put(self, data, stale=False, size=0):
        """(network thread) Take a frame: False when there is no room for it. `size`: the
        frame's length when `data` is only its head (over MAX_FRAME)."""
        n = len(data)
        with self._lock:
            if not self._fits(n):
                return False
            at = self._room(n)
            if at < 0:
                return False
            mv = self._mv
            body = mv[at + _HDR:at + _HDR + n]
            # The reserved view is copied onto itself, or where the room is now (the frame
            # being read was freed meanwhile: the buffer started again at 0): a memmove.
            body[:] = data
            mv[at] = n >> 8
            mv[at + 1] = n & 0xFF
            mv[at + 2] = (_STALE if stale else 0) | (_HEAD if size else 0)
            size = min(size, 0xFFFFFF)
            mv[at + 3] = size >> 16
            mv[at + 4] = (size >> 8) & 0xFF
            mv[at + 5] = size & 0xFF
            if at != self._tail:  # restarted at 0
                self._end = self._tail
            self._tail = at + _HDR + n
            self._n += 1
            self.bytes += n
            return True

    def free(self):
        """(asyncio side) The frame given last is read: its room is free."""
        with self._lock:
            self._free()

    def _free(self):
        if self._out:
            self._out = False
            at = self._head
            mv = self._mv
            self._head = at + _HDR + (mv[at] << 8 | mv[at + 1])
            self._n -= 1

    def get(self):
        """(asyncio side) Free the frame given last; then None, or the oldest as (frame,
        stale), or (head text, stale, size) for one over MAX_FRAME."""
        with self._lock:
            mv = self._mv
            self._free()
            if not self._n:
                return None
            if self._head == self._end:
                self._head = 0
                self._end = -1
            at = self._head
            self._out = True
            n = mv[at] << 8 | mv[at + 1]
            self.bytes -= n
        flags = mv[at + 2]
        body = mv[at + _HDR:at + _HDR + n]
        stale = bool(flags & _STALE)
        if flags & _HEAD:
            return str(body, "utf-8"), stale, mv[at + 3] << 16 | mv[at + 4] << 8 | mv[at + 5]
        if bytearray_at is None:
            return bytes(body), stale
        return bytearray_at(addressof(body), n), stale


class Doorbell:
    """Wakes a waiter on another thread: `ring()` sends a datagram to `sock`, a UDP socket
    of its own on the loopback interface (lwIP's on an ESP32), which the waiter polls beside
    what else it waits for (select.poll, asyncio's IO queue) and then `quiet()`s. A file
    descriptor, not a ThreadSafeFlag: on the unix port a poll with anything but descriptors
    in it wakes every millisecond. Made by `doorbell()`."""

    def __init__(self, sock, to, tx):
        self.sock = sock
        self._to = to
        self._tx = tx
        self._buf = bytearray(1)

    def ring(self):
        try:
            self._tx.sendto(b"!", self._to)
        except OSError:  # no buffer for it just now (lwIP queues 8): the waiter is woken
            pass

    def quiet(self):
        while self.sock.readinto(self._buf):  # None once empty (non-blocking)
            pass

    def close(self):
        self.sock.close()
        self._tx.close()


def doorbell(say=print, who="network thread"):
    """A Doorbell, or None (said once) where there is no loopback interface."""
    import socket

    rx = tx = None
    try:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(_BELL_TRIES):  # no getsockname() on MicroPython: a port at random
            r = urandom(2)
            to = socket.getaddrinfo("127.0.0.1", 49152 + ((r[0] << 8 | r[1]) & 0x3FFF))[0][-1]
            try:
                rx.bind(to)
                break
            except OSError:  # taken
                to = None
        if to is None:
            raise OSError("no port for it")
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setblocking(False)
    except OSError as e:
        say("%s: no wake-up socket (%s): it waits out its sleeps" % (who, e))
        for sock in (rx, tx):
            if sock is not None:
                sock.close()
        return None
    return Doorbell(rx, to, tx)


class NetThread:
    """The part of a transport both kinds share: the engine side (`can_send`, `receive`),
    the network thread's life (`start`, `stop`, `stopped`) and its body, which calls
    `step()` (-> ms to sleep) until stopped, then `close()`.

    Latency: the thread sleeps on the link's socket (TlsLink.wait: an inbound frame is read
    at once), at most the ms `step()` asked, or _BRISK_MS for _BRISK_WINDOW_MS after a frame
    came in (`arrived()`: the engine's answer or next CALL is about to be queued), and
    `arrived()` calls `wake()` (app.py's Doorbell.ring: the loop runs at once); a nap while
    the inbox is full is as short then. A frame the engine queues (`put()`) rings the
    thread's own Doorbell, which it sleeps on beside the socket, so an unprompted CALL (an
    Authorize after a card tap) leaves at once instead of after the rest of the sleep
    (without one, within the sleep). A subclass sets outbox,
    inbox, status, connected, _ticks, _wake and _stack_size (None: the default stack), and
    gives `_socket()`: the link's socket to sleep on, None while it is not to be read."""
    _bell = None  # the thread's Doorbell while it runs

    def can_send(self):
        """Whether a frame sent now would be taken: the engine reads an inbound frame only
        then, so its answer is never refused."""
        return self.connected and not self.outbox.full()

    def receive(self):
        return self.inbox.get()

    def done(self):
        """The engine is through with the frame receive() gave last: its room is free for
        the next (also while the outbox is full and no receive() comes)."""
        self.inbox.free()

    def put(self, frame):
        """Queue `frame` (bytes) for the thread and wake it: False when the outbox refuses."""
        if not self.outbox.put(frame, len(frame)):
            return False
        bell = self._bell
        if bell is not None:
            bell.ring()
        return True

    def start(self):
        if self._running or self._thread_alive:
            self._running = True
            return
        self._running = True
        self._thread_alive = True
        old = None
        if self._stack_size:
            old = _thread.stack_size(self._stack_size)
        try:
            _thread.start_new_thread(self._run, ())
        finally:
            if old is not None:
                _thread.stack_size(old)

    def stop(self):
        """Ask the thread to disconnect and end; returns at once (see `stopped`)."""
        self._running = False

    @property
    def stopped(self):
        return not self._thread_alive

    def _run(self):
        try:
            self._bell = doorbell(self._say)
            while self._running:
                wait = self.step()
                if wait:
                    self._sleep(wait)
        finally:
            try:
                self.close()
            finally:
                bell, self._bell = self._bell, None
                if bell is not None:
                    bell.close()
                self.status["state"] = "stopped"
                self._thread_alive = False

    def _sleep(self, ms):
        if ticks_diff(self._brisk_until, self._ticks()) > 0:
            ms = min(ms, _BRISK_MS)
        sock = self._socket()
        if sock is None or self.inbox.full():  # not reading: a nap (the engine takes it)
            sleep_ms(ms)
            return
        bell = self._bell
        if bell is None:
            sock.wait(ms)  # an inbound frame wakes it at once
            return
        sock.wait(ms, bell.sock)  # ... and so does a frame queued
        bell.quiet()

    def arrived(self):
        """A frame is in the inbox (network thread)."""
        self._brisk_until = ticks_add(self._ticks(), _BRISK_WINDOW_MS)
        if self._wake is not None:
            self._wake()
