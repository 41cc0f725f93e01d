"""The security extensions' device-side pieces on MicroPython: X.509 parsing, and the TLS context
trusting config.json's CA plus the roots installed over OCPP.

Usage: micropython security_probe.py x509 DER_FILE...
       micropython security_probe.py tls PORT CA CERT KEY [INSTALLED_DER_FILE...]
(MICROPYPATH: our lib/). Prints one JSON line: per certificate what chargepoint.ocpp.x509
makes of it; or the outcome of a TLS handshake with 127.0.0.1:PORT as "localhost" (the
transport's error text and whether the security events take it for a refused server).
"""
import json
import socket
import sys

from chargepoint.model.security import server_refused
from chargepoint.ocpp import x509
from chargepoint.transport.mqtt import _error_text
from chargepoint.transport.tls import TlsLink, tls_context


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def parse(paths):
    out = []
    for path in paths:
        cert = x509.Certificate(_read(path))
        out.append({"ids": cert.hash_data(), "ca": cert.ca, "root": cert.self_issued(),
                    "key_type": cert.key_type, "not_before": cert.not_before,
                    "not_after": cert.not_after})
    print(json.dumps(out))


def handshake(port, ca, cert, key, installed):
    link = TlsLink(tls_context(ca, cert, key, [_read(p) for p in installed]), 5000)
    sock = socket.socket()
    try:
        sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        tls = link.wrap_socket(sock, server_hostname="localhost")
        tls.write(b"ping")
        tls.close()
        print(json.dumps({"ok": True}))
    except Exception as e:  # the verdict is what is printed
        error = _error_text(e)
        print(json.dumps({"ok": False, "error": error, "refused": server_refused(error)}))
        sock.close()


if sys.argv[1] == "x509":
    parse(sys.argv[2:])
else:
    handshake(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
