"""Public keys as X.509 carries them (SubjectPublicKeyInfo) and signatures as it names them
(AlgorithmIdentifier): sha256WithRSAEncryption, RSASSA-PSS with SHA-256, ecdsa-with-SHA256.
Anything else is refused (ValueError): another hash, another curve, a key too short."""
import hashlib

from chargepoint.crypto import der, ecdsa, p256, rsa

_RSA = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"  # rsaEncryption
_PSS = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0a"  # id-RSASSA-PSS
_RSA_SHA256 = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b"  # sha256WithRSAEncryption
_MGF1 = b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x08"
_EC = b"\x2a\x86\x48\xce\x3d\x02\x01"  # id-ecPublicKey
_P256 = b"\x2a\x86\x48\xce\x3d\x03\x01\x07"  # prime256v1
_ECDSA_SHA256 = b"\x2a\x86\x48\xce\x3d\x04\x03\x02"
_SHA256 = b"\x60\x86\x48\x01\x65\x03\x04\x02\x01"
_NULL = b"\x05\x00"


def _oid_and_rest(data):
    """(OID bytes, the DER after it) of an AlgorithmIdentifier, which must be all of `data`."""
    _, a, end = der.tlv(data, 0, len(data), der.SEQUENCE)
    if end != len(data):
        raise ValueError("algorithm: bytes left over")
    _, oa, ob = der.tlv(data, a, end, der.OID)
    return bytes(data[oa:ob]), bytes(data[ob:end])


def public_key_steps(spki):
    """("RSA", (n, e)) or ("EC", point) of a SubjectPublicKeyInfo's DER."""
    spki = bytes(spki)
    _, a, end = der.tlv(spki, 0, len(spki), der.SEQUENCE)
    _, aa, ab = der.tlv(spki, a, end, der.SEQUENCE)
    kind, params = _oid_and_rest(spki[a:ab])
    _, ka, kb = der.tlv(spki, ab, end, der.BIT_STRING)
    if kb != end or end != len(spki) or kb == ka or spki[ka] != 0:
        raise ValueError("public key bits")
    bits = spki[ka + 1:kb]
    if kind == _EC:
        if params != b"\x06\x08" + _P256:
            raise ValueError("EC key not on P-256")
        return "EC", (yield from p256.decode_steps(bits))
    if kind in (_RSA, _PSS):
        return "RSA", rsa.public_key(bits)
    raise ValueError("public key of an unknown kind")


def signature_kind(alg):
    """("RSA", None), ("PSS", salt length) or ("EC", None) of a signature's
    AlgorithmIdentifier, SHA-256 all through."""
    alg = bytes(alg)
    oid, params = _oid_and_rest(alg)
    if oid == _RSA_SHA256 and params in (b"", _NULL):
        return "RSA", None
    if oid == _ECDSA_SHA256 and params == b"":
        return "EC", None
    if oid != _PSS:
        raise ValueError("signature algorithm not taken")
    # RSASSA-PSS-params: [0] hash, [1] mask generation, [2] salt length, [3] trailer;
    # the defaults (SHA-1) are not taken, so [0] and [1] must be there
    _, a, end = der.tlv(params, 0, len(params), der.SEQUENCE)
    found = {}
    while a < end:
        t, va, a = der.tlv(params, a, end)
        found[t] = params[va:a]
    sha256 = der.sequence(der.element(der.OID, _SHA256), _NULL)
    hash_ok = found.get(0xA0) in (sha256, der.sequence(der.element(der.OID, _SHA256)))
    mgf = found.get(0xA1)
    mgf_ok = mgf is not None and mgf[2:2 + len(_MGF1) + 2] == der.element(der.OID, _MGF1)
    if not hash_ok or not mgf_ok or bytes(mgf[2 + len(_MGF1) + 2:]) not in (
            sha256, der.sequence(der.element(der.OID, _SHA256))):
        raise ValueError("RSASSA-PSS without SHA-256")
    if found.get(0xA3) not in (None, b"\x02\x01\x01"):
        raise ValueError("RSASSA-PSS trailer")
    salt = 20
    if 0xA2 in found:
        salt, _ = der.read_integer(found[0xA2], 0, len(found[0xA2]))
    return "PSS", salt


def verify_steps(key, alg, message, signature):
    """Whether `signature` over `message` (bytes; its SHA-256 is what is signed) is good for
    `key` (from public_key_steps) under the AlgorithmIdentifier `alg`. ValueError when the
    algorithm is not one taken here or not one for this key."""
    kind, salt = signature_kind(alg)
    digest = hashlib.sha256(message).digest()
    if (kind == "EC") != (key[0] == "EC"):
        raise ValueError("signature algorithm not for this key")
    if kind == "EC":
        return (yield from ecdsa.verify_steps(key[1], digest, signature))
    if kind == "PSS":
        return (yield from rsa.verify_pss_steps(key[1], digest, signature, salt))
    return (yield from rsa.verify_pkcs1_steps(key[1], digest, signature))
