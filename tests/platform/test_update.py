"""The update package as the device reads it (chargepoint.platform.package) against what
tools.fwpack writes, and the updater with a package for another board; installs and rollbacks
run on the twin (tests/test_e2e_update.py)."""
import os
import sys
import types

import pytest

from chargepoint.platform import http, package, update
from chargepoint.platform.store import FileStore
from tools import fwpack


def fed(data, kind="mpy", target="twin", room=1 << 20, step=7):
    sink = package.Sink(kind, target, room)
    out = bytearray()
    sink.out = out.extend
    for i in range(0, len(data), step):  # in pieces, as the network gives them
        sink.write(memoryview(data)[i:i + step])
    return sink, bytes(out)


PAYLOAD = b"chargepoint/app.mpy 5\nM\x06\x00\x1f\x02"


def test_a_package_reads_back_its_payload_and_version():
    sink, out = fed(fwpack.package("mpy", "twin", "1.2.3", PAYLOAD))
    assert out == PAYLOAD and sink.verify()["version"] == "1.2.3"


@pytest.mark.parametrize("data,error", [
    (b"garbage without a header line" * 30, "not a firmware package"),
    (b'{"format": 2}\n', "not a firmware package"),
    (b'{"format":1,"size":1,"sha256":"%s"}\nx' % (b"0" * 64), "not a firmware package"),
    (fwpack.package("mpy", "twin", "1", PAYLOAD * 100), "do not fit in 1000"),
])
def test_no_package_or_one_too_big_is_refused_before_its_payload(data, error):
    with pytest.raises(update.UpdateError, match=error):
        fed(data, room=1000)


@pytest.mark.parametrize("kind,target,wrong", [
    ("image", "twin", "a image package for twin: this board takes mpy for twin"),
    ("mpy", "esp32", "a mpy package for esp32: this board takes mpy for twin"),
])
def test_a_package_for_another_board_is_checked_to_its_end_and_written_nowhere(kind, target,
                                                                               wrong):
    # bigger than the room: it would not fit, but it is never written
    sink, out = fed(fwpack.package(kind, target, "1.2.3", PAYLOAD * 100), room=1000)
    assert out == b"" and sink.wrong == wrong and sink.verify()["version"] == "1.2.3"


def test_a_changed_package_for_another_board_fails_its_hash():
    data = bytearray(fwpack.package("image", "twin", "1", PAYLOAD))
    data[-1] ^= 1
    sink, _ = fed(bytes(data))
    with pytest.raises(update.UpdateError, match="SHA-256 mismatch"):
        sink.verify()


def test_a_changed_payload_fails_its_hash():
    data = bytearray(fwpack.package("mpy", "twin", "1", PAYLOAD))
    data[-1] ^= 1
    sink, _ = fed(bytes(data))
    with pytest.raises(update.UpdateError, match="SHA-256 mismatch"):
        sink.verify()


@pytest.mark.parametrize("cut,error", [(1, "incomplete package"), (-1, "longer than")])
def test_a_cut_or_padded_payload_is_refused(cut, error):
    data = fwpack.package("mpy", "twin", "1", PAYLOAD)
    data = data[:-1] if cut == 1 else data + b"x"
    with pytest.raises(update.UpdateError, match=error):
        fed(data)[0].verify()


def test_version_is_set_in_the_packed_firmware(tmp_path):
    lib = fwpack.lib_at("2.0.0-rc1", str(tmp_path))
    with open(lib + "/chargepoint/app.py") as f:
        assert '\nVERSION = "2.0.0-rc1"\n' in f.read()
    with pytest.raises(fwpack.PackError, match="CiString50"):
        fwpack.lib_at("bad version", str(tmp_path / "x"))


def test_an_esp32_image_must_be_one(tmp_path):
    (tmp_path / "app.bin").write_bytes(b"\x7fELF not an ESP image")
    with pytest.raises(fwpack.PackError, match="not an ESP32 application image"):
        fwpack.build("image", "esp32", "1.0", str(tmp_path / "app.bin"))
    (tmp_path / "app.bin").write_bytes(b"\xe9" + bytes(100))
    assert fwpack.build("image", "esp32", "1.0", str(tmp_path / "app.bin")).startswith(
        b'{"format":1,"kind":"image","target":"esp32","version":"1.0","size":101,')


def test_fwpack_builds_for_the_charger_of_make_sim_by_default(tmp_path, monkeypatch):
    built = []  # (the twin image itself is built by tests/test_e2e_update.py)

    def build(kind, target, version, image):
        built.append((kind, target, version, image))
        return fwpack.package(kind, target, version, PAYLOAD)
    monkeypatch.setattr(fwpack, "build", build)
    assert fwpack.main(["--out", str(tmp_path / "p.cpfw"), "--version", "1.0"]) == 0
    assert built == [("image", "twin", "1.0", None)]


def test_fwpack_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        fwpack.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: image)" in text and "(default: twin)" in text
    assert "(default: none)" in text


def test_fwpack_image_is_only_for_an_esp32_image(tmp_path):
    (tmp_path / "app.bin").write_bytes(b"\xe9" + bytes(100))
    with pytest.raises(fwpack.PackError, match="--image is for --kind image --target esp32"):
        fwpack.build("image", "twin", "1.0", str(tmp_path / "app.bin"))


# -- the updater with a package for another board -----------------------------------------


class Partition:
    """esp32.Partition's next OTA partition, 1000 bytes: records what is done to it."""
    RUNNING = 0
    done = []

    def __init__(self, which=None):
        pass

    def get_next_update(self):
        return self

    def info(self):
        return (0, 0, 0, 1000, "ota_1", False)

    def ioctl(self, op, block):
        self.done.append(("erase", block))

    def writeblocks(self, block, data, offset):
        self.done.append(("write", block))

    def set_boot(self):
        self.done.append(("set_boot",))


@pytest.fixture
def updater(tmp_path, monkeypatch):
    """An updater as on a board, its thread run at once, downloading `served`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "esp32", types.SimpleNamespace(Partition=Partition))
    Partition.done = []
    up = update.Updater(FileStore("data"), "0.1.0", spawn=lambda f: f())
    up.served = b""

    def download(url, sink):
        for i in range(0, len(up.served), 1000):
            sink.write(memoryview(up.served)[i:i + 1000])
    monkeypatch.setattr(http, "download", download)
    return up


def test_an_image_for_another_board_is_never_written_into_the_ota_partition(updater):
    updater.kind = "image"  # our image, firmware frozen in
    updater.served = fwpack.package("mpy", "twin", "0.9.0", PAYLOAD * 100)  # > 1000 bytes
    updater.download("http://fw.example/p")
    assert updater.error is None and not updater.busy
    assert updater.refused == "a mpy package for twin: this board takes image for twin"
    updater.install()
    assert updater.error == "a mpy package for twin: this board takes image for twin"
    assert not updater.busy and Partition.done == []
    assert updater.store.read(update.RECORD) is None


def test_an_image_package_on_a_stock_board_leaves_no_fw_part_and_installs_nothing(updater):
    with open("data/fw.part", "wb") as f:
        f.write(b"an earlier package")
    updater.served = fwpack.package("image", "twin", "0.9.0", PAYLOAD)
    updater.download("http://fw.example/p")
    assert updater.error is None
    assert updater.refused == "a image package for twin: this board takes mpy for twin"
    assert not os.path.exists("data/fw.part")
    updater.install()
    assert updater.error == updater.refused and not updater.busy
    assert not os.path.exists("lib.new") and updater.store.read(update.RECORD) is None


def test_a_good_package_after_a_refused_one_is_not_refused(updater):
    updater.served = fwpack.package("image", "twin", "0.9.0", PAYLOAD)
    updater.download("http://fw.example/p")
    updater.served = fwpack.package("mpy", "twin", "0.9.1", PAYLOAD)
    updater.download("http://fw.example/p")
    assert updater.error is None and updater.refused is None
    assert updater.new_version == "0.9.1"
    with open("data/fw.part", "rb") as f:
        assert f.read() == PAYLOAD


def test_the_package_code_is_in_the_heap_only_for_a_download_or_an_install(updater,
                                                                           monkeypatch):
    updater.served = fwpack.package("mpy", "twin", "0.9.0", PAYLOAD)
    seen = []
    real = http.download

    def download(url, sink):  # the package's code is there while the work runs
        seen.append(sorted(m for m in sys.modules if m.endswith("package")))
        real(url, sink)
    monkeypatch.setattr(http, "download", download)
    monkeypatch.setattr(os, "ilistdir", lambda path: [  # MicroPython's, for rmtree
        (e.name, 0x4000 if e.is_dir() else 0x8000, 0) for e in os.scandir(path)], raising=False)
    updater.download("http://fw.example/p")
    assert updater.error is None and seen == [["chargepoint.platform.package"]]
    assert "chargepoint.platform.package" not in sys.modules
    updater.install()
    assert updater.error is None and os.path.isdir("lib.new")
    assert "chargepoint.platform.package" not in sys.modules
    import chargepoint.platform
    assert not hasattr(chargepoint.platform, "package")
