"""tools/flash.py: esptool command lines for each chip, and the image checks run through the
real esptool, offline, on ESP images built here byte by byte as the format documents."""
import hashlib
import importlib.util
import struct
import subprocess
import sys

import pytest

from tools import flash

# The offset firmware.bin goes to, per chip (REFERENCE.md "Tools").
OFFSETS = [("esp32", "0x1000"), ("esp32s2", "0x1000"), ("esp32s3", "0x0"),
           ("esp32c3", "0x0"), ("esp32c6", "0x0"), ("esp32c5", "0x2000"), ("esp32p4", "0x2000")]
# The chip id in an image's extended header (ESP-IDF esp_chip_id_t).
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c6": 13,
            "esp32p4": 18, "esp32c5": 23}
ESPTOOL = [sys.executable, "-m", "esptool"]


@pytest.fixture
def esptool_installed():
    if importlib.util.find_spec("esptool") is None:
        pytest.fail("esptool is not installed for %s: run `make venv` (requirements.txt pins "
                    "it) and run the tests with .venv/bin/python" % sys.executable)


def esp_image(chip_id, segments, entry=0x40080000):
    """An ESP image (ESP-IDF "App Image Format"): 8-byte header, 16-byte extended header,
    segments (load address, length, data), padding, checksum byte (0xEF xor every data byte)
    at the end of a 16-byte block, then the SHA-256 of all that."""
    header = struct.pack("<BBBBI", 0xE9, len(segments), 2, 0x20, entry)  # DIO, 4MB, 40m
    extended = struct.pack("<BBBBHBHH4sB", 0xEE, 0, 0, 0, chip_id, 0, 0, 0xFFFF, bytes(4), 1)
    body = b""
    checksum = 0xEF
    for address, data in segments:
        data += bytes(-len(data) % 4)
        body += struct.pack("<II", address, len(data)) + data
        for byte in data:
            checksum ^= byte
    image = header + extended + body
    image += bytes(15 - len(image) % 16) + bytes([checksum])
    return image + hashlib.sha256(image).digest()


def bootloader_image(chip="esp32"):
    """What firmware.bin starts with: an image with no application description."""
    return esp_image(CHIP_IDS[chip], [(0x3FFF0000, b"2nd stage loader")])


def application_image(chip="esp32"):
    """Like micropython.bin: its first flash-mapped (DROM) segment opens with esp_app_desc_t."""
    app_desc = struct.pack("<II8s32s32s16s16s32s32sHHB3s72s", 0xABCD5432, 0, b"", b"v1.28.0",
                           b"micropython", b"00:00:00", b"Jan  1 2026", b"v5.5.1", bytes(32),
                           0, 0, 0, b"", b"")
    return esp_image(CHIP_IDS[chip], [(0x3F400020, app_desc), (0x40080000, bytes(8))])


def partition_table():
    """nvs, phy_init, factory app, then the MD5 entry; 0xFF to the table's 0xC00 bytes."""
    entries = b"".join(struct.pack("<2sBBII16sI", b"\xaa\x50", kind, subtype, offset, size,
                                   label, 0)
                       for kind, subtype, offset, size, label in [
                           (1, 2, 0x9000, 0x6000, b"nvs"), (1, 1, 0xF000, 0x1000, b"phy_init"),
                           (0, 0, 0x10000, 0x1F0000, b"factory")])
    table = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return table + b"\xff" * (0xC00 - len(table))


def write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def port(tmp_path):
    """Stands for the serial device: only its existence is checked before esptool runs."""
    return write(tmp_path / "ttyUSB0", b"")


class Recorder:
    """Runs nothing: keeps the command lines flash() would have run."""

    def __init__(self, code=0):
        self.commands = []
        self.code = code

    def __call__(self, argv):
        self.commands.append(argv)
        return self.code


# --- command lines (pure) ---

@pytest.mark.parametrize("chip,offset", OFFSETS)
def test_write_flash_at_the_chips_bootloader_offset(chip, offset):
    assert flash.flash_commands("/dev/ttyUSB0", chip, "firmware.bin") == [
        ESPTOOL + ["--chip", chip, "--port", "/dev/ttyUSB0", "--baud", "460800",
                   "write-flash", offset, "firmware.bin"]]


@pytest.mark.parametrize("chip,offset", OFFSETS)
def test_erase_puts_erase_flash_first(chip, offset):
    assert flash.flash_commands("/dev/ttyACM0", chip, "fw.bin", baud=921600, erase=True) == [
        ESPTOOL + ["--chip", chip, "--port", "/dev/ttyACM0", "erase-flash"],
        ESPTOOL + ["--chip", chip, "--port", "/dev/ttyACM0", "--baud", "921600",
                   "write-flash", offset, "fw.bin"]]


def test_every_chip_on_the_command_line_has_an_offset():
    assert sorted(flash.OFFSETS) == sorted(chip for chip, _ in OFFSETS)


def test_unknown_chip_is_refused():
    with pytest.raises(flash.FlashError, match="unknown chip 'esp8266'"):
        flash.flash_commands("/dev/ttyUSB0", "esp8266", "firmware.bin")


def test_image_info_runs_without_chip_so_esptool_reads_it_from_the_image():
    assert flash.image_info_command("fw.bin") == ESPTOOL + ["image-info", "fw.bin"]


# --- errors, one line each ---

def run_main(capsys, argv, run=None):
    code = flash.main(argv, run=run or Recorder())
    out, err = capsys.readouterr()
    return code, out, err


def test_missing_image_is_one_line_error(capsys, port, tmp_path):
    code, out, err = run_main(capsys, ["--port", port, "--image", str(tmp_path / "no.bin")])
    assert code == 1 and out == ""
    assert err == "flash: error: image not found: %s\n" % (tmp_path / "no.bin")


def test_missing_port_is_one_line_error(capsys, tmp_path):
    image = write(tmp_path / "firmware.bin", bootloader_image())
    recorder = Recorder()
    code, out, err = run_main(capsys, ["--port", "/dev/ttyNOPE9", "--image", image], recorder)
    assert code == 1 and recorder.commands == []
    assert err == "flash: error: port not found: /dev/ttyNOPE9 (is the board plugged in?)\n"


def test_port_url_is_left_to_esptool(capsys, tmp_path):
    image = write(tmp_path / "firmware.bin", bootloader_image())
    code, out, _ = run_main(capsys, ["--port", "rfc2217://bench:4000", "--image", image,
                                     "--dry-run"])
    assert code == 0 and "--port rfc2217://bench:4000" in out


def test_not_an_esp_image_is_refused_by_esptool(capsys, esptool_installed, port, tmp_path):
    image = write(tmp_path / "firmware.bin", b"\x7fELF" + bytes(60))
    recorder = Recorder()
    code, _, err = run_main(capsys, ["--port", port, "--image", image], recorder)
    assert code == 1 and recorder.commands == []
    assert err == ("flash: error: %s is not an ESP image (esptool image-info: This is not a "
                   "valid image (invalid magic number: 0x7f).)\n" % image)


@pytest.mark.parametrize("built_for,chip", [("esp32s3", "esp32"), ("esp32", "esp32c3"),
                                            ("esp32c6", "esp32s2")])
def test_image_for_another_chip_is_refused(capsys, esptool_installed, port, tmp_path,
                                           built_for, chip):
    image = write(tmp_path / "firmware.bin", bootloader_image(built_for))
    recorder = Recorder()
    code, _, err = run_main(capsys, ["--port", port, "--image", image, "--chip", chip],
                            recorder)
    assert code == 1 and recorder.commands == []
    assert err == "flash: error: %s is an image for %s, not for --chip %s\n" % (
        image, built_for, chip)


def test_corrupt_image_is_refused(esptool_installed, tmp_path):
    data = bytearray(bootloader_image())
    data[24 + 8 + 3] ^= 0xFF  # a byte of segment data: checksum and digest no longer match
    image = write(tmp_path / "firmware.bin", bytes(data))
    with pytest.raises(flash.FlashError, match="corrupt ESP image"):
        flash.check_image(image, "esp32")


def test_application_alone_is_refused(esptool_installed, tmp_path):
    image = write(tmp_path / "micropython.bin", application_image())
    with pytest.raises(flash.FlashError, match="application alone .* not belong at 0x1000"):
        flash.check_image(image, "esp32")


def test_esptool_failure_while_flashing_is_reported(capsys, esptool_installed, port, tmp_path):
    image = write(tmp_path / "firmware.bin", bootloader_image())
    code, _, err = run_main(capsys, ["--port", port, "--image", image], Recorder(code=2))
    assert code == 1
    assert err.startswith("flash: error: esptool exited with 2: -m esptool --chip esp32")


# --- real offline esptool runs ---

@pytest.mark.parametrize("chip", sorted(CHIP_IDS))
def test_image_info_reports_the_chip_of_a_built_image(esptool_installed, tmp_path, chip):
    image = write(tmp_path / "firmware.bin", bootloader_image(chip))
    info = flash.check_image(image, chip)
    assert info == {"chip": chip, "application": False, "checksum_valid": True,
                    "digest_valid": True}


def test_image_info_recognises_an_application(esptool_installed, tmp_path):
    image = write(tmp_path / "micropython.bin", application_image())
    result = subprocess.run(flash.image_info_command(image), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert flash.parse_image_info(result.stdout) == {
        "chip": "esp32", "application": True, "checksum_valid": True, "digest_valid": True}
    assert "Project name: micropython" in result.stdout


def test_merged_firmware_is_checked_and_flashed_in_one_write(capsys, esptool_installed, port,
                                                             tmp_path):
    """firmware.bin as MicroPython's ESP32 build makes it: bootloader at 0x1000, partition
    table at 0x8000, app at 0x10000, merged into one file to write at 0x1000."""
    boot, table, app = bootloader_image(), partition_table(), application_image()
    parts = [("0x1000", write(tmp_path / "bootloader.bin", boot)),
             ("0x8000", write(tmp_path / "partition-table.bin", table)),
             ("0x10000", write(tmp_path / "micropython.bin", app))]
    merged = tmp_path / "firmware.bin"
    result = subprocess.run(ESPTOOL + ["--chip", "esp32", "merge-bin", "-o", str(merged),
                                       "--target-offset", "0x1000"]
                            + [arg for part in parts for arg in part],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = merged.read_bytes()
    assert data[:len(boot)] == boot
    assert data[len(boot):0x7000] == b"\xff" * (0x7000 - len(boot))
    assert data[0x7000:0x7C00] == table
    assert data[0xF000:] == app

    recorder = Recorder()
    code, out, err = run_main(capsys, ["--port", port, "--image", str(merged), "--erase"],
                              recorder)
    assert (code, err) == (0, "")
    assert recorder.commands == [
        ESPTOOL + ["--chip", "esp32", "--port", port, "erase-flash"],
        ESPTOOL + ["--chip", "esp32", "--port", port, "--baud", "460800",
                   "write-flash", "0x1000", str(merged)]]
    assert out.splitlines() == [" ".join(argv) for argv in recorder.commands]


def test_dry_run_prints_every_command_and_runs_none(capsys, port, tmp_path):
    image = write(tmp_path / "firmware.bin", b"not checked: image-info is only printed")

    def refuse(argv):
        raise AssertionError("dry run ran %s" % argv)

    code, out, err = run_main(capsys, ["--port", port, "--image", image, "--chip", "esp32s3",
                                       "--erase", "--baud", "115200", "--dry-run"], refuse)
    assert (code, err) == (0, "")
    py = sys.executable
    assert out.splitlines() == [
        "%s -m esptool image-info %s" % (py, image),
        "%s -m esptool --chip esp32s3 --port %s erase-flash" % (py, port),
        "%s -m esptool --chip esp32s3 --port %s --baud 115200 write-flash 0x0 %s"
        % (py, port, image)]
