"""Certificate management of the OCPP 1.6 security extensions: InstallCertificate,
GetInstalledCertificateIds, DeleteCertificate. Imported by chargepoint.model.security when
one of them arrives, so it costs no RAM before.

Installed certificates live in the store next to its other records: "certs", the index
([{"n", "type", "hash": CertificateHashData}], read when needed), and "cert.<n>", each one's
DER in base64. An install writes the certificate before the index, a delete the index before
removing the certificate: a power cut leaves at worst an unlisted record, overwritten by a
later install. The Central System roots are added to the TLS context's CA (config.json's
`mqtt.ca`) when the transport is built: from the next boot on (see README).

What is accepted: one PEM certificate of a self-signed CA (basicConstraints cA, or version 1)
with an RSA or EC key (what mbedTLS can use), valid now when the clock is known. The hash
data is SHA256 over the issuer's Name DER and the issuer's (its own) subjectPublicKey bits,
and the serial in hexadecimal without leading zeroes (whitepaper edition 3).

config.json's CA (the "ca_certificates" service, `cp.security.ca_certificates`) is listed as CentralSystemRoot
certificates too, one entry per self-signed root in the file, and cannot be deleted over
OCPP (Failed): it is the provisioned trust anchor and the way back. DeleteCertificate also
refuses (Failed) to remove the last CentralSystemRootCertificate listed.
"""
import binascii

from chargepoint.ocpp import x509

_CENTRAL = "CentralSystemRootCertificate"
CERT_INDEX = "certs"  # [{"n", "type", "hash": CertificateHashData}] of installed certificates
CERT_RECORD = "cert.%d"  # certificate n: its DER in base64


def roots(store, kind=_CENTRAL):
    """The DER of each certificate of `kind` installed over OCPP: app.py adds the Central
    System roots to the TLS context's CA at boot; ManufacturerRootCertificate ones are there
    for firmware signature checks."""
    found = []
    for entry in store.read(CERT_INDEX, ()):
        if entry["type"] == kind:
            text = store.read(CERT_RECORD % entry["n"])
            if text:
                found.append(binascii.a2b_base64(text))
    return found


def _status(status):
    return {"status": status}


def install_certificate(cp, p):
    kind = p["certificateType"]
    try:
        blocks = x509.pem_blocks(p["certificate"])
        if len(blocks) != 1:
            return _status("Rejected")  # one certificate per InstallCertificate
        der = blocks[0]
        cert = x509.Certificate(der)
    except (ValueError, IndexError, UnicodeError):
        return _status("Rejected")
    if not _fit(cp, cert):
        return _status("Rejected")
    ids = cert.hash_data()
    index = cp.store.read(CERT_INDEX, [])
    for entry in index:
        if entry["type"] == kind and same(entry["hash"], ids):
            return _status("Accepted")  # already installed
    if kind == _CENTRAL:
        for known in factory_ids(cp):
            if same(known, ids):
                return _status("Accepted")  # config.json's: trusted already
    if len(index) >= cp.config.get("CertificateStoreMaxLength"):
        return _status("Rejected")
    n = 1
    for entry in index:
        n = max(n, entry["n"] + 1)
    index.append({"n": n, "type": kind, "hash": ids})
    try:
        cp.store.write(CERT_RECORD % n, binascii.b2a_base64(der).decode())
        cp.store.write(CERT_INDEX, index)
    except OSError:  # flash full or failing
        return _status("Failed")
    cp.security.record("ReconfigurationOfSecurityParameters",
                       "InstallCertificate %s serial %s" % (kind, cert.serial))
    return _status("Accepted")


def _fit(cp, cert):
    if not cert.ca or not cert.self_issued() or cert.key_type is None:
        return False
    wall = cp.clock.wall()
    return wall is None or cert.not_before <= wall <= cert.not_after


def installed_ids(cp, p):
    kind = p["certificateType"]
    found = factory_ids(cp) if kind == _CENTRAL else []
    for entry in cp.store.read(CERT_INDEX, ()):
        if entry["type"] == kind:
            found.append(entry["hash"])
    if not found:
        return _status("NotFound")
    return {"status": "Accepted", "certificateHashData": found}


def delete_certificate(cp, p):
    wanted = p["certificateHashData"]
    index = cp.store.read(CERT_INDEX, [])
    for entry in index:
        if same(entry["hash"], wanted):
            break
    else:
        for known in factory_ids(cp):
            if same(known, wanted):
                return _status("Failed")  # config.json's CA is not ours to delete
        return _status("NotFound")
    kind = entry["type"]
    if kind == _CENTRAL and not factory_ids(cp):
        if len([e for e in index if e["type"] == kind]) == 1:
            return _status("Failed")  # the last root the server could be checked against
    index.remove(entry)
    try:
        cp.store.write(CERT_INDEX, index)
    except OSError:
        return _status("Failed")
    cp.store.remove(CERT_RECORD % entry["n"])
    cp.security.record("ReconfigurationOfSecurityParameters",
                       "DeleteCertificate %s serial %s" % (kind, entry["hash"]["serialNumber"]))
    return _status("Accepted")


def factory_ids(cp):
    """CertificateHashData of each self-signed root in config.json's CA file."""
    source = cp.security.ca_certificates
    found = []
    if source is None:
        return found
    for der in source():
        try:
            cert = x509.Certificate(der)
        except (ValueError, IndexError):
            continue
        if cert.self_issued():
            found.append(cert.hash_data())
    return found


def same(a, b):
    """Whether two CertificateHashData name the same certificate: hex compared without case,
    the serial also without leading zeroes."""
    if a["hashAlgorithm"] != b["hashAlgorithm"]:
        return False
    for key in ("issuerNameHash", "issuerKeyHash"):
        if a[key].lower() != b[key].lower():
            return False
    return (a["serialNumber"].lower().lstrip("0") or "0") == \
        (b["serialNumber"].lower().lstrip("0") or "0")
