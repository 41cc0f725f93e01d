"""Code size: lib/ compiled by the twin's mpy-cross, and what freezing it adds to the image."""
import os
import subprocess

from tools import twin
from tools.bench.rig import ROOT


def mpy_bytes(tmp):
    """.mpy bytes of lib/: {"total", "packages": {package: bytes of the modules directly
    in its folder}}."""
    cross = twin.mpy_cross()
    lib = os.path.join(ROOT, "lib")
    packages = {}
    for dirpath, dirnames, files in os.walk(lib):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        sources = sorted(f for f in files if f.endswith(".py"))
        if not sources:
            continue
        package = os.path.relpath(dirpath, lib).replace(os.sep, ".")
        total = 0
        for name in sources:
            out = os.path.join(tmp, "mpy", package, name[:-3] + ".mpy")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            subprocess.run([cross, "-o", out, os.path.join(dirpath, name)], check=True)
            total += os.path.getsize(out)
        packages[package] = total
    return {"total": sum(packages.values()), "packages": packages}


def compile_one(source, out):
    """`source` compiled by the twin's mpy-cross to `out`: its .mpy bytes."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run([twin.mpy_cross(), "-o", out, source], check=True)
    return os.path.getsize(out)


def image_bytes(stock):
    """text + data of a twin binary (`size`)."""
    out = subprocess.run(["size", twin.ensure(stock=stock)], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1].split()
    return int(out[0]) + int(out[1])
