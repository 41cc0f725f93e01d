"""The bounded mailboxes where the asyncio side and the MQTT network thread meet."""
import _thread


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
