"""The device twin: a 32-bit MicroPython v1.28.0 unix binary with our firmware frozen in, so
heap figures measured on the host are the ESP32's.

Two builds, out of the MicroPython source tree, with our variant (firmware/twin/variant/):

    build/twin/micropython         firmware/twin/manifest.py: asyncio, umqtt.simple, aiorepl
                                   and the chargepoint package, frozen as on the ESP32, plus
                                   the simulated board (tools/simfs/board_sim.py)
    build/twin-stock/micropython   firmware/twin/manifest_stock.py: the same without our code
    build/twin/mpy-cross           the matching compiler (for .mpy files the stock twin loads)

Usage: python3 -m tools.twin [--stock] [--force]     (prints the binary's path on stdout)

A build runs only when the binary is missing or stale. The stamp file next to it holds two
hashes: "config" (variant folder, make arguments, source identity; a change means a clean
build, since make does not track flags) and "inputs" (manifests and, for the twin, every file
under lib/; a change means an incremental make, which refreezes). --force builds from clean.

The source: $MICROPY_SRC (a source tree or a .tar.gz) or else
../shared/micropython/micropython-1.28.0-src.tar.gz next to the repo, unpacked once into
build/mpsrc/; when neither exists, a shallow git clone of v1.28.0 with the mbedtls and
micropython-lib submodules. `gcc -m32` must link; if it cannot, gcc-multilib is installed
with apt-get.

Other tools: `ensure(stock=False) -> path of the binary`, `mpy_cross() -> path`.
"""
import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
FIRMWARE = os.path.join(ROOT, "firmware")
VARIANT_DIR = os.path.join(FIRMWARE, "twin", "variant")
SRC_DIR = os.path.join(BUILD, "mpsrc")
DEFAULT_TARBALL = os.path.join(os.path.dirname(ROOT), "shared", "micropython",
                               "micropython-1.28.0-src.tar.gz")
GIT_URL = "https://github.com/micropython/micropython"
GIT_TAG = "v1.28.0"
GIT_SUBMODULES = ("lib/mbedtls", "lib/micropython-lib")

# name -> (build folder, top manifest, files whose contents the frozen image depends on)
TWINS = {
    False: ("twin", os.path.join(FIRMWARE, "twin", "manifest.py"),
            ("firmware/twin/manifest.py", "firmware/app_manifest.py",
             "firmware/stock_manifest.py", "lib", "tools/simfs")),
    True: ("twin-stock", os.path.join(FIRMWARE, "twin", "manifest_stock.py"),
           ("firmware/twin/manifest_stock.py", "firmware/stock_manifest.py", "tools/simfs")),
}
MPY_CROSS = os.path.join(BUILD, "twin", "mpy-cross")


def _log(*args):
    print("twin:", *args, file=sys.stderr, flush=True)


def _run(cmd, **kwargs):
    _log("$", " ".join(cmd))
    # Build output goes to stderr: stdout carries only the binary's path.
    subprocess.run(cmd, check=True, stdout=sys.stderr, **kwargs)


def _jobs():
    return str(os.cpu_count() or 2)


class _Lock:
    """One build at a time (parallel test sessions share build/)."""

    def __enter__(self):
        os.makedirs(BUILD, exist_ok=True)
        self._f = open(os.path.join(BUILD, ".twin.lock"), "w")
        fcntl.flock(self._f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()


# --- the MicroPython source ---------------------------------------------------------------

def _tarball_identity(path):
    st = os.stat(path)
    return "tarball %s %d %d" % (os.path.abspath(path), st.st_size, int(st.st_mtime))


def _git_head(path):
    r = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def _unpack(tarball):
    """The tarball unpacked into build/mpsrc/ (once per tarball identity); its source tree."""
    identity = _tarball_identity(tarball)
    marker = os.path.join(SRC_DIR, ".unpacked")
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read() == identity:
                return _only_subdir(SRC_DIR)
    _log("unpacking", tarball, "into", SRC_DIR)
    tmp = SRC_DIR + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    _run(["tar", "-xzf", tarball, "-C", tmp])
    with open(os.path.join(tmp, ".unpacked"), "w") as f:
        f.write(identity)
    shutil.rmtree(SRC_DIR, ignore_errors=True)
    os.rename(tmp, SRC_DIR)
    return _only_subdir(SRC_DIR)


def _only_subdir(path):
    dirs = [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))]
    if len(dirs) != 1:
        raise SystemExit("twin: expected one source folder in %s, found %s" % (path, dirs))
    return os.path.join(path, dirs[0])


def _clone():
    dest = os.path.join(SRC_DIR, "micropython")
    if not os.path.exists(os.path.join(dest, "py", "mpconfig.h")):
        _log("no source tarball: cloning MicroPython", GIT_TAG)
        shutil.rmtree(SRC_DIR, ignore_errors=True)
        os.makedirs(SRC_DIR)
        _run(["git", "clone", "--depth", "1", "--branch", GIT_TAG, GIT_URL, dest])
        _run(["git", "-C", dest, "submodule", "update", "--init", "--depth", "1",
              *GIT_SUBMODULES])
    return dest


def source():
    """(MicroPython source tree, identity string) per the rules in the module docstring."""
    given = os.environ.get("MICROPY_SRC")
    if given:
        given = os.path.abspath(given)
        if os.path.isdir(given):
            return given, "tree %s %s" % (given, _git_head(given))
        if os.path.isfile(given):
            return _unpack(given), _tarball_identity(given)
        raise SystemExit("twin: MICROPY_SRC=%s is neither a folder nor a file" % given)
    if os.path.isfile(DEFAULT_TARBALL):
        return _unpack(DEFAULT_TARBALL), _tarball_identity(DEFAULT_TARBALL)
    tree = _clone()
    return tree, "git %s %s" % (GIT_TAG, _git_head(tree))


# --- the compiler ----------------------------------------------------------------------------

def _cc():
    return os.environ.get("CC", "gcc")


def _m32_links():
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <pthread.h>\n#include <math.h>\n"
                    "int main(void) { return (int)sqrt(pthread_self() ? 4.0 : 1.0) - 2; }\n")
        r = subprocess.run([_cc(), "-m32", src, "-o", os.path.join(tmp, "t"), "-lm",
                            "-lpthread"], capture_output=True, text=True)
        return r.returncode == 0


def _ensure_m32():
    if _m32_links():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit("twin: `%s -m32` cannot link; install gcc-multilib "
                         "(apt-get install gcc-multilib) and run again" % _cc())
    _log("`%s -m32` cannot link: installing gcc-multilib with apt-get" % _cc())
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "gcc-multilib"], env=env)
    if not _m32_links():
        raise SystemExit("twin: `%s -m32` still cannot link after installing gcc-multilib"
                         % _cc())


# --- staleness -------------------------------------------------------------------------------

def _hash_tree(h, path):
    """Every file under path (relative names and contents), in a stable order."""
    if os.path.isfile(path):
        files = [path]
    else:
        files = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            files.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                         if not f.endswith(".pyc"))
    for name in files:
        h.update(os.path.relpath(name, ROOT).encode() + b"\0")
        with open(name, "rb") as f:
            h.update(f.read())
        h.update(b"\0")


def _stamps(make_args, src_identity, inputs):
    config = hashlib.sha256()
    _hash_tree(config, VARIANT_DIR)
    config.update(json.dumps([make_args, src_identity]).encode())
    content = hashlib.sha256()
    for rel in inputs:
        _hash_tree(content, os.path.join(ROOT, rel))
    return {"config": config.hexdigest(), "inputs": content.hexdigest()}


def _read_stamp(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_stamp(path, stamps):
    with open(path + ".tmp", "w") as f:
        json.dump(stamps, f)
    os.replace(path + ".tmp", path)


# --- builds ----------------------------------------------------------------------------------

def _build_mpy_cross(src, src_identity, force=False):
    stamp_path = MPY_CROSS + ".stamp"
    stamps = {"config": hashlib.sha256(src_identity.encode()).hexdigest()}
    if not force and os.path.exists(MPY_CROSS) and _read_stamp(stamp_path) == stamps:
        return MPY_CROSS
    obj = os.path.join(BUILD, "twin", "mpy-cross-obj")
    if force or _read_stamp(stamp_path) not in (None, stamps):
        shutil.rmtree(obj, ignore_errors=True)
    started = time.monotonic()
    _run(["make", "-C", os.path.join(src, "mpy-cross"), "-j", _jobs(), "BUILD=" + obj])
    shutil.copy2(os.path.join(obj, "mpy-cross"), MPY_CROSS + ".tmp")
    os.replace(MPY_CROSS + ".tmp", MPY_CROSS)
    _write_stamp(stamp_path, stamps)
    _log("mpy-cross built in %.1f s" % (time.monotonic() - started))
    return MPY_CROSS


def _build(stock, force):
    name, manifest, inputs = TWINS[stock]
    build = os.path.join(BUILD, name)
    binary = os.path.join(build, "micropython")
    stamp_path = binary + ".stamp"
    src, src_identity = source()
    make_args = ["VARIANT_DIR=" + VARIANT_DIR, "VARIANT=" + name, "BUILD=" + build,
                 "FROZEN_MANIFEST=" + manifest, "MICROPY_MPYCROSS=" + MPY_CROSS]
    stamps = _stamps(make_args, src_identity, inputs)
    old = _read_stamp(stamp_path)
    if not force and old == stamps and os.path.exists(binary):
        return binary
    _ensure_m32()
    if force or old is None or old.get("config") != stamps["config"]:
        # Clean: make tracks sources, not flags or variant settings.
        if os.path.isdir(build):
            _log("clean build of", name)
            for entry in os.listdir(build):
                if not (stock is False and entry.startswith("mpy-cross")):
                    path = os.path.join(build, entry)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    started = time.monotonic()
    _build_mpy_cross(src, src_identity, force=force and not stock)
    _run(["make", "-C", os.path.join(src, "ports", "unix"), "-j", _jobs(), *make_args])
    _write_stamp(stamp_path, stamps)
    _log("%s built in %.1f s" % (name, time.monotonic() - started))
    return binary


def ensure(stock=False, force=False):
    """Path of the twin binary (stock: the one without our code), built if missing or stale."""
    with _Lock():
        return _build(bool(stock), force)


def build_image(lib_dir, name):
    """A twin with our firmware frozen in from another lib/ folder (tools/fwpack.py: the image
    of an update), in build/<name>/micropython. It starts from a copy of build/twin's objects,
    so only the frozen code is built again (seconds, not a minute)."""
    with _Lock():
        base = os.path.dirname(_build(False, False))
        build = os.path.join(BUILD, name)
        if not os.path.isdir(build):
            shutil.copytree(base, build, symlinks=True)
        # our package compiled again whatever the times of the copies say
        shutil.rmtree(os.path.join(build, "frozen_mpy", "chargepoint"), ignore_errors=True)
        manifest = os.path.join(build, "image_manifest.py")
        with open(manifest, "w") as f:
            f.write('include("%s")\npackage("chargepoint", base_path="%s")\nfreeze("%s")\n' % (
                os.path.join(FIRMWARE, "stock_manifest.py"), os.path.abspath(lib_dir),
                os.path.join(ROOT, "tools", "simfs")))
        src, _ = source()
        _run(["make", "-C", os.path.join(src, "ports", "unix"), "-j", _jobs(),
              "VARIANT_DIR=" + VARIANT_DIR, "VARIANT=twin", "BUILD=" + build,
              "FROZEN_MANIFEST=" + manifest, "MICROPY_MPYCROSS=" + MPY_CROSS])
        return os.path.join(build, "micropython")


def mpy_cross():
    """Path of the mpy-cross that matches the twins, built if missing."""
    with _Lock():
        src, src_identity = source()
        return _build_mpy_cross(src, src_identity)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock", action="store_true",
                        help="the twin without our code (build/twin-stock/)")
    parser.add_argument("--force", action="store_true", help="build from clean")
    args = parser.parse_args(argv)
    try:
        print(ensure(stock=args.stock, force=args.force))
    except subprocess.CalledProcessError as e:
        _log("failed:", " ".join(e.cmd))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
