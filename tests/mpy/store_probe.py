"""Twin probe for tests/platform/test_store_twin.py: FileStore on a real LittleFS (the
ESP32's filesystem) in a RAM block device, with faults a flash has.

micropython store_probe.py   (MICROPYPATH=.frozen:<repo root>)
Prints one JSON object per case: what the store read back, reported and refused."""
import json
import os
import vfs

from chargepoint.platform.store import FileStore

_BLOCK = 512


class Flash:
    """A RAM block device; `fail_after`: writes (program or erase) allowed before every
    further one raises EIO, as a worn or unpowered flash does."""

    def __init__(self, blocks, size=_BLOCK):
        self.size = size
        self.data = bytearray(size * blocks)
        self.fail_after = None

    def _count(self):
        if self.fail_after is not None:
            if self.fail_after <= 0:
                raise OSError(5)  # EIO
            self.fail_after -= 1

    # byte by byte: LittleFS may call these while the heap is locked (a finaliser at umount)
    def readblocks(self, n, buf, off=0):
        a = n * self.size + off
        data = self.data
        for i in range(len(buf)):
            buf[i] = data[a + i]

    def writeblocks(self, n, buf, off=None):
        self._count()
        if off is None:
            off = 0
        a = n * self.size + off
        data = self.data
        for i in range(len(buf)):
            data[a + i] = buf[i]

    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.size
        if op == 5:
            return self.size
        if op == 6:
            self._count()
            return 0
        return None


def mount(flash, fresh=False):
    try:
        vfs.umount("/flash")
    except OSError:
        pass
    if fresh:
        vfs.VfsLfs2.mkfs(flash)
    vfs.mount(vfs.VfsLfs2(flash), "/flash")
    return FileStore("/flash/data")


def report(case, **kw):
    kw["case"] = case
    print(json.dumps(kw))


# 1. Full: records written until the flash refuses; nothing written before is lost
flash = Flash(40)
s = mount(flash, fresh=True)
s.write("tx1", {"ref": "1.1", "last": [5, "t"]})
n = 0
while s.write("q.%08d" % n, {"p": "x" * 200}):
    n += 1
refused = s.failed
s.failed = None
again = s.write("q.%08d" % n, {"p": "y"})
s.remove("q.00000000")
s.remove("q.00000001")
room = s.write("tx1", {"ref": "1.1", "last": [9, "t"]})
s = mount(flash)  # the next boot
report("full", written=n, refused=refused, again=again, failed_after=s.failed,
       tx1=s.read("tx1"), q2=s.read("q.00000002"), errors=s.errors, room=room,
       tmp=[x for x in os.listdir("/flash/data") if x.endswith(".tmp")])

# 2. A byte flipped in the flash: the record is set aside, the copy before it read
flash = Flash(64)
s = mount(flash, fresh=True)
s.write("config", {"HeartbeatInterval": "300"})
s.write("config", {"HeartbeatInterval": "600"})
with open("/flash/data/config", "rb") as f:
    data = bytearray(f.read())
data[-3] ^= 0x04
with open("/flash/data/config", "wb") as f:
    f.write(data)
s = mount(flash)
report("flipped", config=s.read("config", {}), damaged=s.damaged,
       files=sorted(os.listdir("/flash/data")))

# 3. The flash fails in the middle of writes (the Nth program or erase): each refused
# write leaves the record as it was, also across a reboot
results = []
for k in range(0, 12):
    flash = Flash(64)
    s = mount(flash, fresh=True)
    s.write("boot", {"n": 1})
    flash.fail_after = k
    try:
        ok = s.write("boot", {"n": 2})
    except OSError as e:  # must never happen
        ok = "raised %r" % e
    flash.fail_after = None
    try:
        s = mount(flash)
        got = s.read("boot", {"n": 0})
    except OSError as e:  # the filesystem itself did not survive: say so
        got = "mount: %r" % e
    results.append([k, ok, got, s.damaged])
report("fail_nth", results=results)


# 4. The transaction queue's segments on a flash of the ESP32's geometry (4 KB blocks): what
# a power cut leaves, the blocks they take, answers, a full flash
from chargepoint.model.txqueue import TxQueue  # noqa: E402
from chargepoint.platform.clock import Clock  # noqa: E402


class Config:
    def get(self, key):
        return {"TransactionMessageRetryInterval": 60, "TransactionMessageAttempts": 3}[key]


def queue(s):
    return TxQueue(s, Clock(), Config(), lambda *a: None)


def used():
    st = os.statvfs("/flash")
    return st[2] - st[3]


def session(q, t, values=3):
    ref = "1.%d" % t
    q.push("s%d" % t, "StartTransaction", {"timestamp": "t"}, ref)
    for i in range(values):
        q.push("m%d.%d" % (t, i), "MeterValues",
               {"meterValue": [{"timestamp": "t", "sampledValue": [{"value": "x" * 150}]}]}, ref)
    q.push("e%d" % t, "StopTransaction", {"timestamp": "t"}, ref)


flash = Flash(24, 4096)
s = mount(flash, fresh=True)
empty = used()
q = queue(s)
for t in range(24):
    session(q, t)
blocks = used() - empty
s = mount(flash)  # a power cut
q = queue(s)
uids = [r["u"] for _, r in q.records()]
for _ in range(7):  # answered: Start, three MeterValues, Stop and two of the next
    call = q.next_call()
    call.done({"transactionId": 5, "idTagInfo": {"status": "Accepted"}})
s = mount(flash)
q = queue(s)
after = [r["u"] for _, r in q.records()]
report("queue", count=len(q), uids=uids, blocks=blocks, segments=len(s.names("q.")),
       after=after[:2], after_count=len(after), damaged=s.damaged)

# 5. Full: sessions until the flash refuses; MeterValues go, no Start or Stop is lost
t = 24
while not q._held and t < 400:
    session(q, t, 6)
    t += 1
room = q.room()
ends = [r["u"] for _, r in q.records() if r["a"] != "MeterValues"]
report("queue_full", sessions=t, held=len(q._held), dropped=q.dropped, count=len(q),
       room=room, ends=ends[:3] + ends[-3:], ends_count=len(ends))
