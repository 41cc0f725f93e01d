# Benchmark workloads run by the device twin itself (MicroPython, never CPython), for
# tools/bench: the firmware's engine and model in-process on tools/fakes.py (fake clock,
# loopback transport, fake board, the scripted Central System), or a bare TLS MQTT connection.
#
#   micropython -X heapsize=N workloads.py sessions COUNT STATE_DIR
#       COUNT RFID sessions (tap, plug, one MeterValues, an inbound GetConfiguration, tap,
#       unplug); a JSON line {"session": i, "alloc": live heap after gc.collect()} at 100
#       points, then {"done": COUNT, "peak": ..., "frames": ...}
#   micropython ... workloads.py calls COUNT STATE_DIR     COUNT inbound GetConfiguration
#   micropython ... workloads.py meter COUNT STATE_DIR     COUNT periodic MeterValues (1 s)
#   micropython ... workloads.py soak COUNT STATE_DIR [URL]
#       the sessions above with everything around them a charger meets: a local list of 1000
#       idTags and 10 charging profiles installed first; every 10th session a burst of 8
#       inbound CALLs (GetConfiguration of every key among them: a 3 KB answer); with URL,
#       4 firmware downloads spread over the sessions (the Updater's, into the simulated
#       OTA partition of $CP_TWIN_FLASH); inbound frames through the transports' inbox
#       (chargepoint.transport.mailbox.Inbox); a JSON line {"session", "alloc", "largest"}
#       at 100 points (largest: the largest block that can be allocated, found by halving),
#       then {"done", "memory_errors", "min_largest", "downloads", "download_errors", ...}
#   micropython ... workloads.py tls HOST PORT CA CERT KEY CLIENT_ID    (DER files)
#       live heap before and after a mutual-TLS MQTT connection (umqtt.simple, as frozen)
#
# MICROPYPATH must reach the chargepoint package (frozen or .mpy) and tools.fakes (a folder
# with tools/fakes.mpy: tools/bench/rig.py's fakes_folder).
import gc
import json
import sys

TAG = "04A1B2C3D4"
T0 = 1795262400


def emit(**kw):
    print(json.dumps(kw))


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def tls(host, port, ca, cert, key, client_id):
    gc.collect()
    before = gc.mem_alloc()
    import ssl
    from umqtt.simple import MQTTClient

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=_read(ca))  # DER: the unix port's mbedTLS has no PEM
    ctx.load_cert_chain(_read(cert), _read(key))
    client = MQTTClient(client_id, host, port=int(port), keepalive=60, ssl=ctx)
    client.set_callback(lambda topic, msg: None)
    client.connect(clean_session=True)
    client.subscribe(client_id + "/out", 1)
    gc.collect()
    after = gc.mem_alloc()
    client.disconnect()
    emit(before=before, connected=after, tls_mqtt=after - before)


def largest_block(hi=65536):
    """The largest bytearray that can be allocated now (bytes, to 16), by halving."""
    lo = 0
    while hi - lo > 16:
        mid = (lo + hi) // 2
        gc.collect()
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return lo


def firmware(mode, count, state_dir, url=None):
    from chargepoint.model.chargepoint import ChargePoint
    from chargepoint.ocpp.timestamps import iso
    from chargepoint.platform.clock import Clock
    from chargepoint.platform.store import FileStore
    from tools.fakes import FakeBoard, FakeTicks, LoopbackTransport, ScriptedCentralSystem

    class Ringed(LoopbackTransport):
        """Inbound frames through the transports' own inbox (one buffer allocated once, each
        frame parsed where it lies), as over MQTT or a WebSocket."""

        def __init__(self):
            super().__init__()
            from chargepoint.transport.mailbox import Inbox

            self.ring = Inbox(24, 4096)

        def receive(self):
            got = self.ring.get()
            if got is None and self.inbox:
                text, stale = self.inbox.pop(0)
                self.ring.put(text.encode(), stale)  # the str's own bytes: copied in once
                got = self.ring.get()
            return got

        def done(self):
            self.ring.free()

    ticks = FakeTicks()
    board = FakeBoard(1)
    transport = Ringed() if mode == "soak" else LoopbackTransport()
    central = ScriptedCentralSystem(transport, lambda: iso(T0 + ticks.now // 1000))
    frames = [0]
    peak = [0]
    cp = ChargePoint(board, transport, FileStore(state_dir), clock=Clock(ticks_ms=ticks),
                     reboot=lambda hard: None, services={"folder": state_dir})
    errors = [0, 0]  # MemoryError out of the loop; CALLERRORs of ours that name one

    def seen(text):
        if text.startswith("[4") and "MemoryError" in text:
            errors[1] += 1

    def step(ms=0):
        ticks.advance(ms)
        for _ in range(20):
            try:
                cp.loop()
            except MemoryError:
                errors[0] += 1
            n = central.handle(seen)
            if not n:
                break
            frames[0] += n

    def inbound(n):
        transport.deliver('[2,"cs-%d","GetConfiguration",{"key":["HeartbeatInterval"]}]' % n)
        step()

    def live():
        gc.collect()
        used = gc.mem_alloc()
        if used > peak[0]:
            peak[0] = used
        return used

    hw = board.connectors[0]
    step()
    if mode == "calls":
        for n in range(count):
            inbound(n)
    elif mode == "meter":
        transport.deliver('[2,"cs-mv","ChangeConfiguration",'
                          '{"key":"MeterValueSampleInterval","value":"1"}]')
        step()
        board.rfid.present(TAG)
        hw.pilot.ev = "C"
        step()
        step()
        for _ in range(count):
            hw.meter.wh += 2
            hw.meter.watts = 7360.0
            step(1000)
    else:
        soak = mode == "soak"
        if soak:
            _load(transport, step)
        smallest = None
        every = max(1, count // 100)
        downloads = [0, 0]  # done, failed
        spread = max(1, count // 4)
        for n in range(count):
            if url and n % spread == spread // 2:
                _download(state_dir, url, downloads)
            board.rfid.present(TAG)
            step()
            hw.pilot.ev = "C"
            step()
            hw.meter.wh += 100
            hw.meter.watts = 7360.0
            step(60000)  # one periodic MeterValues (MeterValueSampleInterval 60)
            inbound(n)
            board.rfid.present(TAG)
            step()
            hw.pilot.ev = "A"
            step(1000)
            if soak and n % 10 == 9:
                _burst(transport, n)
                step()
            if (n + 1) % every == 0 or n == 0:
                if soak:
                    largest = largest_block()
                    smallest = largest if smallest is None else min(smallest, largest)
                    emit(session=n + 1, alloc=live(), status=cp.connectors[0].status,
                         largest=largest)
                else:
                    emit(session=n + 1, alloc=live(), status=cp.connectors[0].status)
        if soak:
            emit(memory_errors=errors[0] + errors[1], min_largest=smallest,
                 local_list=cp.local_list.count if cp.local_list else None,
                 downloads=downloads[0], download_errors=downloads[1])
    calls = central.counts
    emit(done=count, peak=peak[0], frames=frames[0], meter_values=calls.get("MeterValues", 0),
         starts=calls.get("StartTransaction", 0), stops=calls.get("StopTransaction", 0))


def _download(state_dir, url, downloads):
    """A firmware download as UpdateFirmware has it done (chargepoint.platform.update), in
    this thread: the package streamed into the other (simulated) OTA partition, checked."""
    from chargepoint.platform.store import FileStore
    from chargepoint.platform.update import Updater

    up = Updater(FileStore(state_dir), "0.1.0", spawn=lambda work: work())
    up.download(url)
    downloads[0] += 1
    if up.error is not None or up.refused is not None:
        downloads[1] += 1
    emit(downloaded=up.new_version, error=up.error or up.refused)


def _load(transport, step):
    """A local list of 1000 idTags (42 SendLocalList Differential of 24) and 10 charging
    profiles (TxDefaultProfile, stack levels 0..9), as an operator would install them."""
    version = 0
    for first in range(0, 1000, 24):
        version += 1
        entries = ",".join('{"idTag":"TAG%06d","idTagInfo":{"status":"Accepted"}}' % i
                           for i in range(first, min(first + 24, 1000)))
        transport.deliver('[2,"ll-%d","SendLocalList",{"listVersion":%d,"updateType":'
                          '"Differential","localAuthorizationList":[%s]}]'
                          % (version, version, entries))
        step()
    for level in range(10):
        transport.deliver(
            '[2,"cp-%d","SetChargingProfile",{"connectorId":0,"csChargingProfiles":'
            '{"chargingProfileId":%d,"stackLevel":%d,"chargingProfilePurpose":'
            '"TxDefaultProfile","chargingProfileKind":"Recurring","recurrencyKind":"Daily",'
            '"chargingSchedule":{"chargingRateUnit":"A","startSchedule":"2026-01-01T00:00:00Z",'
            '"chargingSchedulePeriod":[{"startPeriod":0,"limit":32},{"startPeriod":%d,'
            '"limit":16}]}}}]' % (level, level + 1, level, 3600 * (level + 1)))
        step()


def _burst(transport, n):
    """8 inbound CALLs at once: GetConfiguration of every key (a 3 KB answer), reads, a
    DataTransfer and a TriggerMessage."""
    frames = ['[2,"b%d-0","GetConfiguration",{}]' % n,
              '[2,"b%d-1","GetConfiguration",{"key":["HeartbeatInterval"]}]' % n,
              '[2,"b%d-2","GetLocalListVersion",{}]' % n,
              '[2,"b%d-3","DataTransfer",{"vendorId":"acme","data":"%s"}]' % (n, "x" * 1000),
              '[2,"b%d-4","GetCompositeSchedule",{"connectorId":1,"duration":86400}]' % n,
              '[2,"b%d-5","TriggerMessage",{"requestedMessage":"Heartbeat"}]' % n,
              '[2,"b%d-6","ChangeConfiguration",{"key":"HeartbeatInterval","value":"300"}]' % n,
              '[2,"b%d-7","GetConfiguration",{}]' % n]
    for f in frames:
        transport.deliver(f)


def main():
    mode = sys.argv[1]
    if mode == "tls":
        tls(*sys.argv[2:8])
    else:
        firmware(mode, int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])


if __name__ == "__main__":
    main()
