"""ECDSA over P-256 with SHA-256 (FIPS 186-4, SEC 1): verify, make a key from the board's
random source, sign with deterministic nonces (RFC 6979, HMAC-SHA256), so a signature never
depends on the quality of the random source once the key exists. Signatures are DER
(Ecdsa-Sig-Value: SEQUENCE {r INTEGER, s INTEGER}), as X.509 and CSRs carry them.

Every function here is a generator of slices (chargepoint.crypto); `digest` is the 32-byte
SHA-256 of the message.
"""
import hashlib
import os

from chargepoint.crypto import der, p256, pow_steps

N = p256.N


def hmac_sha256(key, data):
    """RFC 2104 HMAC over hashlib's SHA-256 (MicroPython has no hmac module)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key + bytes(64 - len(key))
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    inner.update(data)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest()


def decode_signature(sig):
    """(r, s) of a DER signature: the whole of `sig`, strict DER, both in [1, N-1]."""
    sig = bytes(sig)
    _, a, end = der.tlv(sig, 0, len(sig), der.SEQUENCE)
    if end != len(sig):
        raise ValueError("bytes after the signature")
    r, i = der.read_integer(sig, a, end)
    s, i = der.read_integer(sig, i, end)
    if i != end:
        raise ValueError("bytes inside the signature")
    if not (0 < r < N and 0 < s < N):
        raise ValueError("signature out of range")
    return r, s


def encode_signature(r, s):
    return der.sequence(der.integer(r), der.integer(s))


def verify_steps(point, digest, sig):
    """Whether `sig` (DER) is a signature of `digest` by the key `point` (p256.decode_steps).
    A malformed signature is False, not an error. High s is accepted (FIPS 186-4 does)."""
    try:
        r, s = decode_signature(sig)
    except (ValueError, IndexError):
        return False
    e = int.from_bytes(digest, "big") % N
    w = yield from pow_steps(s, N - 2, N)
    x, _, z = yield from p256.mul2_steps(e * w % N, p256.G, r * w % N, point)
    if z == 0:
        return False
    # x/z² mod N == r, without the inverse: x/z² (< P < 2N) is r or r + N
    zz = z * z % p256.P
    if x == r * zz % p256.P:
        return True
    return r + N < p256.P and x == (r + N) * zz % p256.P


def keygen_steps():
    """(d, (x, y)): a private key from os.urandom (the ESP32's hardware RNG) and its public
    point. 64 random bits beyond the 256 make the bias of the reduction negligible."""
    d = int.from_bytes(os.urandom(40), "big") % (N - 1) + 1
    q = yield from p256.mul_steps(d, p256.G)
    xy = yield from p256.affine_steps(q)
    return d, xy


def public_steps(d):
    """The affine public point of private key `d`."""
    q = yield from p256.mul_steps(d, p256.G)
    return (yield from p256.affine_steps(q))


def _nonces(d, digest):
    """RFC 6979 §3.2 candidates k for key d and a SHA-256 digest (qlen = hlen = 256)."""
    x = d.to_bytes(32, "big")
    h = (int.from_bytes(digest, "big") % N).to_bytes(32, "big")
    v = b"\x01" * 32
    k = bytes(32)
    k = hmac_sha256(k, v + b"\x00" + x + h)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v + b"\x01" + x + h)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        t = int.from_bytes(v, "big")
        if 0 < t < N:
            yield t
        k = hmac_sha256(k, v + b"\x00")
        v = hmac_sha256(k, v)


def sign_steps(d, digest):
    """The DER signature of `digest` by private key `d`, its nonce per RFC 6979."""
    e = int.from_bytes(digest, "big") % N
    for k in _nonces(d, digest):
        yield  # the nonce's HMACs are a slice's worth
        q = yield from p256.mul_steps(k, p256.G)
        x, _ = yield from p256.affine_steps(q)
        r = x % N
        if r == 0:
            continue
        ki = yield from pow_steps(k, N - 2, N)
        s = ki * (e + r * d) % N
        if s != 0:
            return encode_signature(r, s)
