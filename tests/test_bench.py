"""`make bench` in its fast form: `python3 -m tools.bench --smoke` runs every phase (twins,
Mosquitto, the Central System, simulators, a fleet of 3), prints its JSON object on the last
line with every key, and writes the report where it is told (never into docs/ here)."""
import json
import os
import signal
import subprocess
import sys

from conftest import ROOT

KEYS = {"mode", "mpy_bytes", "frozen_bytes", "heap_idle_bytes", "heap_peak_bytes",
        "heap_tls_connection_bytes", "heap_per_transaction_bytes",
        "heap_growth_1000_sessions_bytes", "sessions_in_process", "min_heap_bytes",
        "heap_local_list_1000_bytes", "heap_10_charging_profiles_bytes", "heap_download_bytes",
        "reaction_ms", "control_round_trip_ms", "cpu_us_per_inbound_call",
        "cpu_us_per_meter_values", "valgrind_instructions", "fleet_chargers",
        "fleet_messages_per_s", "fleet_twin_rss_bytes", "fleet_twin_cpu_percent", "transports", "message_gap_ms", "boot_to_ready_ms",
        "backlog_100_drain_s", "heap_firmware_idle_bytes", "heap_firmware_peak_bytes",
        "heap_simulation_bytes", "soak_memory_errors", "soak_min_largest_free_block_bytes",
        "seconds", "errors", "bridge", "crypto"}
REACTIONS = {"tap_to_relay_closed", "remote_start_to_relay_closed", "unplug_to_relay_open",
             "rcd_to_relay_open", "unplug_to_relay_open_broker_hung"}


def test_bench_smoke_prints_json_last_and_writes_the_report(tmp_path):
    out = tmp_path / "docs"
    before = os.listdir(os.path.join(ROOT, "docs")) if os.path.isdir(
        os.path.join(ROOT, "docs")) else None
    proc = subprocess.Popen([sys.executable, "-m", "tools.bench", "--smoke", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the bench stops what it started on SIGTERM
        stdout, stderr = proc.communicate(timeout=30)
        raise AssertionError("bench --smoke took over 10 minutes:\n" + stderr[-3000:])
    lines = stdout.strip().splitlines()
    assert lines, stderr[-3000:]
    result = json.loads(lines[-1])
    assert KEYS <= set(result), sorted(KEYS - set(result))
    assert result["mode"] == "smoke"
    for key in ("heap_idle_bytes", "heap_peak_bytes", "min_heap_bytes"):
        assert set(result[key]) == {"frozen", "deployed"}, result[key]
    assert set(result["reaction_ms"]) == REACTIONS
    for figures in result["reaction_ms"].values():
        assert {"p50", "p99", "max", "n"} <= set(figures)
    assert set(result["transports"]) == {"mqtt", "websocket", "websocket_tls"}
    for figures in result["transports"].values():
        assert figures["mpy_bytes"] > 0 and figures["heap_idle_bytes"] > 0, figures
        assert figures["round_trip_ms"]["n"] == 10, figures
        assert figures["message_gap_ms"]["n"] >= 3 and figures["boot_to_ready_ms"] > 0, figures
    assert result["backlog_100_drain_s"] > 0 and result["message_gap_ms"]["p50"] > 0
    assert 0 < result["heap_simulation_bytes"] < result["heap_idle_bytes"]["frozen"]
    for instances in ("x1", "x2"):  # the fleet bridge, one and two instances
        bridge = result["bridge"][instances]
        assert bridge["websockets"] == bridge["chargers"] == 20, bridge
        assert bridge["sustained_frames_per_s"] > 0 and bridge["latency_ms"]["p99"] > 0
    assert result["crypto"]["operations"]["rsa4096_pkcs1_verify"]["slices"] > 30
    assert result["soak_memory_errors"] == 0 and result["soak_min_largest_free_block_bytes"] > 0
    assert result["heap_firmware_idle_bytes"] + result["heap_simulation_bytes"] == \
        result["heap_idle_bytes"]["frozen"]
    assert proc.returncode == 0, "\n".join(result["errors"]) + stderr[-3000:]
    report = (out / "BENCHMARKS.md").read_text()
    assert "MicroOcpp" in report and "| heap, idle |" in report
    assert "| websocket_tls |" in report and "## Fleet bridge" in report
    assert "## Public-key arithmetic" in report
    assert (out / "heap.png").stat().st_size > 0
    after = os.listdir(os.path.join(ROOT, "docs")) if os.path.isdir(
        os.path.join(ROOT, "docs")) else None
    assert after == before  # the repository's docs/ untouched
