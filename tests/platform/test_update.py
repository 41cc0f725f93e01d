"""The update package as the device reads it (chargepoint.platform.update) against what
tools.fwpack writes; installs and rollbacks run on the twin (tests/test_e2e_update.py)."""
import pytest

from chargepoint.platform import update
from tools import fwpack


def fed(data, kind="mpy", target="twin", room=1 << 20, step=7):
    sink = update._Sink(kind, target, room)
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
    (fwpack.package("image", "twin", "1", PAYLOAD), "a image package for twin: this board "
                                                    "takes mpy for twin"),
    (fwpack.package("mpy", "esp32", "1", PAYLOAD), "a mpy package for esp32"),
    (fwpack.package("mpy", "twin", "1", PAYLOAD * 100), "do not fit in 1000"),
])
def test_a_package_not_for_this_board_is_refused_before_its_payload(data, error):
    with pytest.raises(update.UpdateError, match=error):
        fed(data, room=1000)


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
