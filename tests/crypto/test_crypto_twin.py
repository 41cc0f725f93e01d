"""The device's public-key arithmetic on the twin (MicroPython, the firmware frozen in): the
known-answer cases of tests/vectors/crypto.json answered as on CPython, and a key, a signature
and a CSR made there checked by `cryptography` (tests/mpy/crypto_probe.py)."""
import json
import os
import subprocess

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import ROOT
from test_crypto_vectors import VECTORS, check_answer
from tools import twin

PROBE = os.path.join(ROOT, "tests", "mpy", "crypto_probe.py")


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    r = subprocess.run([twin.ensure(), "-X", "heapsize=400000", PROBE, VECTORS],
                       cwd=str(tmp_path_factory.mktemp("crypto")), capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, MICROPYPATH=".frozen"))
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.strip().splitlines()]


def test_the_twin_answers_every_known_answer_case(probe):
    answers = [a for a in probe if "group" in a]
    assert len(answers) > 70
    for a in answers:
        check_answer(a["group"], a["case"], a["want"], a["got"])


def test_a_key_signature_and_csr_made_on_the_twin_check_out_in_cryptography(probe):
    made = [a["made"] for a in probe if "made" in a][0]
    key = ec.derive_private_key(made["d"], ec.SECP256R1())
    assert (key.public_key().public_numbers().x, key.public_key().public_numbers().y) == (
        made["x"], made["y"])
    key.public_key().verify(bytes.fromhex(made["sig"]), bytes.fromhex(made["msg"]),
                            ec.ECDSA(hashes.SHA256()))
    request = cx509.load_pem_x509_csr(made["csr"].encode())
    assert request.is_signature_valid
    assert request.public_key().public_numbers().x == made["x"]


def test_finish_on_the_twin_lets_the_asyncio_loop_run_between_slices(probe):
    finish = [a["finish"] for a in probe if "finish" in a][0]
    assert finish["verified"] and finish["turns"] > 100  # a P-256 signature: ~230 slices
