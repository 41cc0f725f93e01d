"""Device-side probe for tests/test_mqtt_device.py: runs MqttTransport under the unix port.

micropython mqtt_probe.py MODE HOST PORT CA CERT KEY SECONDS
  roundtrip  publish one frame on CP001/in, wait for one frame on CP001/out
  listen     wait for one frame on CP001/out (e.g. the backlog of a resumed session)
  wake       roundtrip, but the network thread's idle sleep on the socket is a minute and the
             frame is queued once it sleeps: only the frame waking it gets it out in time
  stall      only run the asyncio loop next to the (failing) network thread
Every mode measures the longest gap between iterations of a 10 ms asyncio task and prints
JSON lines: {"event": ...}. The test drives the other side (broker, paho, fake servers).
"""
import asyncio
import gc
import json
import sys
import time

from chargepoint.transport.mqtt import MqttTransport
from chargepoint.transport.tls import tls_context


def emit(**kw):
    print(json.dumps(kw))


async def ticker(gaps, duration_ms):
    # The safety figure: how late a 10 ms task runs while the network thread is busy.
    start = last = time.ticks_ms()
    while time.ticks_diff(last, start) < duration_ms:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        gap = time.ticks_diff(now, last)
        if gap > gaps[0]:
            gaps[0] = gap
        last = now


def lazy(t):
    """The thread's idle sleep made a minute long (it sleeps what step() returns)."""
    step = t.step

    def lazy_step():
        ms = step()
        return 60000 if ms and t.connected and not len(t.outbox) else ms
    t.step = lazy_step


async def roundtrip(t, seconds, send=True, settle_ms=0):
    sent = not send
    deadline = time.ticks_add(time.ticks_ms(), seconds * 1000)
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        if t.connected and not sent:
            await asyncio.sleep_ms(settle_ms)  # the thread is asleep by then
            emit(event="connected", status=t.status)
            sent = t.send('[2,"boot-1","BootNotification",{"chargePointVendor":"Acme"}]')
            if sent:
                emit(event="queued")
        got = t.receive()
        if got is not None:
            # a bytearray over the inbox, until the next receive()
            emit(event="received", text=str(got[0], "utf-8"), stale=got[1])
            return
        await asyncio.sleep_ms(20)
    emit(event="timeout", status=t.status)


async def main(mode, host, port, ca, cert, key, seconds):
    gc.collect()
    t = MqttTransport("CP001", host, port, ssl=tls_context(ca, cert, key), keepalive=60,
                      io_timeout_ms=2000)
    if mode == "wake":
        lazy(t)
    t.start()
    gaps = [0]
    tick = asyncio.create_task(ticker(gaps, seconds * 1000))
    if mode in ("roundtrip", "listen", "wake"):
        await roundtrip(t, seconds, mode != "listen", 300 if mode == "wake" else 0)
        tick.cancel()
    else:
        await tick
    emit(event="done", max_gap_ms=gaps[0], status=t.status, connected=t.connected,
         heap_free=gc.mem_free())
    t.stop()
    for _ in range(300):
        if t.stopped:
            break
        await asyncio.sleep_ms(10)
    emit(event="stopped", stopped=t.stopped)


try:
    a = sys.argv[1:]
    asyncio.run(main(a[0], a[1], int(a[2]), a[3], a[4], a[5], int(a[6])))
finally:
    asyncio.new_event_loop()
