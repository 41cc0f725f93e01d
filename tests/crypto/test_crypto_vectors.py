"""The device's public-key arithmetic (lib/chargepoint/crypto) on CPython, against the
known-answer cases made with `cryptography` (tools/cryptovectors.py) and against
`cryptography` itself: keys, signatures and a CSR made here checked there, and the other way."""
import asyncio
import hashlib
import json
import os

import pytest
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from conftest import ROOT
from chargepoint import crypto
from chargepoint.crypto import csr, der, ecdsa, keys, p256, rsa
from chargepoint.ocpp import x509
from mpy import crypto_probe

VECTORS = os.path.join(ROOT, "tests", "vectors", "crypto.json")


@pytest.fixture(scope="module")
def vectors():
    with open(VECTORS) as f:
        return json.load(f)


def _answers(data):
    groups = [crypto_probe.ecdsa_cases(data["ecdsa"]), crypto_probe.rfc6979_cases(data["rfc6979"]),
              crypto_probe.certificate_cases(data["certificates"]),
              crypto_probe.refused_key_cases(data["refused_keys"])]
    groups += [crypto_probe.rsa_cases(g) for g in data["rsa"]]
    return [answer for cases in groups for answer in cases]


def check_answer(group, case, want, got):
    """One answer of tests/mpy/crypto_probe.py against what the case wants."""
    if group == "refused key":
        assert isinstance(got, str) and got.startswith("refused: "), (case, got)
    else:
        assert got == want, (group, case, got)


def test_every_known_answer_case(vectors):
    answers = _answers(vectors)
    assert len(answers) > 70
    for answer in answers:
        check_answer(*answer)


def test_rfc6979_appendix_a25_nonces_give_its_signatures(vectors):
    d = vectors["rfc6979"]["key"]
    sig = crypto.run(ecdsa.sign_steps(d, hashlib.sha256(b"sample").digest()))
    assert ecdsa.decode_signature(sig) == (
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8)


def test_a_key_made_here_is_the_key_cryptography_derives():
    d, (x, y) = crypto.run(ecdsa.keygen_steps())
    theirs = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
    assert (theirs.x, theirs.y) == (x, y) and 0 < d < p256.N


def test_signatures_made_here_verify_there_and_the_other_way():
    key = ec.generate_private_key(ec.SECP256R1())
    d = key.private_numbers().private_value
    pub = key.public_key().public_numbers()
    for msg in (b"", b"x", os.urandom(1000)):
        digest = hashlib.sha256(msg).digest()
        mine = crypto.run(ecdsa.sign_steps(d, digest))
        key.public_key().verify(mine, msg, ec.ECDSA(hashes.SHA256()))
        theirs = key.sign(msg, ec.ECDSA(hashes.SHA256()))
        assert crypto.run(ecdsa.verify_steps((pub.x, pub.y, 1), digest, theirs))
        r, s = utils.decode_dss_signature(mine)
        with pytest.raises(InvalidSignature):
            key.public_key().verify(utils.encode_dss_signature(r, s ^ 1), msg,
                                    ec.ECDSA(hashes.SHA256()))


def test_a_csr_made_here_is_read_and_checked_by_cryptography():
    d, xy = crypto.run(ecdsa.keygen_steps())
    request = crypto.run(csr.request_steps(d, xy, [(csr.COMMON_NAME, "CP-0001"),
                                                   (csr.ORGANIZATION, "Example CPO")]))
    loaded = cx509.load_pem_x509_csr(csr.pem(request).encode())
    assert loaded.is_signature_valid
    assert loaded.subject.rfc4514_string() == "O=Example CPO,CN=CP-0001"
    assert loaded.public_key().public_numbers().x == xy[0]
    assert isinstance(loaded.signature_hash_algorithm, hashes.SHA256)


def test_compressed_points_decode_to_the_uncompressed_ones():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    full = key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)
    short = key.public_bytes(serialization.Encoding.X962,
                             serialization.PublicFormat.CompressedPoint)
    assert crypto.run(p256.decode_steps(short)) == crypto.run(p256.decode_steps(full))


def test_certificate_parts_are_the_ones_cryptography_reads(vectors):
    for case in vectors["certificates"]:
        theirs = cx509.load_der_x509_certificate(bytes.fromhex(case["cert"]))
        mine = x509.Certificate(bytes.fromhex(case["cert"]))
        assert bytes(mine.signed) == theirs.tbs_certificate_bytes
        assert bytes(mine.signature) == theirs.signature
        assert bytes(mine.public_key_info) == theirs.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_an_algorithm_of_another_hash_or_for_another_key_is_refused(vectors):
    rsa_key = crypto.run(keys.public_key_steps(bytes.fromhex(vectors["rsa"][0]["key"])))
    ec_sha384 = der.sequence(der.oid("1.2.840.10045.4.3.3"))
    rsa_sha1 = der.sequence(der.oid("1.2.840.113549.1.1.5"), b"\x05\x00")
    ec_sha256 = der.sequence(der.oid("1.2.840.10045.4.3.2"))
    for alg in (ec_sha384, rsa_sha1, ec_sha256):
        with pytest.raises(ValueError):
            crypto.run(keys.verify_steps(rsa_key, alg, b"m", b"s"))


def test_der_writer_matches_cryptography():
    assert der.oid("1.2.840.10045.3.1.7") == bytes.fromhex("06082a8648ce3d030107")
    assert der.oid("2.5.29.19") == bytes.fromhex("0603551d13")
    for n in (0, 1, 0x7F, 0x80, 0xFF, 0x100, p256.N):
        r = utils.encode_dss_signature(n, 1)
        assert der.sequence(der.integer(n), der.integer(1)) == r
    long = der.element(der.OCTET_STRING, bytes(300))
    assert long[:4] == b"\x04\x82\x01\x2c" and der.tlv(long, 0, len(long)) == (4, 4, 304)
    with pytest.raises(ValueError):  # a long form where the short one fits
        der.tlv(b"\x04\x81\x05abcde", 0, 8)


def test_rsa_keys_out_of_range_are_refused(vectors):
    for group in vectors["rsa"]:
        kind, key = crypto.run(keys.public_key_steps(bytes.fromhex(group["key"])))
        assert kind == "RSA" and key[2] == group["bits"]
    with pytest.raises(ValueError):  # exponent 1
        rsa.public_key(der.sequence(der.integer((1 << 2047) + 1), der.integer(1)))


def test_every_long_operation_comes_in_slices():
    """The bound on the work of one slice, in operations (the time of each is the bench's):
    a P-256 multiplication yields every 2 bits, an inversion every 8 products, an RSA check
    after every product and every reduction."""
    d, xy = crypto.run(ecdsa.keygen_steps())
    digest = hashlib.sha256(b"m").digest()
    sig = crypto.run(ecdsa.sign_steps(d, digest))
    assert sum(1 for _ in ecdsa.verify_steps((xy[0], xy[1], 1), digest, sig)) >= 128 + 32
    assert sum(1 for _ in ecdsa.sign_steps(d, digest)) >= 128 + 32 + 32
    assert sum(1 for _ in crypto.pow_steps(3, p256.P - 2, p256.P)) >= 40


def test_finish_lets_the_loop_run_between_slices():
    d, xy = crypto.run(ecdsa.keygen_steps())
    digest = hashlib.sha256(b"m").digest()
    ticks = []

    async def other():
        while True:
            ticks.append(1)
            await asyncio.sleep(0)

    async def main():
        task = asyncio.create_task(other())
        sig = await crypto.finish(ecdsa.sign_steps(d, digest))
        task.cancel()
        return sig

    sig = asyncio.run(main())
    assert crypto.run(ecdsa.verify_steps((xy[0], xy[1], 1), digest, sig)) and len(ticks) > 100


def test_work_steps_to_a_result_or_an_error():
    work = crypto.Work(p256.decode_steps(b"\x04" + bytes(64)))
    while not work.step():
        pass
    assert work.result is None and isinstance(work.error, ValueError)
    work = crypto.Work(crypto.pow_steps(3, 5, 7))
    while not work.step():
        pass
    assert work.result == 3 ** 5 % 7 and work.error is None
