"""Public-key arithmetic (lib/chargepoint/crypto) timed on the twin: each operation's total
and its longest slice (tests/mpy/crypto_probe.py "timing"), and what that makes on an ESP32
by ESP32_FACTOR, an estimate (the ESP32 was not measured)."""
import json
import os
import subprocess

from tools import twin
from tools.bench.rig import ROOT

# How much slower an ESP32 (Xtensa LX6, 240 MHz) runs MicroPython's big-integer work than the
# twin on this x86 host: assumed, the top of the 10-20x range usually seen, not measured here.
ESP32_FACTOR = 20
SLICE_BUDGET_MS = 10  # what one slice may hold the interpreter on an ESP32
PROBE = os.path.join(ROOT, "tests", "mpy", "crypto_probe.py")
VECTORS = os.path.join(ROOT, "tests", "vectors", "crypto.json")
# The heap the modules of a signed update's checks take once imported (frozen: their code
# stays in flash; module objects and globals only)
_IMPORTS = ("import gc\ngc.collect()\na = gc.mem_alloc()\n"
            "from chargepoint.crypto import der, p256, ecdsa, rsa, keys\n"
            "from chargepoint.model import signing\n"
            "gc.collect()\nprint(gc.mem_alloc() - a)")
# operation -> what it is, in the report's words
OPERATIONS = (
    ("rsa2048_pkcs1_verify", "RSA-2048 PKCS#1 v1.5 verify (e = 65537)"),
    ("rsa3072_pkcs1_verify", "RSA-3072 PKCS#1 v1.5 verify"),
    ("rsa4096_pkcs1_verify", "RSA-4096 PKCS#1 v1.5 verify"),
    ("rsa2048_pss_verify", "RSA-2048 PSS verify (salt 32)"),
    ("rsa3072_pss_verify", "RSA-3072 PSS verify"),
    ("rsa4096_pss_verify", "RSA-4096 PSS verify"),
    ("p256_verify", "ECDSA P-256 verify"),
    ("p256_keygen", "P-256 key generation (d·G and its affine form)"),
    ("p256_sign", "ECDSA P-256 sign (RFC 6979 nonce)"),
    ("csr_build", "PKCS#10 CSR for a P-256 key (signature included)"),
    ("p256_inverse", "one inversion mod P (Fermat)"),
)


def figures(tmp):
    """{"esp32_factor", "slice_budget_ms", "operations": {name: {"twin_us", "slice_max_us",
    "slices", "esp32_ms", "esp32_slice_ms"}}, "heap_working_bytes": {check: bytes},
    "heap_import_bytes"}; RuntimeError when the probe fails."""
    r = subprocess.run([twin.ensure(), "-X", "heapsize=400000", PROBE, VECTORS, "timing"],
                       cwd=tmp, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, MICROPYPATH=".frozen"))
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    timing = [x["timing"] for x in lines if "timing" in x]
    wrong = [x for x in lines if "group" in x and x["group"] != "refused key"
             and x["want"] != x["got"]]
    if r.returncode != 0 or not timing or wrong:
        raise RuntimeError("crypto probe: %s" % ((wrong or r.stderr.strip().splitlines()
                                                  or ["no timing"])[-1]))
    heap = [x["heap"] for x in lines if "heap" in x]
    imports = subprocess.run(
        [twin.ensure(), "-X", "heapsize=400000", "-c", _IMPORTS], cwd=tmp, capture_output=True,
        text=True, timeout=60, env=dict(os.environ, MICROPYPATH=".frozen"))
    ops = {}
    for name, t in timing[0].items():
        ops[name] = {"twin_us": t["us"], "slice_max_us": t["slice_max_us"],
                     "slices": t["slices"],
                     "esp32_ms": round(t["us"] * ESP32_FACTOR / 1000, 1),
                     "esp32_slice_ms": round(t["slice_max_us"] * ESP32_FACTOR / 1000, 1)}
    return {"esp32_factor": ESP32_FACTOR, "slice_budget_ms": SLICE_BUDGET_MS, "operations": ops,
            "heap_working_bytes": heap[0] if heap else None,
            "heap_import_bytes": int(imports.stdout) if imports.stdout.strip().isdigit()
            else None}
