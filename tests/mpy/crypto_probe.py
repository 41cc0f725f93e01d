"""The known-answer cases of tests/vectors/crypto.json checked by the device's public-key
arithmetic (chargepoint.crypto), on MicroPython (the twin) or CPython: tests/crypto/.

micropython crypto_probe.py VECTORS [timing]
Prints one JSON object per line: each case's answer ({"group", "case", "want", "got"}), then
what was made here for the other side to check ({"made": ...}: a key, signatures, a CSR),
crypto.finish() beside another asyncio task ({"finish": ...}), then with "timing" the slices'
timing ({"timing": ...}: microseconds, each operation's total and longest slice) and the heap a
check holds ({"heap": ...})."""
import binascii
import hashlib
import json
import sys
import time

from chargepoint import crypto
from chargepoint.crypto import csr, der, ecdsa, keys, p256, rsa
from chargepoint.ocpp import x509


def unhex(text):
    return binascii.unhexlify(text)


def answer(steps):
    try:
        return crypto.run(steps)
    except (ValueError, IndexError) as e:
        return "refused: %s" % e


def ecdsa_cases(group):
    kind, point = crypto.run(keys.public_key_steps(unhex(group["key"])))
    for c in group["cases"]:
        digest = hashlib.sha256(unhex(c["msg"])).digest()
        yield "ecdsa", c["case"], c["valid"], answer(ecdsa.verify_steps(point, digest,
                                                                        unhex(c["sig"])))


def rsa_cases(group):
    _, key = crypto.run(keys.public_key_steps(unhex(group["key"])))
    for c in group["cases"]:
        digest = hashlib.sha256(unhex(c["msg"])).digest()
        sig = unhex(c["sig"])
        if c["scheme"] == "pss":
            steps = rsa.verify_pss_steps(key, digest, sig)
        else:
            steps = rsa.verify_pkcs1_steps(key, digest, sig)
        yield "rsa-%d" % group["bits"], c["case"], c["valid"], answer(steps)


def rfc6979_cases(group):
    for c in group["cases"]:
        d = c.get("key", group["key"])
        digest = hashlib.sha256(unhex(c["msg"])).digest()
        made = crypto.run(ecdsa.sign_steps(d, digest))
        yield "rfc6979", c["msg"], c["sig"], binascii.hexlify(made).decode()


def certificate_cases(cases):
    for c in cases:
        root = x509.Certificate(unhex(c["root"]))
        cert = x509.Certificate(unhex(c["cert"]))

        def check():
            key = yield from keys.public_key_steps(root.public_key_info)
            return (yield from keys.verify_steps(key, cert.signature_algorithm, cert.signed,
                                                 cert.signature))
        yield "certificate", c["case"], c["valid"], answer(check())


def refused_key_cases(cases):
    for name, spki in cases:
        got = answer(keys.public_key_steps(unhex(spki)))
        yield "refused key", name, False, got if isinstance(got, str) else "taken"


def made_here():
    """A key, a signature and a CSR for cryptography to check."""
    d, xy = crypto.run(ecdsa.keygen_steps())
    msg = b"signed on the device"
    sig = crypto.run(ecdsa.sign_steps(d, hashlib.sha256(msg).digest()))
    request = crypto.run(csr.request_steps(d, xy, [(csr.COMMON_NAME, "CP-0001"),
                                                   (csr.ORGANIZATION, "Example CPO")]))
    return {"d": d, "x": xy[0], "y": xy[1], "msg": binascii.hexlify(msg).decode(),
            "sig": binascii.hexlify(sig).decode(), "csr": csr.pem(request)}


def timed(steps):
    """(result, µs of each slice) of a generator driven one slice at a time."""
    work = crypto.Work(steps)
    slices = []
    while True:
        t0 = time.ticks_us()
        done = work.step()
        slices.append(time.ticks_diff(time.ticks_us(), t0))
        if done:
            if work.error is not None:
                raise work.error
            return work.result, slices


def timing(data, repeat=5):
    """Each operation `repeat` times on the same input: the least total ("us"), and the
    longest slice ("slice_max_us") where each slice counts its least time over the repeats
    (a host's scheduler or a collection interrupting a slice once is not the slice's work)."""
    msg = b"firmware package bytes"
    digest = hashlib.sha256(msg).digest()
    ops = []
    for group in data["rsa"]:
        _, key = crypto.run(keys.public_key_steps(unhex(group["key"])))
        for c in group["cases"]:
            if c["valid"] and c["case"] == "valid":
                ops.append(("rsa%d_pkcs1_verify" % group["bits"], lambda k=key, s=unhex(c["sig"]):
                            rsa.verify_pkcs1_steps(k, digest, s)))
            if c["valid"] and c["case"] == "valid, salt 32":
                ops.append(("rsa%d_pss_verify" % group["bits"], lambda k=key, s=unhex(c["sig"]):
                            rsa.verify_pss_steps(k, digest, s, 32)))
    d, xy = crypto.run(ecdsa.keygen_steps())
    sig = crypto.run(ecdsa.sign_steps(d, digest))
    point = (xy[0], xy[1], 1)
    ops += [("p256_verify", lambda: ecdsa.verify_steps(point, digest, sig)),
            ("p256_keygen", lambda: ecdsa.public_steps(d)),  # keygen_steps() but for os.urandom
            ("p256_sign", lambda: ecdsa.sign_steps(d, digest)),
            ("csr_build", lambda: csr.request_steps(d, xy, [(csr.COMMON_NAME, "CP-0001")])),
            ("p256_inverse", lambda: crypto.pow_steps(xy[0], p256.P - 2, p256.P))]
    out = {}
    for name, make in ops:
        best = None
        for _ in range(repeat):
            result, slices = timed(make())
            if result is False:
                raise ValueError(name + " failed")
            best = slices if best is None else [min(a, b) for a, b in zip(best, slices)]
        out[name] = {"us": sum(best), "slice_max_us": max(best), "slices": len(best)}
    return out


def working_heap(data):
    """Bytes of heap an RSA-4096 and a P-256 check hold at most (a collection after each
    slice: what is live, not garbage waiting), over what was live before."""
    import gc

    digest = hashlib.sha256(b"firmware package bytes").digest()
    group = data["rsa"][-1]
    _, key = crypto.run(keys.public_key_steps(unhex(group["key"])))
    d, xy = crypto.run(ecdsa.keygen_steps())
    sig = crypto.run(ecdsa.sign_steps(d, digest))
    out = {}
    for name, steps in (("rsa4096_pkcs1_verify",
                         rsa.verify_pkcs1_steps(key, digest, unhex(group["cases"][0]["sig"]))),
                        ("p256_verify", ecdsa.verify_steps((xy[0], xy[1], 1), digest, sig))):
        gc.collect()
        base = gc.mem_alloc()
        work = crypto.Work(steps)
        top = 0
        while not work.step():
            gc.collect()
            top = max(top, gc.mem_alloc() - base)
        out[name] = top
    return out


def finish_with_the_loop_running():
    """crypto.finish() in an asyncio task while another task counts the loop's turns."""
    import asyncio

    d, xy = crypto.run(ecdsa.keygen_steps())
    digest = hashlib.sha256(b"m").digest()
    turns = [0]

    async def other():
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    async def both():
        task = asyncio.create_task(other())
        sig = await crypto.finish(ecdsa.sign_steps(d, digest))
        task.cancel()
        return crypto.run(ecdsa.verify_steps((xy[0], xy[1], 1), digest, sig))

    return {"verified": asyncio.run(both()), "turns": turns[0]}


def main():
    with open(sys.argv[1]) as f:
        data = json.load(f)
    groups = [ecdsa_cases(data["ecdsa"]), rfc6979_cases(data["rfc6979"]),
              certificate_cases(data["certificates"]), refused_key_cases(data["refused_keys"])]
    groups += [rsa_cases(g) for g in data["rsa"]]
    s = data["sha256"]
    print(json.dumps({"group": "sha256", "case": "abc", "want": s["digest"],
                      "got": binascii.hexlify(hashlib.sha256(unhex(s["msg"])).digest()).decode()}))
    for cases in groups:
        for group, case, want, got in cases:
            print(json.dumps({"group": group, "case": case, "want": want, "got": got}))
    print(json.dumps({"made": made_here()}))
    print(json.dumps({"finish": finish_with_the_loop_running()}))
    if "timing" in sys.argv[2:]:
        print(json.dumps({"timing": timing(data)}))
        print(json.dumps({"heap": working_heap(data)}))


if __name__ == "__main__":
    main()
