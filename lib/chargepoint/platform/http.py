"""A small blocking HTTP/1.1 client for the network thread: a download streamed to a file with
its SHA-256, and a file uploaded as a request body. Never call it from the asyncio loop: it
blocks for as long as the network takes (`timeout_s` per socket operation).

    size, digest = http.download("https://host/fw.bin", "data/fw.part")
    status = http.upload("http://host/diag", "data/log.txt", method="PUT")

http and https (TLS with `ca`, a PEM or DER file of trusted roots, or unverified without: the
caller checks what it downloaded by its hash). Content-Length and chunked bodies; up to three
redirects. A failure raises HttpError (a status, a malformed answer) or OSError (network, TLS,
the file).
"""
import hashlib
import socket

from micropython import const

_CHUNK = const(512)  # a fragmented heap may have no bigger piece
_REDIRECTS = const(3)


class HttpError(ValueError):
    pass


def _split(url):
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise HttpError("not an http(s) URL: %s" % url)
    host, _, path = rest.partition("/")
    host, _, port = host.partition(":")
    port = int(port) if port else (443 if scheme == "https" else 80)
    if not host:
        raise HttpError("no host in %s" % url)
    return scheme == "https", host, port, "/" + path


def _connect(url, timeout_s, ca):
    tls, host, port, path = _split(url)
    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    s = socket.socket()
    try:
        s.settimeout(timeout_s)
        s.connect(addr)
        if tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if ca:
                with open(ca, "rb") as f:
                    ctx.load_verify_locations(cadata=f.read())
                ctx.verify_mode = ssl.CERT_REQUIRED
            else:
                ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=host)
    except BaseException:
        s.close()
        raise
    return s, host, path


def _head(s):
    """Status code and the headers we use (lower-case names)."""
    line = s.readline()
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HttpError("not an HTTP answer: %r" % line[:40])
    status = int(parts[1])
    headers = {}
    while True:
        line = s.readline()
        if not line or line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in (b"content-length", b"transfer-encoding", b"location"):
            headers[name] = value.strip().decode()
    return status, headers


def _request(method, url, timeout_s, ca, length=0):
    s, host, path = _connect(url, timeout_s, ca)
    try:
        s.write(("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n"
                 "User-Agent: chargepoint\r\n\r\n" % (method, path, host, length)).encode())
    except BaseException:
        s.close()
        raise
    return s


def _body(s, headers, out, h):
    """Copy the body to `out` (a file), hashing it; its size."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    size = 0
    if headers.get(b"transfer-encoding", "").lower() == "chunked":
        while True:
            line = s.readline()
            left = int(line.split(b";")[0].strip() or b"x", 16)
            if not left:
                break
            size += _copy(s, out, h, view, left)
            s.readline()  # the CRLF after each chunk
        return size
    if b"content-length" in headers:
        return _copy(s, out, h, view, int(headers[b"content-length"]))
    return _copy(s, out, h, view, -1)  # to the end of the connection


def _copy(s, out, h, view, left):
    size = 0
    while left:
        n = s.readinto(view[:_CHUNK if left < 0 or left > _CHUNK else left])
        if not n:
            if left > 0:
                raise HttpError("the body ended %d bytes short" % left)
            break
        chunk = view[:n]
        out.write(chunk)
        h.update(chunk)
        size += n
        if left > 0:
            left -= n
    return size


def download(url, path, timeout_s=30, ca=None):
    """GET `url` into the file `path`, or into `path.write()` when it is not a file name:
    (size, SHA-256 as 64 hex digits)."""
    for _ in range(_REDIRECTS + 1):
        s = _request("GET", url, timeout_s, ca)
        try:
            status, headers = _head(s)
            if status in (301, 302, 303, 307, 308) and b"location" in headers:
                url = headers[b"location"]
                continue
            if status != 200:
                raise HttpError("GET: HTTP %d" % status)
            h = hashlib.sha256()
            if isinstance(path, str):
                with open(path, "wb") as out:
                    size = _body(s, headers, out, h)
            else:
                size = _body(s, headers, path, h)
            return size, hexdigest(h)
        finally:
            s.close()
    raise HttpError("GET: too many redirects")


def hexdigest(h):
    return "".join("%02x" % b for b in h.digest())


def upload(url, path, method="PUT", timeout_s=30, ca=None):
    """Send the file `path` as the body of a PUT (or POST): the status code (2xx), else
    HttpError."""
    import os

    size = os.stat(path)[6]
    s = _request(method, url, timeout_s, ca, size)
    try:
        buf = bytearray(_CHUNK)
        with open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                s.write(memoryview(buf)[:n])
        status, _ = _head(s)
    finally:
        s.close()
    if not 200 <= status < 300:
        raise HttpError("%s: HTTP %d" % (method, status))
    return status
