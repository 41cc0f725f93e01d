"""The charger's own key and certificate (OCPP 1.6 security whitepaper, SignCertificate and
CertificateSigned): the P-256 key made on the device, the PKCS#10 request for it, and the
check of the chain the Central System sends back. Imported by chargepoint.model.identity for
the work and dropped after it (with chargepoint.crypto), so it costs no heap before.

Records (chargepoint.platform.store, written atomically):
  "idkey.new"  {"key": SEC 1 DER in base64, "pub": 04||X||Y in base64}: the key the last
               request was made for, until a certificate for it is taken. Made once and kept:
               a second request (a retry, a renewal before the answer) asks for the same key.
  "identity"   {"key", "cert": the leaf's DER in base64, "chain": DER in base64 of those
               after it, "not_after", "serial", "refused": text once a server refused it at
               the TLS handshake}: the pair the TLS layer presents (chargepoint.app).
The private key is in these records and nowhere else: no OCPP message, no log line, no
diagnostics upload carries it (the upload takes the event log, never the store's records).
"""
import binascii

from chargepoint.crypto import der
from chargepoint.ocpp import x509

PENDING = "idkey.new"
IDENTITY = "identity"
_P256 = "1.2.840.10045.3.1.7"


def sec1(d, pub):
    """The ECPrivateKey (RFC 5915) of `d` with its curve and public key: what mbedTLS loads
    (its DER, or PEM "EC PRIVATE KEY")."""
    return der.sequence(der.integer(1), der.element(der.OCTET_STRING, d.to_bytes(32, "big")),
                        der.element(0xA0, der.oid(_P256)),
                        der.element(0xA1, der.bit_string(pub)))


def _private(key_der):
    """d of a SEC 1 key written by sec1()."""
    key_der = bytes(key_der)
    _, a, end = der.tlv(key_der, 0, len(key_der), der.SEQUENCE)
    _, i = der.read_integer(key_der, a, end)
    _, oa, ob = der.tlv(key_der, i, end, der.OCTET_STRING)
    return int.from_bytes(key_der[oa:ob], "big")


def request_steps(store, common_name, organization):
    """The PEM of a request for the pending key (made and written first when there is none),
    subject CN `common_name`, O `organization` when not empty."""
    from chargepoint.crypto import csr, ecdsa, p256

    pending = store.read(PENDING)
    if pending:
        d = _private(binascii.a2b_base64(pending["key"]))
        pub = binascii.a2b_base64(pending["pub"])
        xy = int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big")
    else:
        d, xy = yield from ecdsa.keygen_steps()
        pub = p256.encode(xy[0], xy[1])
        store.write(PENDING, {"key": binascii.b2a_base64(sec1(d, pub)).decode().strip(),
                              "pub": binascii.b2a_base64(pub).decode().strip()})
    subject = [(csr.COMMON_NAME, common_name)]
    if organization:
        subject.append((csr.ORGANIZATION, organization))
    request = yield from csr.request_steps(d, xy, subject)
    return csr.pem(request)


def examine(store, wall, chain_pem, trusted):
    """(why the certificateChain `chain_pem` is refused, None), or (None, the check left):
    what can be told at once, without public-key arithmetic: its first certificate for the
    pending key, every one valid at `wall` (unix seconds), each named as issued by the next
    and the last by (or being) one of `trusted` (DER roots). The check left is a list of
    (certificate, its possible issuers) whose signatures signatures_steps() checks, with the
    DER blocks for adopt()."""
    from chargepoint.crypto import csr

    pending = store.read(PENDING)
    if not pending:
        return "no certificate was asked for", None
    try:
        blocks = x509.pem_blocks(chain_pem)
        if not blocks:
            return "no PEM certificate", None
        chain = [x509.Certificate(b) for b in blocks]
    except (ValueError, IndexError, UnicodeError) as e:
        return "certificate unreadable: %s" % e, None
    pub = binascii.a2b_base64(pending["pub"])
    leaf = chain[0]
    if bytes(leaf.public_key_info) != csr.public_key_info(
            (int.from_bytes(pub[1:33], "big"), int.from_bytes(pub[33:], "big"))):
        return "certificate serial %s is not for this charge point's key" % leaf.serial, None
    if wall is None:
        return "the clock is not set: the certificate's validity cannot be told", None
    for cert in chain:
        if not cert.not_before <= wall <= cert.not_after:
            return "certificate serial %s not valid now" % cert.serial, None
    roots = []
    for root_der in trusted:
        try:
            roots.append(x509.Certificate(root_der))
        except (ValueError, IndexError):
            continue
    pairs = []
    for i, cert in enumerate(chain):
        if i + 1 < len(chain):
            issuers = [chain[i + 1]] if chain[i + 1].subject == cert.issuer else []
        else:
            if i and [d for d in trusted if d == blocks[i]]:
                break  # the chain ends with a trusted root itself
            issuers = [r for r in roots if r.subject == cert.issuer
                       and r.not_before <= wall <= r.not_after]
        if not issuers:
            return ("certificate serial %s not issued by a trusted certificate" % cert.serial,
                    None)
        pairs.append((cert, issuers))
    return None, (pairs, blocks)


def signatures_steps(pairs):
    """Whether each certificate of `pairs` (examine()) is signed by one of its issuers."""
    from chargepoint.crypto import keys

    for cert, issuers in pairs:
        ok = False
        for issuer in issuers:
            try:
                key = yield from keys.public_key_steps(issuer.public_key_info)
                ok = yield from keys.verify_steps(key, cert.signature_algorithm, cert.signed,
                                                  cert.signature)
            except (ValueError, IndexError):
                ok = False
            if ok:
                break
        if not ok:
            return False
    return True


def adopt(store, blocks):
    """The chain checked (examine(), signatures_steps()) and its pending key become the
    identity the TLS layer presents from the next connection. False: the flash refused it."""
    pending = store.read(PENDING)
    if not pending:
        return False
    leaf = x509.Certificate(blocks[0])
    if not store.write(IDENTITY, {"key": pending["key"], "cert": _b64(blocks[0]),
                                  "chain": [_b64(b) for b in blocks[1:]],
                                  "not_after": leaf.not_after, "serial": leaf.serial}):
        return False
    store.remove(PENDING)
    return True


def _b64(data):
    return binascii.b2a_base64(data).decode().strip()


def not_after(cert_der):
    """The end of validity (unix seconds) of a certificate's DER, None when unreadable."""
    try:
        return x509.Certificate(cert_der).not_after
    except (ValueError, IndexError):
        return None
