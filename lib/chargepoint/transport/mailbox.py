"""Where the asyncio side and a transport's network thread meet: the bounded mailboxes, and
the network thread itself (NetThread: what the MQTT and WebSocket transports share)."""
import _thread
import time
from os import urandom

from micropython import const

from chargepoint.platform.clock import ticks_add, ticks_diff

_BRISK_MS = const(1)  # the thread's longest sleep while the engine is about to queue a frame
_BRISK_WINDOW_MS = const(100)  # ... that is, after an inbound frame
_BELL_TRIES = const(8)

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
    `arrived()` calls `wake()` (app.py's Doorbell.ring: the loop runs at once). A frame the
    engine queues (`put()`) rings the thread's own Doorbell, which it sleeps on beside the
    socket, so an unprompted CALL (an Authorize after a card tap) leaves at once instead of
    after the rest of the sleep (without one, within the sleep). A subclass sets outbox,
    inbox, status, connected, _ticks, _wake and _stack_size (None: the default stack), and
    gives `_socket()`: the link's socket to sleep on, None while it is not to be read."""
    _bell = None  # the thread's Doorbell while it runs

    def can_send(self):
        """Whether a frame sent now would be taken: the engine reads an inbound frame only
        then, so its answer is never refused."""
        return self.connected and not self.outbox.full()

    def receive(self):
        return self.inbox.get()

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
        sock = self._socket()
        if sock is None or self.inbox.full():  # not reading: a nap
            sleep_ms(ms)
            return
        if ticks_diff(self._brisk_until, self._ticks()) > 0:
            ms = min(ms, _BRISK_MS)
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
