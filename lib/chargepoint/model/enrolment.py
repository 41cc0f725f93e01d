"""The charger's own key and certificate (OCPP 1.6 security whitepaper, SignCertificate and
CertificateSigned): the P-256 key made on the device, the PKCS#10 request for it, and the
check of the chain the Central System sends back; and the work of the identity feature
(chargepoint.model.identity: its state stays there) on the loop: the renewal check, the
request and the chain check run in slices, CertificateSigned answered, the fallback of the
link recorded. Imported by the feature when there is work and dropped after it (drop(), with
chargepoint.crypto), so it costs no heap before.

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

from micropython import const

from chargepoint.crypto import der
from chargepoint.model import unload
from chargepoint.ocpp import x509

PENDING = "idkey.new"
IDENTITY = "identity"
_P256 = "1.2.840.10045.3.1.7"
_EVENT = "InvalidChargePointCertificate"
_DAY_MS = const(86400000)
_SLICE_MS = const(4)  # slices started per loop for up to this long (as a signed update's)
_SLICES = const(32)


# -- the identity feature's work (chargepoint.model.identity: `identity` is the feature) ---

def signed(identity, chain_pem):
    """CertificateSigned.conf for `chain_pem`: what can be told at once (examine()); the
    signatures are checked after, in slices."""
    cp = identity.cp
    if identity.work is not None:  # a request being made, or a chain checked: one at a time
        cp.security.record(_EVENT, "CertificateSigned while a %s is worked on" % identity.job)
        return {"status": "Rejected"}
    why, left = examine(cp.store, cp.clock.wall(), chain_pem, _trusted(identity))
    if why is not None:
        cp.security.record(_EVENT, why)
        return {"status": "Rejected"}
    from chargepoint import crypto

    identity.job = "chain"
    identity.blocks = left[1]
    identity.work = crypto.Work(signatures_steps(left[0]))
    return {"status": "Accepted"}


def _trusted(identity):
    from chargepoint.model import certificates

    store = identity.cp.store
    found = certificates.roots(store) + certificates.roots(store, "ManufacturerRootCertificate")
    unload("chargepoint.model", "certificates")
    if identity.ca_certificates is not None:
        found += identity.ca_certificates()
    return found


def tick(identity):
    """The feature's tick when it has something to do (Identity.tick says when)."""
    cp = identity.cp
    status = cp.transport.status
    if status.get("fallback") and status.get("connects") and not identity.fallback_seen:
        _refused(identity, status["fallback"])
    if identity.work is not None:
        _slices(identity)
        return
    if cp.registration != "Accepted":
        return
    if identity.check_at is None or cp.clock.since(identity.check_at) >= 0:
        identity.check_at = cp.clock.after(_DAY_MS)
        if _renewal_due(identity):
            # a charger provisioned by claim renews through the same API (AWS IoT fleet
            # provisioning) on its link; any other asks the Central System (SignCertificate)
            renew = identity.renew
            if renew is not None and renew():
                identity.say("renewing the certificate through AWS IoT fleet provisioning")
            else:
                identity.wanted = "renewal"
    if identity.wanted is not None and not identity.asking:
        identity.say("making a certificate request (%s)" % identity.wanted)
        identity.wanted = None
        from chargepoint import crypto

        identity.job = "request"
        identity.work = crypto.Work(request_steps(cp.store, identity.common_name,
                                                  cp.config.get("CpoName")))


def _slices(identity):
    work = identity.work
    cp = identity.cp
    clock = cp.clock
    start = clock.ticks_ms()
    for _ in range(_SLICES):
        if work.step():
            break
        if clock.since(start) >= _SLICE_MS:
            return
    else:
        return
    identity.work = None
    job = identity.job
    identity.job = None
    if job == "request":
        if work.error is not None:
            identity.say("certificate request not made: %s" % work.error)
            return
        identity.asking = True
        cp.call("SignCertificate", {"csr": work.result}, identity.answered,
                identity.unanswered)
        return
    blocks = identity.blocks
    identity.blocks = None
    if work.result is not True:
        cp.security.record(_EVENT, "certificate chain: a signature does not check out%s"
                           % (": %s" % work.error if work.error else ""))
        return
    if adopt(cp.store, blocks):
        identity.say("new charge point certificate stored: presented from the next connection")
        cp.security.record("ReconfigurationOfSecurityParameters",
                           "CertificateSigned: new charge point certificate")


def _refused(identity, why):
    """The TLS link fell back to config.json's certificate and connected with it: ours
    was refused by the server; the next boots do not present it (chargepoint.app)."""
    identity.fallback_seen = True
    store = identity.cp.store
    record = store.read(IDENTITY)
    if record and not record.get("refused"):
        record["refused"] = why
        store.write(IDENTITY, record)
    identity.cp.security.record(_EVENT, "serial %s refused by the server: %s; config.json's "
                                "certificate in use" % ((record or {}).get("serial"), why))


def _renewal_due(identity):
    cp = identity.cp
    days = cp.config.get("CertificateRenewalDays")
    wall = cp.clock.wall()
    if days <= 0 or wall is None:
        return False
    record = cp.store.read(IDENTITY)
    end = None
    if record and not record.get("refused"):
        end = record.get("not_after")
    elif identity.client_certificate is not None:
        der_ = identity.client_certificate()
        if der_:
            end = not_after(der_)
    return end is not None and end - wall <= days * 86400


def drop():
    """Give back the heap of this module and of the work's."""
    for name in ("der", "p256", "ecdsa", "rsa", "keys", "csr"):
        unload("chargepoint.crypto", name)
    unload("chargepoint", "crypto")
    unload("chargepoint.model", "enrolment")
    unload("chargepoint.model", "certificates")
    unload("chargepoint.ocpp", "x509")


# -- the key, the request, the chain ----------------------------------------------------------


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
