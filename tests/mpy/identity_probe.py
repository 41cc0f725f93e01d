"""The charger's own key and certificate on MicroPython: the key and request made here, the
signed chain taken, and the pair presented at a mutual-TLS handshake (chargepoint.model.
enrolment, chargepoint.app.own_identity, chargepoint.transport.tls).

Usage: micropython identity_probe.py csr DATA CN ORG
       micropython identity_probe.py signed DATA WALL CHAIN_PEM CA_PEM
       micropython identity_probe.py tls DATA PORT CA_PEM ATTEMPTS [CERT KEY]
(MICROPYPATH: our lib/; DATA a folder for the store). Prints one JSON line: the request's PEM;
why the chain was refused (null: taken); or per attempt the handshake's outcome, with whether
the link fell back to CERT/KEY (config.json's).
"""
import json
import socket
import sys

from chargepoint import crypto
from chargepoint.model import enrolment
from chargepoint.platform.store import FileStore


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_request(store, cn, org):
    print(json.dumps({"csr": crypto.run(enrolment.request_steps(store, cn, org))}))


def take(store, wall, chain, ca):
    from chargepoint.transport.tls import pem_blocks

    why, left = enrolment.examine(store, wall, _read(chain), pem_blocks(_read(ca)))
    if why is None:
        if not crypto.run(enrolment.signatures_steps(left[0])):
            why = "signature"
        elif not enrolment.adopt(store, left[1]):
            why = "not stored"
    print(json.dumps({"why": why}))


def handshake(store, port, ca, attempts, cert, key):
    from chargepoint.app import own_identity
    from chargepoint.transport.mqtt import _error_text
    from chargepoint.transport.tls import TlsLink, tls_context

    identity = own_identity(store)
    link = TlsLink(tls_context(ca, identity=identity), 5000,
                   fallback=(lambda: tls_context(ca, cert, key)) if cert else None)
    out = []
    for _ in range(attempts):
        sock = socket.socket()
        try:
            sock.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            tls = link.wrap_socket(sock, server_hostname="localhost")
            tls.write(b"ping")
            tls.close()
            out.append("ok")
        except Exception as e:  # the verdict is what is printed
            out.append(_error_text(e))
            sock.close()
    print(json.dumps({"attempts": out, "fell_back": link.fell_back,
                      "identity": identity is not None}))


store = FileStore(sys.argv[2])
if sys.argv[1] == "csr":
    make_request(store, sys.argv[3], sys.argv[4])
elif sys.argv[1] == "signed":
    take(store, int(sys.argv[3]), sys.argv[4], sys.argv[5])
else:
    handshake(store, int(sys.argv[3]), sys.argv[4], int(sys.argv[5]),
              *(sys.argv[6:8] if len(sys.argv) > 7 else (None, None)))
