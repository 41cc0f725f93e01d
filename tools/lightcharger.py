"""A light charger stand-in for fleet tests and the bridge bench: MQTT 3.1.1 over mutual TLS on
asyncio streams, hundreds to a process, no firmware. It publishes the frames it is given to
`<id>/in` (QoS 1, waiting for each PUBACK) and keeps what arrives on `<id>/out`.

    charger = LightCharger("CP-L001", "127.0.0.1", port, tls_context)
    await charger.connect()
    await charger.publish('[2,"m1","Heartbeat",{}]')
    charger.received                      # [(monotonic time, payload bytes)], oldest first
    await charger.close()                 # DISCONNECT; charger.abort(): the TCP link cut

The firmware is the real charger (tools.sim); this one only makes traffic the way it does.
"""
import asyncio
import ssl
import struct
import time

_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _SUBSCRIBE, _SUBACK = 1, 2, 3, 4, 8, 9
_DISCONNECT = 14


def tls_context(ca, cert, key):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    return context


def _string(text):
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _packet(kind, flags, body):
    length, encoded = len(body), bytearray()
    while True:
        digit, length = length % 128, length // 128
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes([kind << 4 | flags]) + bytes(encoded) + body


class LightCharger:
    def __init__(self, cp_id, host, port, tls, keepalive=0, clean_session=True):
        self.cp_id = cp_id
        self.host, self.port, self.tls = host, port, tls
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.received = []  # (time.monotonic(), payload) of each message on <id>/out
        self.published = 0  # frames the broker acknowledged
        self._reader = self._writer = None
        self._mid = 0
        self._acks = {}  # mid -> future
        self._task = None

    async def connect(self, timeout=10):
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.tls), timeout)
        flags = 0x02 if self.clean_session else 0
        body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + \
            _string(self.cp_id)
        self._writer.write(_packet(_CONNECT, 0, body))
        kind, payload = await asyncio.wait_for(self._read_packet(), timeout)
        if kind != _CONNACK or payload[1] != 0:
            raise ConnectionRefusedError("%s: CONNACK %r" % (self.cp_id, payload))
        self._task = asyncio.ensure_future(self._read_loop())
        mid = self._next_mid()
        done = self._acks[mid] = asyncio.get_running_loop().create_future()
        self._writer.write(_packet(_SUBSCRIBE, 2, struct.pack("!H", mid) +
                                   _string(self.cp_id + "/out") + b"\x01"))
        await asyncio.wait_for(done, timeout)
        return self

    def _next_mid(self):
        self._mid = self._mid % 65535 + 1
        return self._mid

    async def _read_packet(self):
        head = await self._reader.readexactly(1)
        length, shift = 0, 0
        while True:
            digit = (await self._reader.readexactly(1))[0]
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        return head[0] >> 4, await self._reader.readexactly(length) if length else b""

    async def _read_loop(self):
        try:
            while True:
                kind, body = await self._read_packet()
                if kind == _PUBLISH:
                    self._on_publish(body)
                elif kind in (_PUBACK, _SUBACK):
                    future = self._acks.pop(struct.unpack_from("!H", body)[0], None)
                    if future is not None and not future.done():
                        future.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("%s: connection lost" % self.cp_id))

    def _on_publish(self, body):
        (topic_len,) = struct.unpack_from("!H", body)
        mid = struct.unpack_from("!H", body, 2 + topic_len)[0]  # we subscribe at QoS 1
        self.received.append((time.monotonic(), body[4 + topic_len:]))
        self._writer.write(_packet(_PUBACK, 0, struct.pack("!H", mid)))

    async def publish(self, payload, timeout=30):
        """Publish `payload` (str or bytes) to <id>/in at QoS 1; returns at the PUBACK."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        mid = self._next_mid()
        done = self._acks[mid] = asyncio.get_running_loop().create_future()
        self._writer.write(_packet(_PUBLISH, 2, _string(self.cp_id + "/in") +
                                   struct.pack("!H", mid) + data))
        await asyncio.wait_for(done, timeout)
        self.published += 1

    @property
    def connected(self):
        return self._task is not None and not self._task.done()

    async def close(self):
        """A clean DISCONNECT, as a charger switched off in an orderly way."""
        if self._writer is not None and self.connected:
            self._writer.write(_packet(_DISCONNECT, 0, b""))
            try:
                await self._writer.drain()
            except ConnectionError:
                pass
        await self._finish()

    async def abort(self):
        """The TCP connection cut, no DISCONNECT: the broker notices at once (a FIN/RST)."""
        if self._writer is not None:
            self._writer.transport.abort()
        await self._finish()

    async def _finish(self):
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._reader = self._writer = self._task = None
