"""The device twin (tools/twin.py): 32-bit MicroPython v1.28.0 with our firmware frozen in, and
the stock twin without it, built from firmware/ and checked by running them."""
import os
import struct
import subprocess
import time

import pytest

from conftest import ROOT
from tools import twin

LIBS = "import umqtt.simple, aiorepl, asyncio, ssl, _thread, socket, vfs"


@pytest.fixture(scope="session")
def binaries():
    try:
        return {"twin": twin.ensure(), "stock": twin.ensure(stock=True)}
    except SystemExit as e:  # a build that cannot run fails the tests, never skips them
        pytest.fail(str(e))


def run(binary, code, cwd, path=".frozen", heapsize=None):
    """Run code on a twin from cwd with sys.path = ['', *path]; its stdout, stripped."""
    args = [binary] + (["-X", "heapsize=%d" % heapsize] if heapsize else []) + ["-c", code]
    r = subprocess.run(args, cwd=str(cwd), capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=path))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def heap_of(imports):
    return ("import gc\ngc.collect()\na = gc.mem_alloc()\nimport %s\ngc.collect()\n"
            "print(gc.mem_alloc() - a)" % imports)


@pytest.mark.parametrize("which", ["twin", "stock"])
def test_binary_is_32_bit_x86_elf(binaries, which):
    with open(binaries[which], "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF"
    assert header[4] == 1  # ELFCLASS32
    assert struct.unpack_from("<H", header, 18)[0] == 3  # EM_386


@pytest.mark.parametrize("which", ["twin", "stock"])
def test_micropython_1_28_0(binaries, which, tmp_path):
    out = run(binaries[which], "import sys; print(sys.implementation.version[:3], "
                               "sys.implementation._build, sys.maxsize)", tmp_path)
    assert out == "(1, 28, 0) %s 2147483647" % {"twin": "twin", "stock": "twin-stock"}[which]


@pytest.mark.parametrize("which", ["twin", "stock"])
def test_libraries_frozen(binaries, which, tmp_path):
    out = run(binaries[which], LIBS + "; print(umqtt.simple.__version__, aiorepl.__version__)",
              tmp_path)
    assert out == "1.7.0 0.2.2"


def test_firmware_imports_frozen_from_an_empty_folder(binaries, tmp_path):
    out = run(binaries["twin"], "import chargepoint.ocpp.engine, chargepoint.app, "
                                "chargepoint.transport.mqtt, chargepoint.hardware;"
                                "print(chargepoint.ocpp.engine.__file__)", tmp_path)
    assert out == "chargepoint/ocpp/engine.py"
    assert os.listdir(str(tmp_path)) == []


def test_stock_twin_has_no_firmware(binaries, tmp_path):
    out = run(binaries["stock"], "try:\n import chargepoint\nexcept ImportError:\n print('no')",
              tmp_path)
    assert out == "no"


def test_objects_have_32_bit_sizes(binaries, tmp_path):
    # 100 small dicts: ~3.7 KB on a 32-bit build, ~7.5 KB on a 64-bit one.
    out = run(binaries["twin"], "import gc\ngc.collect()\na = gc.mem_alloc()\n"
                                "x = [{'a': i} for i in range(100)]\nprint(gc.mem_alloc() - a)",
              tmp_path)
    assert int(out) < 5000


def test_floats_are_single_precision_as_on_the_esp32(binaries, tmp_path):
    out = run(binaries["twin"], "import time; print(1795262400.0 + 1 == 1795262400.0, "
                                "type(time.time()).__name__)", tmp_path)
    assert out == "True int"


def test_mpy_cross_compiles_the_engine(binaries, tmp_path):
    out = tmp_path / "engine.mpy"
    subprocess.run([twin.mpy_cross(), "-o", str(out),
                    os.path.join(ROOT, "lib", "chargepoint", "ocpp", "engine.py")], check=True)
    assert out.read_bytes()[:2] == b"M\x06"  # .mpy format 6, what v1.28.0 loads


def test_frozen_firmware_costs_less_heap_than_deployed_mpy(binaries, tmp_path):
    deployed = tmp_path / "deployed"
    lib = os.path.join(ROOT, "lib")
    for folder, _, names in os.walk(os.path.join(lib, "chargepoint")):
        out = deployed / os.path.relpath(folder, lib)
        out.mkdir(parents=True)
        for name in sorted(names):
            if name.endswith(".py"):
                subprocess.run([twin.mpy_cross(), "-o", str(out / (name[:-3] + ".mpy")),
                                os.path.join(folder, name)], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    frozen = int(run(binaries["twin"], heap_of("chargepoint.app"), empty, heapsize=110000))
    mpy = int(run(binaries["stock"], heap_of("chargepoint.app"), empty,
                  path=".frozen:" + str(deployed), heapsize=110000))
    print("import chargepoint.app: %d B of heap frozen, %d B as .mpy files" % (frozen, mpy))
    assert frozen < mpy / 2


WAITS = """
import machine, sys, time
n = [0]
def tick(t):
    n[0] += 1
t = machine.Timer(0)
t.init(mode=machine.Timer.PERIODIC, period=20, callback=tick)
a = n[0]
time.sleep(0.5)
slept = n[0] - a
a = n[0]
sys.stdout.write("ready\\n")
c = sys.stdin.read(1)
t.deinit()
print(slept, n[0] - a, c)
"""


def test_timer_callbacks_run_while_the_main_thread_waits_as_on_the_esp32(binaries, tmp_path):
    # On the ESP32 every wait (time.sleep, a blocking console read such as aiorepl's raw REPL)
    # runs scheduled callbacks; the safety timer must not stop on the twin either (wake.c).
    p = subprocess.Popen([binaries["twin"], "-c", WAITS], cwd=str(tmp_path), text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=dict(os.environ, MICROPYPATH=".frozen"))
    assert p.stdout.readline() == "ready\n"
    start = time.monotonic()
    while time.monotonic() - start < 0.5:  # the twin is blocked in read() meanwhile
        time.sleep(0.05)
    out, _ = p.communicate("x\n", timeout=30)
    slept, read, c = out.split()
    assert int(slept) >= 15  # 25 ticks of 20 ms in 0.5 s, give or take the host
    assert int(read) >= 15
    assert c == "x"
