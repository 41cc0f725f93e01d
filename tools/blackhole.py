"""A TCP proxy in front of the broker that can start swallowing everything (host only)."""
import asyncio


class Blackhole:
    """Forwards 127.0.0.1:`port` to the broker on `target_port` until `swallow()`: from then on
    it drops the links it carries and keeps accepting connections without ever answering, like
    a broker hanging mid-handshake. `links` holds the connections it is sitting on."""

    def __init__(self, target_port):
        self.target = target_port
        self.hang = False
        self.silent = False  # the links stay open, what comes is dropped
        self.links = []
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader, writer):
        if self.hang:
            self.links.append(writer)  # keep it open, say nothing
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        self.links += [writer, up_w]

        async def pipe(r, w):
            try:
                while not self.hang:
                    data = await r.read(4096)
                    if not data:
                        break
                    if self.silent:
                        continue  # swallowed: the peer hears nothing, the TCP link stays
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def silence(self):
        """From now on the links it carries stay open and carry nothing, either way (a peer
        that has died without closing, a router gone quiet)."""
        self.silent = True

    def swallow(self):
        self.hang = True
        for w in self.links:  # the link drops; the firmware's next handshake hangs
            w.close()
        self.links = []

    def close(self):
        if self.server is not None:
            self.server.close()
        for w in self.links:
            w.close()
        self.links = []
