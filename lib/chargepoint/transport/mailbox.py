"""Where the asyncio side and a transport's network thread meet: the bounded mailboxes, and
the network thread itself (NetThread: what the MQTT and WebSocket transports share)."""
import _thread
import time

from micropython import const

from chargepoint.platform.clock import ticks_add, ticks_diff

_BRISK_MS = const(1)  # the thread's longest sleep while the engine is about to queue a frame
_BRISK_WINDOW_MS = const(100)  # ... that is, after an inbound frame

try:
    sleep_ms = time.sleep_ms
except AttributeError:  # CPython
    def sleep_ms(ms):
        time.sleep(ms / 1000)


class Mailbox:
    """Bounded FIFO shared by the asyncio side and the network thread: at most `limit` items
    and, when `max_bytes` is set, at most that many bytes of them (an empty mailbox takes one
    item of any size). With strict=False the bytes only make it `full()` (the sender asks
    before it commits to a frame: put() then never refuses one for its size)."""

    def __init__(self, limit, max_bytes=0, strict=True):
        if limit < 1:
            raise ValueError("mailbox size must be >= 1")
        self.limit = limit
        self.max_bytes = max_bytes if strict else 0
        self.soft_bytes = max_bytes
        self.bytes = 0
        self._items = []  # [(item, size)]
        self._lock = _thread.allocate_lock()

    def __len__(self):
        return len(self._items)

    def full(self):
        return len(self._items) >= self.limit or (
            self.soft_bytes and self.bytes >= self.soft_bytes)

    def put(self, item, size=0):
        with self._lock:
            n = len(self._items)
            if n >= self.limit or (n and self.max_bytes and self.bytes + size > self.max_bytes):
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


class NetThread:
    """The part of a transport both kinds share: the engine side (`can_send`, `receive`),
    the network thread's life (`start`, `stop`, `stopped`) and its body, which calls
    `step()` (-> ms to sleep) until stopped, then `close()`.

    Latency: the thread sleeps on the link's socket (TlsLink.wait: an inbound frame is read
    at once), at most the ms `step()` asked, or _BRISK_MS for _BRISK_WINDOW_MS after a frame
    came in (`arrived()`: the engine's answer or next CALL is about to be queued), and
    `arrived()` calls `wake()` (app.py's ThreadSafeFlag.set: the loop runs at once while a
    CALL of ours waits for its answer). A subclass sets outbox, inbox, status, connected,
    _ticks, _wake and _stack_size (None: the default stack), and gives `_socket()`: the
    link's socket to sleep on, None while it is not to be read."""

    def can_send(self):
        """Whether a frame sent now would be taken: the engine reads an inbound frame only
        then, so its answer is never refused."""
        return self.connected and not self.outbox.full()

    def receive(self):
        return self.inbox.get()

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
            while self._running:
                wait = self.step()
                if wait:
                    self._sleep(wait)
        finally:
            self.close()
            self.status["state"] = "stopped"
            self._thread_alive = False

    def _sleep(self, ms):
        sock = self._socket()
        if sock is None or self.inbox.full():  # not reading: a nap
            sleep_ms(ms)
            return
        if ticks_diff(self._brisk_until, self._ticks()) > 0:
            ms = min(ms, _BRISK_MS)
        sock.wait(ms)  # an inbound frame wakes it at once

    def arrived(self):
        """A frame is in the inbox (network thread)."""
        self._brisk_until = ticks_add(self._ticks(), _BRISK_WINDOW_MS)
        if self._wake is not None:
            self._wake()
