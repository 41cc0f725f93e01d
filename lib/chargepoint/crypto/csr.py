"""A PKCS#10 certificate signing request (RFC 2986) for a P-256 key of the charger's own,
signed with ECDSA-SHA256: what OCPP's SignCertificate carries (PEM, `csr`)."""
import hashlib

from chargepoint.crypto import der, ecdsa, p256

COMMON_NAME = "2.5.4.3"
ORGANIZATION = "2.5.4.10"
_EC_P256 = der.sequence(der.oid("1.2.840.10045.2.1"), der.oid("1.2.840.10045.3.1.7"))
_ECDSA_SHA256 = der.sequence(der.oid("1.2.840.10045.4.3.2"))


def name(attributes):
    """A Name of one RDN per (OID text, value) pair, each value a UTF8String."""
    rdns = []
    for oid, value in attributes:
        pair = der.sequence(der.oid(oid), der.element(der.UTF8_STRING, value.encode()))
        rdns.append(der.element(der.SET, pair))
    return der.sequence(*rdns)


def public_key_info(xy):
    return der.sequence(_EC_P256, der.bit_string(p256.encode(xy[0], xy[1])))


def request_steps(d, xy, subject):
    """The DER of a request for key `d` (public point `xy`), subject `subject` (pairs for
    name()), no attributes."""
    info = der.sequence(der.integer(0), name(subject), public_key_info(xy), b"\xa0\x00")
    sig = yield from ecdsa.sign_steps(d, hashlib.sha256(info).digest())
    return der.sequence(info, _ECDSA_SHA256, der.bit_string(sig))


def pem(request):
    return der.pem(request, b"CERTIFICATE REQUEST")
