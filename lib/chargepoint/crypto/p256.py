"""The NIST P-256 curve (secp256r1, FIPS 186-4 D.1.2.3): points in Jacobian coordinates
(X, Y, Z) standing for (X/Z², Y/Z³), Z = 0 the point at infinity. Field elements are plain
integers modulo P; inverses by Fermat (x^(P-2)), in slices (chargepoint.crypto.pow_steps).

Not constant time: the interpreter's integers take time that depends on their values. Fine
for checking signatures (everything is public); for signing with the charger's own key it
leaks timing to whoever can measure it to the microsecond on the board (README).
"""
from chargepoint.crypto import bit_length, pow_steps

P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5
G = (GX, GY, 1)
INFINITY = (1, 1, 0)
_SLICE_BITS = 2  # bits of a scalar per slice of a multiplication (see README's figures)


def double(p1):
    x, y, z = p1
    if z == 0 or y == 0:
        return INFINITY
    # dbl-2001-b (a = -3)
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return x3, y3, z3


def add(p1, p2):
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    if h == 0:
        return double(p1) if r == 0 else INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    return x3, y3, z1 * z2 * h % P


def mul_steps(k, point):
    """k·point, a slice every _SLICE_BITS bits of k."""
    acc = INFINITY
    n = 0
    for i in range(bit_length(k) - 1, -1, -1):
        acc = double(acc)
        if (k >> i) & 1:
            acc = add(acc, point)
        n += 1
        if n == _SLICE_BITS:
            n = 0
            yield
    return acc


def mul2_steps(k1, p1, k2, p2):
    """k1·p1 + k2·p2 in one pass (Shamir's trick), a slice every _SLICE_BITS bits."""
    both = add(p1, p2)
    table = (None, p1, p2, both)
    acc = INFINITY
    n = 0
    for i in range(bit_length(max(k1, k2)) - 1, -1, -1):
        acc = double(acc)
        pick = ((k1 >> i) & 1) | ((k2 >> i) & 1) << 1
        if pick:
            acc = add(acc, table[pick])
        n += 1
        if n == _SLICE_BITS:
            n = 0
            yield
    return acc


def affine_steps(point):
    """(x, y) of a point other than infinity."""
    x, y, z = point
    if z == 0:
        raise ValueError("point at infinity")
    zi = yield from pow_steps(z, P - 2, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def on_curve(x, y):
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x + 3 * x - B) % P == 0


def decode_steps(data):
    """The point of an SEC 1 encoding (uncompressed 04‖X‖Y, or compressed 02/03‖X), checked
    to be on P-256 (not infinity): a key of another curve is refused here."""
    data = bytes(data)
    if len(data) == 65 and data[0] == 4:
        x = int.from_bytes(data[1:33], "big")
        y = int.from_bytes(data[33:], "big")
    elif len(data) == 33 and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        if x >= P:
            raise ValueError("not a P-256 point")
        # P = 3 mod 4: a square root of a is a^((P+1)/4)
        y = yield from pow_steps((x * x * x - 3 * x + B) % P, (P + 1) >> 2, P)
        if y & 1 != data[0] & 1:
            y = P - y
    else:
        raise ValueError("not a P-256 point encoding")
    if not on_curve(x, y):
        raise ValueError("not a P-256 point")
    return x, y, 1


def encode(x, y):
    """SEC 1 uncompressed encoding of an affine point."""
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
