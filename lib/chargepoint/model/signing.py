"""Signed firmware (OCPP 1.6 security whitepaper, SignedUpdateFirmware): the signing
certificate against the installed ManufacturerRootCertificates, and the package's signature
against the signing certificate's key. Imported by chargepoint.model.firmware for a signed
update and dropped after it (with chargepoint.crypto), so it costs no heap before.

What is signed: the whole package file as downloaded (tools/fwpack.py's header line and
payload), its SHA-256 (the updater's `digest`). An RSA key signs with RSASSA-PKCS1-v1_5, an
EC key (P-256) with ECDSA, both over SHA-256; `signature` is base64 of the signature (DER
for ECDSA), as the whitepaper has it.

Two steps, as the request must be answered at once and a signature check takes up to ~0.5 s
on an ESP32 (README "Public-key arithmetic"): check() says at once what can be told from
the certificate's fields (a reason for InvalidCertificate); certificate_steps() then checks
its signature by the root in slices, package_steps() the package's after the download.
"""
import binascii

from chargepoint.model import certificates
from chargepoint.ocpp import x509

MANUFACTURER = "ManufacturerRootCertificate"


def _certificate(pem):
    blocks = x509.pem_blocks(pem)
    if len(blocks) != 1:
        raise ValueError("%d certificates where one belongs" % len(blocks))
    return x509.Certificate(blocks[0])


def _valid(cert, wall):
    return cert.not_before <= wall <= cert.not_after


def _issuers(store, cert, wall):
    """The installed manufacturer roots that may have issued `cert`, valid at `wall`."""
    found = []
    for der in certificates.roots(store, MANUFACTURER):
        try:
            root = x509.Certificate(der)
        except (ValueError, IndexError):
            continue
        if root.subject == cert.issuer and _valid(root, wall):
            found.append(root)
    return found


def check(store, wall, pem):
    """Why the signing certificate `pem` is refused at once, or None. `wall`: unix seconds
    now (None: the clock is not set, and validity cannot be told)."""
    from chargepoint.crypto import keys

    try:
        cert = _certificate(pem)
        keys.signature_kind(cert.signature_algorithm)  # one we can check
    except (ValueError, IndexError, UnicodeError) as e:
        return "signing certificate unreadable: %s" % e
    if wall is None:
        return "the clock is not set: the certificate's validity cannot be told"
    if not _valid(cert, wall):
        return "signing certificate serial %s not valid now" % cert.serial
    if cert.key_type is None:
        return "signing certificate serial %s: a key of no kind taken" % cert.serial
    if not _issuers(store, cert, wall):
        return ("signing certificate serial %s not issued by an installed %s"
                % (cert.serial, MANUFACTURER))
    return None


def certificate_steps(store, wall, pem):
    """Whether an installed manufacturer root signed the certificate `pem` (in slices)."""
    from chargepoint.crypto import keys

    cert = _certificate(pem)
    for root in _issuers(store, cert, wall):
        try:
            key = yield from keys.public_key_steps(root.public_key_info)
            if (yield from keys.verify_steps(key, cert.signature_algorithm, cert.signed,
                                             cert.signature)):
                return True
        except (ValueError, IndexError):
            continue  # a root whose key or algorithm we cannot use
    return False


def package_steps(pem, signature, digest):
    """Whether `signature` (base64) is the signing certificate's over the package whose
    SHA-256 is `digest` (in slices)."""
    from chargepoint.crypto import ecdsa, keys, rsa

    try:
        sig = binascii.a2b_base64(signature)
    except ValueError:
        return False
    cert = _certificate(pem)
    kind, key = yield from keys.public_key_steps(cert.public_key_info)
    if kind == "EC":
        return (yield from ecdsa.verify_steps(key, digest, sig))
    return (yield from rsa.verify_pkcs1_steps(key, digest, sig))


def installed(store):
    """Whether a ManufacturerRootCertificate is installed (then unsigned updates may be
    refused: SignedFirmwareOnly)."""
    for entry in store.read(certificates.CERT_INDEX, ()):
        if entry["type"] == MANUFACTURER:
            return True
    return False
