"""X.509 certificates as far as OCPP's certificate management needs them: PEM to DER, and from
the DER the fields that identify a certificate (CertificateHashDataType) and decide whether it
can serve as a root. Pure: no I/O, no crypto beyond SHA-256.

Only what is read is checked: the DER structure down to those fields. The signature is not
verified here: mbedTLS does that at every TLS handshake, against the root; a firmware signing
certificate is checked against its manufacturer root by chargepoint.crypto.keys, from the
parts kept for it (`signed`, `signature_algorithm`, `signature`, `public_key_info`).
"""
import binascii
import hashlib

from micropython import const

from chargepoint.ocpp.timestamps import days_from_civil

_BOOLEAN = const(0x01)
_INTEGER = const(0x02)
_BIT_STRING = const(0x03)
_OCTET_STRING = const(0x04)
_OID = const(0x06)
_UTC_TIME = const(0x17)
_GENERALIZED_TIME = const(0x18)
_SEQUENCE = const(0x30)
_VERSION = const(0xA0)  # [0] EXPLICIT
_EXTENSIONS = const(0xA3)  # [3] EXPLICIT

_BASIC_CONSTRAINTS = b"\x55\x1d\x13"  # 2.5.29.19
_KEY_TYPES = (
    (b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01", "RSA"),  # rsaEncryption
    (b"\x2a\x86\x48\xce\x3d\x02\x01", "EC"),  # id-ecPublicKey
)


def pem_blocks(text):
    """The DER of every "-----BEGIN CERTIFICATE-----" block of `text` (str or bytes)."""
    if isinstance(text, str):
        text = text.encode()
    blocks = []
    begin = text.find(b"-----BEGIN CERTIFICATE-----")
    while begin >= 0:
        start = begin + 27
        end = text.find(b"-----END CERTIFICATE-----", start)
        if end < 0:
            raise ValueError("PEM block without its END line")
        try:
            blocks.append(binascii.a2b_base64(text[start:end]))
        except ValueError:
            raise ValueError("PEM block is not base64")
        begin = text.find(b"-----BEGIN CERTIFICATE-----", end)
    return blocks


def _tlv(der, i, end, tag=None):
    """(tag, first byte of the value, end of the value) of the element at der[i]."""
    if i + 2 > end:
        raise ValueError("DER truncated")
    t = der[i]
    n = der[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 3 or i + k > end:
            raise ValueError("DER length")
        n = 0
        for _ in range(k):
            n = n << 8 | der[i]
            i += 1
    if i + n > end:
        raise ValueError("DER truncated")
    if tag is not None and t != tag:
        raise ValueError("DER: tag 0x%02x where 0x%02x belongs" % (t, tag))
    return t, i, i + n


def _time(der, t, a, b):
    text = bytes(der[a:b]).decode()
    if t == _UTC_TIME and len(text) == 13:
        year = int(text[:2])
        year += 1900 if year >= 50 else 2000  # RFC 5280 §4.1.2.5.1
        text = text[2:]
    elif t == _GENERALIZED_TIME and len(text) == 15:
        year = int(text[:4])
        text = text[4:]
    else:
        raise ValueError("certificate time")
    if text[-1] != "Z":
        raise ValueError("certificate time not in UTC")
    return (days_from_civil(year, int(text[0:2]), int(text[2:4])) * 86400
            + int(text[4:6]) * 3600 + int(text[6:8]) * 60 + int(text[8:10]))


class Certificate:
    """A parsed certificate. `serial` is hexadecimal without leading zeroes (OCPP 1.6 security
    whitepaper edition 3), `issuer`/`subject` the DER of each Name, `key` the subjectPublicKey
    bits (what RFC 6960's issuerKeyHash hashes), `key_type` "RSA", "EC" or None (a key mbedTLS
    cannot use), `ca` the basicConstraints cA flag (True for a version 1 certificate, which
    has none), `not_before`/`not_after` unix seconds. For checking its signature (views into
    `der`, no copies): `signed` the tbsCertificate's DER, `signature_algorithm` the DER of
    its AlgorithmIdentifier, `signature` the signature's bits, `public_key_info` the DER of
    the subjectPublicKeyInfo. ValueError when the DER is malformed."""

    def __init__(self, der):
        der = memoryview(der)
        _, a, end = _tlv(der, 0, len(der), _SEQUENCE)
        _, i, tbs_end = _tlv(der, a, end, _SEQUENCE)
        self.signed = der[a:tbs_end]
        _, _, b = _tlv(der, tbs_end, end, _SEQUENCE)
        self.signature_algorithm = der[tbs_end:b]
        _, sa, sb = _tlv(der, b, end, _BIT_STRING)
        if sb == sa or der[sa] != 0:
            raise ValueError("certificate signature")
        self.signature = der[sa + 1:sb]
        t, a, b = _tlv(der, i, tbs_end)
        version = 1
        if t == _VERSION:
            _, va, vb = _tlv(der, a, b, _INTEGER)
            version = der[vb - 1] + 1
            t, a, b = _tlv(der, b, tbs_end)
        if t != _INTEGER or b == a:
            raise ValueError("certificate serial number")
        self.serial = binascii.hexlify(der[a:b]).decode().lstrip("0") or "0"
        _, _, start = _tlv(der, b, tbs_end, _SEQUENCE)  # signature algorithm
        _, _, i = _tlv(der, start, tbs_end, _SEQUENCE)
        self.issuer = bytes(der[start:i])
        _, a, i = _tlv(der, i, tbs_end, _SEQUENCE)  # validity
        t, va, vb = _tlv(der, a, i)
        self.not_before = _time(der, t, va, vb)
        t, va, vb = _tlv(der, vb, i)
        self.not_after = _time(der, t, va, vb)
        start = i
        _, _, i = _tlv(der, start, tbs_end, _SEQUENCE)
        self.subject = bytes(der[start:i])
        start = i
        _, a, i = _tlv(der, i, tbs_end, _SEQUENCE)  # subjectPublicKeyInfo
        self.public_key_info = der[start:i]
        _, aa, ab = _tlv(der, a, i, _SEQUENCE)
        _, oa, ob = _tlv(der, aa, ab, _OID)
        self.key_type = None
        for oid, name in _KEY_TYPES:
            if bytes(der[oa:ob]) == oid:
                self.key_type = name
        _, ka, kb = _tlv(der, ab, i, _BIT_STRING)
        if kb == ka:
            raise ValueError("certificate public key")
        self.key = bytes(der[ka + 1:kb])  # past the unused-bits count
        self.ca = version == 1
        while i < tbs_end:  # issuerUniqueID, subjectUniqueID, extensions
            t, a, i = _tlv(der, i, tbs_end)
            if t == _EXTENSIONS:
                self.ca = _is_ca(der, a, i)

    def self_issued(self):
        return self.issuer == self.subject

    def hash_data(self, issuer_key=None):
        """CertificateHashDataType (SHA256) of this certificate; `issuer_key` is the issuer's
        `key`, this certificate's own for a self-issued one."""
        return {"hashAlgorithm": "SHA256", "issuerNameHash": sha256_hex(self.issuer),
                "issuerKeyHash": sha256_hex(self.key if issuer_key is None else issuer_key),
                "serialNumber": self.serial}


def _is_ca(der, a, b):
    _, i, end = _tlv(der, a, b, _SEQUENCE)
    while i < end:
        _, ea, i = _tlv(der, i, end, _SEQUENCE)
        _, oa, ob = _tlv(der, ea, i, _OID)
        if bytes(der[oa:ob]) != _BASIC_CONSTRAINTS:
            continue
        t, va, vb = _tlv(der, ob, i)
        if t == _BOOLEAN:  # critical
            t, va, vb = _tlv(der, vb, i)
        if t != _OCTET_STRING:
            raise ValueError("basicConstraints")
        _, ca, cb = _tlv(der, va, vb, _SEQUENCE)
        if ca == cb:
            return False  # cA DEFAULT FALSE
        t, fa, fb = _tlv(der, ca, cb)
        return t == _BOOLEAN and fb > fa and der[fa] != 0
    return False


def sha256_hex(data):
    return binascii.hexlify(hashlib.sha256(data).digest()).decode()
