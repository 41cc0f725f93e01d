"""Device-side probe for tests/transport/test_websocket_device.py: WebSocketTransport on the twin.

micropython ws_probe.py URL SECONDS [--ca CA] [--cert CERT --key KEY] [--password PW]
Once connected it sends one CALL, prints every frame it receives and how the link went as JSON
lines ({"event": ...}), and measures the longest gap of a 10 ms asyncio task meanwhile.
"""
import asyncio
import gc
import json
import sys
import time

from chargepoint.transport.tls import WHITEPAPER_SUITES, tls_context
from chargepoint.transport.websocket import WebSocketTransport


def emit(**kw):
    print(json.dumps(kw))


async def ticker(gaps, duration_ms):
    start = last = time.ticks_ms()
    while time.ticks_diff(last, start) < duration_ms:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        gaps[0] = max(gaps[0], time.ticks_diff(now, last))
        last = now


async def main(argv):
    url, seconds = argv[0], int(argv[1])
    opts = dict(zip(argv[2::2], argv[3::2]))
    ssl = None
    if "--ca" in opts:
        ssl = tls_context(opts["--ca"], opts.get("--cert"), opts.get("--key"),
                          ciphers=WHITEPAPER_SUITES)
    password = opts["--password"].encode() if "--password" in opts else None
    gc.collect()
    t = WebSocketTransport("CP 001", url, ssl=ssl, password=password, io_timeout_ms=3000,
                           ping_interval_s=int(opts.get("--ping", "0")))
    t.start()
    gaps = [0]
    tick = asyncio.create_task(ticker(gaps, seconds * 1000))
    sent = False
    deadline = time.ticks_add(time.ticks_ms(), seconds * 1000)
    while time.ticks_diff(deadline, time.ticks_ms()) > 0:
        if t.connected and not sent:
            sent = t.send('[2,"boot-1","BootNotification",{"chargePointVendor":"Acme"}]')
            emit(event="sent")
        got = t.receive()
        if got is not None:
            text = str(got[0], "utf-8")  # a bytearray over the inbox, until the next receive
            emit(event="received", text=text, size=len(got[0]))
            if text == "bye":
                break
        await asyncio.sleep_ms(10)
    tick.cancel()
    gc.collect()
    emit(event="done", max_gap_ms=gaps[0], status=t.status, connected=t.connected,
         heap_free=gc.mem_free())
    t.stop()
    for _ in range(300):
        if t.stopped:
            break
        await asyncio.sleep_ms(10)
    emit(event="stopped", stopped=t.stopped)


try:
    asyncio.run(main(sys.argv[1:]))
finally:
    asyncio.new_event_loop()
