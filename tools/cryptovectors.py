"""Known-answer cases for the device's public-key arithmetic (lib/chargepoint/crypto), made
with `cryptography`: tests/vectors/crypto.json, read by tests/crypto/ on CPython and by
tests/mpy/crypto_probe.py on the twin.

    python3 -m tools.cryptovectors [--out tests/vectors/crypto.json]

Keys are fresh at each run (the file is rewritten whole); RFC 6979's own P-256/SHA-256 cases
(appendix A.2.5) are fixed. Each case says what the device must answer: valid, or refused.
Wycheproof-style: a good signature next to the same one broken in one way each (r or s zero
or past the order, DER lengths, padding, hash, truncation, another key, another curve).
"""
import argparse
import datetime
import hashlib
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "vectors", "crypto.json")
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
# RFC 6979 A.2.5: private key x, and for SHA-256 each message's signature (r, s)
RFC6979_KEY = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
RFC6979 = (
    ("sample", 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
     0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8),
    ("test", 0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
     0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083),
)


def spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def der_int(n, pad=b""):
    body = pad + n.to_bytes(n.bit_length() // 8 + 1, "big")
    if len(body) > 1 and body[0] == 0 and not body[1] & 0x80 and not pad:
        body = body[1:]
    return b"\x02" + bytes([len(body)]) + body


def der_sig(r, s, r_pad=b""):
    body = der_int(r, r_pad) + der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def ecdsa_cases():
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    msg = b"firmware package bytes"
    good = key.sign(msg, ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(good)
    cases = [("valid", msg, good, True),
             ("valid, another message", b"", key.sign(b"", ec.ECDSA(hashes.SHA256())), True),
             ("high s (n - s) is accepted", msg, der_sig(r, N - s), True),
             ("message altered", msg + b".", good, False),
             ("another key's signature", msg, other.sign(msg, ec.ECDSA(hashes.SHA256())), False),
             ("r = 0", msg, der_sig(0, s), False),
             ("s = 0", msg, der_sig(r, 0), False),
             ("r = n", msg, der_sig(N, s), False),
             ("s = n", msg, der_sig(r, N), False),
             ("r + n", msg, der_sig(r + N, s), False),
             ("r non-minimal DER (leading 00)", msg, der_sig(r, s, b"\x00"), False),
             ("DER length one too long", msg, good[:1] + bytes([good[1] + 1]) + good[2:], False),
             ("DER length one too short", msg, good[:1] + bytes([good[1] - 1]) + good[2:], False),
             ("byte after the DER", msg, good + b"\x00", False),
             ("truncated", msg, good[:-1], False),
             ("empty", msg, b"", False),
             ("raw r||s, not DER", msg, r.to_bytes(32, "big") + s.to_bytes(32, "big"), False),
             ("signed with SHA-384", msg, key.sign(msg, ec.ECDSA(hashes.SHA384())), False)]
    return {"key": spki(key).hex(),
            "cases": [{"case": c, "msg": m.hex(), "sig": g.hex(), "valid": v}
                      for c, m, g, v in cases]}


def refused_keys():
    """SubjectPublicKeyInfos the device must refuse to take as a key."""
    p256 = spki(ec.generate_private_key(ec.SECP256R1()))
    p384 = spki(ec.generate_private_key(ec.SECP384R1()))
    # a P-384 point under P-256's OID (the SPKI rebuilt with the curve OID swapped)
    point384 = p384[-97:]
    alg = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
    bits = b"\x03" + bytes([len(point384) + 1]) + b"\x00" + point384
    body = alg + bits
    p384_as_p256 = b"\x30" + bytes([len(body)]) + body
    off_curve = bytearray(p256)
    off_curve[-1] ^= 1
    rsa1024 = rsa.generate_private_key(65537, 1024)
    return [("P-384 key", p384.hex()),
            ("P-384 point presented as P-256", p384_as_p256.hex()),
            ("point not on the curve", bytes(off_curve).hex()),
            ("RSA-1024 (below 2048 bits)", spki(rsa1024).hex()),
            ("truncated", p256[:-1].hex())]


def rfc6979_cases():
    key = ec.derive_private_key(RFC6979_KEY, ec.SECP256R1())
    out = []
    for msg, r, s in RFC6979:
        made = key.sign(msg.encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        if utils.decode_dss_signature(made) != (r, s):
            raise SystemExit("cryptography disagrees with RFC 6979 A.2.5")
        out.append({"msg": msg.encode().hex(), "sig": made.hex()})
    fresh = ec.generate_private_key(ec.SECP256R1())
    msg = b"deterministic"
    made = fresh.sign(msg, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    out.append({"key": fresh.private_numbers().private_value, "msg": msg.hex(), "sig": made.hex()})
    return {"key": RFC6979_KEY, "cases": out}


def rsa_cases(size):
    key = rsa.generate_private_key(65537, size)
    msg = b"firmware package bytes"
    v15 = key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    pss32 = key.sign(msg, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    pssmax = key.sign(msg, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
                      hashes.SHA256())
    n = key.public_key().public_numbers().n
    flipped = bytearray(v15)
    flipped[len(flipped) // 2] ^= 0x10
    cases = [("pkcs1", "valid", msg, v15, True),
             ("pss", "valid, salt 32", msg, pss32, True),
             ("pss", "valid, longest salt", msg, pssmax, True),
             ("pkcs1", "message altered", msg + b".", v15, False),
             ("pkcs1", "a bit flipped", msg, bytes(flipped), False),
             ("pkcs1", "PSS signature as PKCS#1 v1.5", msg, pss32, False),
             ("pss", "PKCS#1 v1.5 signature as PSS", msg, v15, False),
             ("pss", "message altered", msg + b".", pss32, False),
             ("pkcs1", "signed with SHA-1", msg, key.sign(msg, padding.PKCS1v15(), hashes.SHA1()),
              False),
             ("pkcs1", "signed with SHA-384", msg,
              key.sign(msg, padding.PKCS1v15(), hashes.SHA384()), False),
             ("pss", "MGF1 with SHA-1", msg,
              key.sign(msg, padding.PSS(padding.MGF1(hashes.SHA1()), 32), hashes.SHA256()), False),
             ("pkcs1", "truncated", msg, v15[:-1], False),
             ("pkcs1", "a leading zero byte more", msg, b"\x00" + v15, False),
             ("pkcs1", "s = n", msg, n.to_bytes(size // 8, "big"), False),
             ("pkcs1", "empty", msg, b"", False)]
    return {"bits": size, "key": spki(key).hex(),
            "cases": [{"scheme": k, "case": c, "msg": m.hex(), "sig": g.hex(), "valid": v}
                      for k, c, m, g, v in cases]}


def _cert(subject, issuer_name, key, issuer_key, ca, sign):
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return sign(b, issuer_key).public_bytes(serialization.Encoding.DER)


def certificate_cases():
    """Leaf certificates and the root that may have signed them: each algorithm the device
    takes, and the leaf checked against another root (False)."""
    sha = hashes.SHA256()
    pkcs1 = lambda b, k: b.sign(k, sha)  # noqa: E731
    pss = lambda b, k: b.sign(k, sha, rsa_padding=padding.PSS(  # noqa: E731
        padding.MGF1(sha), padding.PSS.DIGEST_LENGTH))
    roots = {"RSA-2048": rsa.generate_private_key(65537, 2048),
             "RSA-3072": rsa.generate_private_key(65537, 3072),
             "P-256": ec.generate_private_key(ec.SECP256R1())}
    leaf = ec.generate_private_key(ec.SECP256R1())
    out = []
    for name, root_key, sign in (("RSA-2048", roots["RSA-2048"], pkcs1),
                                 ("RSA-2048 PSS", roots["RSA-2048"], pss),
                                 ("RSA-3072", roots["RSA-3072"], pkcs1),
                                 ("P-256", roots["P-256"], pkcs1)):
        root = _cert("root " + name, "root " + name, root_key, root_key, True, sign)
        cert = _cert("signer", "root " + name, leaf, root_key, False, sign)
        out.append({"case": name, "root": root.hex(), "cert": cert.hex(), "valid": True})
    stranger = ec.generate_private_key(ec.SECP256R1())
    other = _cert("root P-256", "root P-256", stranger, stranger, True, pkcs1)
    out.append({"case": "another root's key", "root": other.hex(), "cert": out[-1]["cert"],
                "valid": False})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=OUT, help="the file to write (default: %(default)s)")
    a = p.parse_args(argv)
    data = {"ecdsa": ecdsa_cases(), "refused_keys": refused_keys(), "rfc6979": rfc6979_cases(),
            "rsa": [rsa_cases(bits) for bits in (2048, 3072, 4096)],
            "certificates": certificate_cases(),
            "sha256": {"msg": b"abc".hex(), "digest": hashlib.sha256(b"abc").hexdigest()}}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(data, f, indent=0)
        f.write("\n")
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
