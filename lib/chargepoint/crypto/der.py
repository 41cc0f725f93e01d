"""DER as far as keys, signatures and a certificate request need it: a strict reader (the
shortest lengths, minimal non-negative INTEGERs) and a writer, PEM both ways."""
import binascii

from micropython import const

INTEGER = const(0x02)
BIT_STRING = const(0x03)
OCTET_STRING = const(0x04)
NULL = const(0x05)
OID = const(0x06)
UTF8_STRING = const(0x0C)
PRINTABLE_STRING = const(0x13)
SEQUENCE = const(0x30)
SET = const(0x31)


def tlv(der, i, end, tag=None):
    """(tag, first byte of the value, end of the value) of the element at der[i]; ValueError
    when it runs past `end`, is not `tag`, or its length is not in the shortest form."""
    if i + 2 > end:
        raise ValueError("DER truncated")
    t = der[i]
    n = der[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 3 or i + k > end or der[i] == 0:
            raise ValueError("DER length")
        n = 0
        for _ in range(k):
            n = n << 8 | der[i]
            i += 1
        if n < 0x80:
            raise ValueError("DER length")
    if i + n > end:
        raise ValueError("DER truncated")
    if tag is not None and t != tag:
        raise ValueError("DER: tag 0x%02x where 0x%02x belongs" % (t, tag))
    return t, i, i + n


def integer_at(der, a, b):
    """The non-negative INTEGER whose value is der[a:b], refused when not minimal."""
    if b == a or der[a] & 0x80:
        raise ValueError("DER integer not positive")
    if b - a > 1 and der[a] == 0 and not der[a + 1] & 0x80:
        raise ValueError("DER integer not minimal")
    return int.from_bytes(bytes(der[a:b]), "big")


def read_integer(der, i, end):
    """(value, end) of the INTEGER at der[i]."""
    _, a, b = tlv(der, i, end, INTEGER)
    return integer_at(der, a, b), b


# -- writing ------------------------------------------------------------------------------


def element(tag, body):
    n = len(body)
    if n < 0x80:
        head = bytes((tag, n))
    elif n < 0x100:
        head = bytes((tag, 0x81, n))
    else:
        head = bytes((tag, 0x82, n >> 8, n & 0xFF))
    return head + body


def integer(n):
    """A non-negative INTEGER, minimal."""
    body = n.to_bytes((len(hex(n)) - 2) // 2 + 1, "big")  # a byte more than its digits fill
    if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
        body = body[1:]
    return element(INTEGER, body)


def sequence(*parts):
    return element(SEQUENCE, b"".join(parts))


def oid(text):
    """The DER of an OBJECT IDENTIFIER given as "1.2.840.10045.2.1"."""
    arcs = [int(a) for a in text.split(".")]
    out = [arcs[0] * 40 + arcs[1]]
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        chunk.reverse()
        out += chunk
    return element(OID, bytes(out))


def bit_string(data):
    return element(BIT_STRING, b"\x00" + data)


def pem(der, label):
    text = binascii.b2a_base64(der).replace(b"\n", b"")
    lines = [b"-----BEGIN " + label + b"-----"]
    for i in range(0, len(text), 64):
        lines.append(text[i:i + 64])
    lines.append(b"-----END " + label + b"-----\n")
    return b"\n".join(lines).decode()


def unpem(text, label):
    """The DER of the first "-----BEGIN <label>-----" block of `text` (str or bytes)."""
    if isinstance(text, str):
        text = text.encode()
    begin = b"-----BEGIN " + label + b"-----"
    a = text.find(begin)
    b = text.find(b"-----END " + label + b"-----", a)
    if a < 0 or b < 0:
        raise ValueError("no PEM block " + label.decode())
    try:
        return binascii.a2b_base64(text[a + len(begin):b])
    except ValueError:
        raise ValueError("PEM block is not base64")
