"""--http HOST:PORT: `/healthz` (200 while every MQTT connection is up, else 503) and `/metrics`
(Prometheus text format 0.0.4), on a minimal asyncio HTTP/1.0 server."""
import asyncio

_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def answer(bridge, method, path):
    """(status, content type, body) for a request."""
    if method != "GET":
        return 405, "text/plain", "GET only\n"
    path = path.split("?", 1)[0]
    if path == "/healthz":
        if bridge.healthy:
            return 200, "text/plain", "ok\n"
        return 503, "text/plain", "MQTT connection down\n"
    if path == "/metrics":
        return 200, _PROMETHEUS, bridge.metrics.render(bridge.pool)
    return 404, "text/plain", "not found\n"


async def serve(bridge, host, port):
    """Start the server; returns the asyncio Server (its socket tells the port when 0)."""

    async def handle(reader, writer):
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path = (request.split(b"\r\n", 1)[0].decode("latin-1").split(" ") + [""])[:2]
            status, kind, body = answer(bridge, method, path)
            data = body.encode("utf-8")
            writer.write(("HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                          "Connection: close\r\n\r\n" % (status, _REASONS[status], kind,
                                                         len(data))).encode("latin-1") + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
