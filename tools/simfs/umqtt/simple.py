"""Simulator-only bridge: the current umqtt.simple API over the registry's 1.3.4 release.

The ESP32 firmware freezes micropython-lib's current umqtt.simple (1.4+); the only release on
a package registry is 1.3.4, fetched by tools/fetch_umqtt.py into build/mpy/umqtt_134/.
This folder (tools/simfs) is only ever on the simulator's MICROPYPATH, never on a device.

Differences from 1.3.4 that this subclass removes:
- `ssl` is an `ssl.SSLContext` (or None), wrapped with `server_hostname=server` (SNI and
  hostname check); 1.3.4 took `ssl=True, ssl_params={...}` and imported `ussl`, which the
  unix port no longer has (tools/simfs/ussl.py forwards to the context).
- `wait_msg()`/`check_msg()` return the packet type after delivering a PUBLISH (1.3.4 returned
  None, so a caller could not tell "a message came" from "nothing pending").
- the user/password flag is set when `user` is truthy, as in 1.4 (1.3.4: `is not None`).
Same as 1.4, kept as is: `connect(clean_session)` returns session-present; QoS 1 `publish`
blocks until PUBACK, delivering inbound PUBLISHes meanwhile; PINGRESP is consumed silently.
"""
from umqtt_134.simple import MQTTClient as _MQTTClient134
from umqtt_134.simple import MQTTException  # noqa: F401  (re-exported like the real module)


class MQTTClient(_MQTTClient134):
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        if port == 0:
            port = 8883 if ssl else 1883
        super().__init__(client_id, server, port, user or None, password, keepalive,
                         ssl=bool(ssl),
                         ssl_params={"context": ssl, "server_hostname": server} if ssl else {})

    def wait_msg(self):
        # 1.3.4 reads the fixed header itself and returns None after a PUBLISH; peek at the
        # first byte through a one-shot wrapper so we can return the op like 1.4 does.
        sock = self.sock
        peek = _Peek(sock)
        self.sock = peek
        try:
            op = super().wait_msg()
        finally:
            if self.sock is peek:
                self.sock = sock
        if op is None and peek.first and peek.first[0] & 0xF0 == 0x30:
            return peek.first[0]
        return op


class _Peek:
    """Records the first byte wait_msg reads, forwards everything to the real socket."""

    def __init__(self, sock):
        self._sock = sock
        self.first = None

    def read(self, n):
        data = self._sock.read(n)
        if self.first is None:
            self.first = data or b""
        return data

    def write(self, *args):
        return self._sock.write(*args)

    def setblocking(self, flag):
        return self._sock.setblocking(flag)

    def close(self):
        return self._sock.close()
