"""Fetch micropython-lib's umqtt.simple 1.3.4 from PyPI into build/ for the host simulator.

The stock ESP32 firmware has a newer umqtt.simple frozen in; the only release on a package
registry is the old 1.3.4 sdist. We never commit third-party source: this script downloads the
sdist, checks its sha256 and extracts `umqtt/simple.py` to `build/mpy/umqtt_134/simple.py`
(not `umqtt/`, so it does not shadow the bridge package `tools/simfs/umqtt/`, which loads it).

Idempotent: when the sdist in build/ already has the right hash and the extracted file exists,
nothing is downloaded. Usage: python tools/fetch_umqtt.py [--build DIR]
"""
import argparse
import hashlib
import io
import os
import sys
import tarfile
import urllib.request

PROJECT = "micropython-umqtt.simple"
VERSION = "1.3.4"
SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUILD = os.path.join(ROOT, "build")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _download_sdist():
    from pypi_simple import PyPISimple

    with PyPISimple() as client:
        page = client.get_project_page(PROJECT)
    for pkg in page.packages:
        if pkg.version == VERSION and pkg.package_type == "sdist":
            with urllib.request.urlopen(pkg.url, timeout=60) as resp:
                return pkg.filename, resp.read()
    raise SystemExit("fetch_umqtt: no %s %s sdist on the index" % (PROJECT, VERSION))


def _extract(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            if member.name.endswith("/umqtt/simple.py") or member.name == "umqtt/simple.py":
                return tar.extractfile(member).read()
    raise SystemExit("fetch_umqtt: umqtt/simple.py not found in the sdist")


def fetch(build=DEFAULT_BUILD):
    """Ensure build/mpy/umqtt_134/simple.py exists; return its path."""
    sdist_dir = os.path.join(build, "sdist")
    target_dir = os.path.join(build, "mpy", "umqtt_134")
    target = os.path.join(target_dir, "simple.py")
    sdist = os.path.join(sdist_dir, "%s-%s.tar.gz" % (PROJECT, VERSION))

    data = None
    if os.path.exists(sdist):
        with open(sdist, "rb") as f:
            data = f.read()
        if _sha256(data) != SHA256:
            data = None  # corrupt or tampered: fetch again
        elif os.path.exists(target):
            return target
    if data is None:
        _name, data = _download_sdist()
        digest = _sha256(data)
        if digest != SHA256:
            raise SystemExit("fetch_umqtt: sha256 mismatch: got %s, want %s" % (digest, SHA256))
        os.makedirs(sdist_dir, exist_ok=True)
        with open(sdist + ".tmp", "wb") as f:
            f.write(data)
        os.replace(sdist + ".tmp", sdist)

    source = _extract(data)
    os.makedirs(target_dir, exist_ok=True)
    with open(target + ".tmp", "wb") as f:
        f.write(source)
    os.replace(target + ".tmp", target)
    with open(os.path.join(target_dir, "__init__.py"), "w") as f:
        f.write("")
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=DEFAULT_BUILD, help="build folder (default: build/)")
    args = parser.parse_args(argv)
    print(fetch(args.build))
    return 0


if __name__ == "__main__":
    sys.exit(main())
