"""Simulator-only `ussl` for umqtt.simple 1.3.4: route its wrap_socket through an SSLContext.

1.3.4 calls `ussl.wrap_socket(sock, **ssl_params)`; the bridge passes
`ssl_params={"context": ctx, "server_hostname": host}` so the handshake goes through the
context with SNI and hostname check, as the current umqtt.simple does.
"""
import ssl


def wrap_socket(sock, context=None, server_hostname=None, **kw):
    if context is None:
        return ssl.wrap_socket(sock, server_hostname=server_hostname, **kw)
    return context.wrap_socket(sock, server_hostname=server_hostname)
