"""RSA signature checks with SHA-256 (RFC 8017): RSASSA-PKCS1-v1_5 and RSASSA-PSS (MGF1 with
SHA-256), keys of 2048 to 4096 bits. A key is (n, e, bits of n) from public_key(); `digest` the
32-byte SHA-256 of the message. Generators of slices (chargepoint.crypto): a slice is one
product or one reduction of it, the largest pieces of work there are (each ~0.2 ms for 4096
bits on the twin)."""
import hashlib

from chargepoint.crypto import bit_length, der

# DigestInfo of SHA-256 ahead of the digest (RFC 8017 §9.2 note 1)
_SHA256_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"
MIN_BITS = 2048
MAX_BITS = 4096


def public_key(data):
    """(n, e, bits of n) of an RSAPublicKey (SEQUENCE {modulus, publicExponent}), refused
    unless 2048..4096 bits with an odd exponent from 3 to 2³²-1."""
    data = bytes(data)
    _, a, end = der.tlv(data, 0, len(data), der.SEQUENCE)
    _, na, nb = der.tlv(data, a, end, der.INTEGER)
    n = der.integer_at(data, na, nb)
    e, i = der.read_integer(data, nb, end)
    if i != end or end != len(data):
        raise ValueError("RSA key: bytes left over")
    if data[na] == 0:
        na += 1
    top = data[na]
    size = (nb - na - 1) * 8  # (hex() of a 4096-bit number takes ~1 ms: counted from the DER)
    while top:
        size += 1
        top >>= 1
    if not MIN_BITS <= size <= MAX_BITS:
        raise ValueError("RSA key of %d bits (2048 to 4096 taken)" % size)
    if not (e & 1 and 3 <= e < 1 << 32) or not n & 1:
        raise ValueError("RSA key: exponent or modulus not fit")
    return n, e, size


def _open_steps(key, sig):
    """The signature's representative s^e mod n, or None when `sig` is not k bytes below n."""
    n, e, size = key
    k = (size + 7) // 8
    if len(sig) != k:
        return None
    s = int.from_bytes(bytes(sig), "big")
    if s >= n:
        return None
    # s^e mod n, left to right; the product and its reduction in slices of their own
    r = 1
    for i in range(bit_length(e) - 1, -1, -1):
        if r != 1:
            r = r * r
            yield
            r %= n
            yield
        if (e >> i) & 1:
            r = r * s
            yield
            r %= n
            yield
    return r


def verify_pkcs1_steps(key, digest, sig):
    """Whether `sig` is an RSASSA-PKCS1-v1_5 signature of `digest` (SHA-256) by `key`."""
    m = yield from _open_steps(key, sig)
    if m is None:
        return False
    k = len(sig)
    t = _SHA256_INFO + digest
    return m.to_bytes(k, "big") == b"\x00\x01" + b"\xff" * (k - 3 - len(t)) + b"\x00" + t


def mgf1(seed, length):
    out = b""
    c = 0
    while len(out) < length:
        out += hashlib.sha256(seed + c.to_bytes(4, "big")).digest()
        c += 1
    return out[:length]


def verify_pss_steps(key, digest, sig, salt_length=None):
    """Whether `sig` is an RSASSA-PSS signature of `digest` by `key`, MGF1-SHA256, salt of
    `salt_length` bytes (None: any length, as the encoded message says)."""
    m = yield from _open_steps(key, sig)
    if m is None:
        return False
    em_bits = key[2] - 1
    em_len = (em_bits + 7) // 8
    if m >> em_bits:
        return False
    em = m.to_bytes(em_len, "big")
    if em_len < 32 + 2 or em[-1] != 0xBC:
        return False
    db_len = em_len - 33
    h = em[db_len:-1]
    top = 0xFF >> (8 * em_len - em_bits)
    if em[0] & ~top & 0xFF:
        return False
    yield
    mask = mgf1(h, db_len)
    db = bytearray(db_len)
    for i in range(db_len):
        db[i] = em[i] ^ mask[i]
    db[0] &= top
    yield
    i = 0
    while i < db_len and db[i] == 0:
        i += 1
    if i == db_len or db[i] != 1:
        return False
    salt = bytes(db[i + 1:])
    if salt_length is not None and len(salt) != salt_length:
        return False
    return hashlib.sha256(bytes(8) + digest + salt).digest() == h
