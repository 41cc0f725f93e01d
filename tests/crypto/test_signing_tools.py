"""The development tools of signed firmware: tools.certs --firmware-signing makes a
manufacturer root and a signing certificate it issued; tools.fwpack signs with RSA
PKCS#1 v1.5 or P-256 ECDSA (SHA-256) over the whole package, and what it signs the device's
checks (chargepoint.model.signing) take."""
import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from chargepoint import crypto
from chargepoint.model import signing
from tools import certs, fwpack


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_certs_makes_a_root_and_a_signing_certificate_it_issued(tmp_path, kind, capsys):
    assert certs.main(["--dir", str(tmp_path), "--firmware-signing", kind]) == 0
    root = x509.load_pem_x509_certificate((tmp_path / "mfr-root.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "fw-signing.pem").read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(root)
    data = b'{"format":1}\npayload'
    signature = base64.b64decode(fwpack.sign(data, (tmp_path / "fw-signing.key").read_bytes()))
    if kind == "ec":
        cert.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        cert.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    pem = (tmp_path / "fw-signing.pem").read_text()
    digest = hashlib.sha256(data).digest()
    assert crypto.run(signing.package_steps(pem, base64.b64encode(signature), digest))
    assert not crypto.run(signing.package_steps(pem, base64.b64encode(signature),
                                                hashlib.sha256(data + b"x").digest()))


def test_fwpack_signs_only_with_a_key_the_charger_checks(tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with pytest.raises(fwpack.PackError):
        fwpack.sign(b"x", pem)
    with pytest.raises(SystemExit):  # the key without its certificate
        fwpack.main(["--out", str(tmp_path / "p"), "--version", "1", "--sign-key", "k.pem"])
