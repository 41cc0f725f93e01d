"""Public-key arithmetic for the device: SHA-256 signatures checked (RSA PKCS#1 v1.5 and PSS,
ECDSA P-256), P-256 keys made and used to sign, a PKCS#10 request written. Pure Python over
the interpreter's big integers; imported only when a signed update or a certificate request is
handled, and dropped after.

Long work comes in slices. Every operation that takes more than a few big-integer products is
a generator: each `next()` does a bounded amount of work (about a millisecond of estimated
ESP32 time, see README "Public-key arithmetic") and the generator's return value is the
result. Drive one with run() (all at once: tests, tools, a network thread, where the
interpreter switches threads between bytecodes, so the loop keeps running), with finish()
(an asyncio task, yielding to the loop between slices) or with Work (a slice per loop tick).
"""


def _driven(steps, box):
    box.append((yield from steps))


def run(steps):
    """The result of a generator of slices, driven to its end."""
    box = []
    for _ in _driven(steps, box):
        pass
    return box[0]


async def finish(steps):
    """run() in an asyncio task: the loop runs between slices."""
    import asyncio

    box = []
    for _ in _driven(steps, box):
        await asyncio.sleep(0)
    return box[0]


class Work:
    """A generator of slices driven from a loop: step() does one slice and tells whether the
    work is over; then `result` is its value, or `error` the ValueError (or IndexError: DER
    cut short; MemoryError) that ended it."""

    def __init__(self, steps):
        self.result = None
        self.error = None
        self.done = False
        self._box = []
        self._it = _driven(steps, self._box)

    def step(self):
        if self.done:
            return True
        try:
            next(self._it)
            return False
        except StopIteration:
            self.result = self._box[0]
        except (ValueError, IndexError) as e:
            self.error = e
        except MemoryError:  # the heap too cut up for a big integer: the check failed, the
            self.error = MemoryError("out of memory")  # loop goes on
        self.done = True
        self._it = None
        return True


def pow_steps(x, e, m, products=8):
    """x ** e % m by square-and-multiply in Python, a slice every `products` modular products:
    the builtin three-argument pow() is one call the interpreter cannot leave (a P-256
    inversion in one piece is ~20 ms of estimated ESP32 time, an RSA-4096 check ~170 ms)."""
    r = 1
    x %= m
    n = 0
    for i in range(bit_length(e) - 1, -1, -1):
        r = r * r % m
        n += 1
        if (e >> i) & 1:
            r = r * x % m
            n += 1
        if n >= products:
            n = 0
            yield
    return r


def bit_length(n):
    """Bits of a non-negative integer, rounded up to a multiple of 4 (MicroPython's int has
    no bit_length(); a leading zero bit costs a step on 1, nothing more)."""
    return (len(hex(n)) - 2) * 4
