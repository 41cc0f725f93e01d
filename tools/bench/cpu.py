"""CPU per inbound call and per MeterValues: the firmware's engine and model on the frozen
twin, in-process (tools/bench/workloads.py: loopback transport, fake clock and board, the
scripted Central System), as process CPU time and, where valgrind runs, instruction counts.

Each figure is the difference between a run of k operations and one of 2k, over k: start-up
(the interpreter, imports, boot) cancels out."""
import shutil
import statistics

from tools.bench.rig import run_workload

# workload -> its key in the figures, and how many operations per n
_WORKLOADS = (("calls", "per_inbound_call", 1), ("meter", "per_meter_values", 0.5))


def process_cpu_us(tmp, lib, n, repeats=3):
    """User+system CPU microseconds of the twin process per operation (its rusage: every
    thread, kernel time included): the median of `repeats` pairs of runs."""
    out = {}
    for workload, key, share in _WORKLOADS:
        k = int(n * share)
        per_op = []
        for _ in range(repeats):
            used = [run_workload([workload, str(m), "STATE"], tmp, lib)[2] for m in (k, 2 * k)]
            per_op.append((used[1] - used[0]) / k * 1e6)
        out[key] = round(statistics.median(per_op))
    return out


def instructions(tmp, lib, n):
    """callgrind's instruction count per operation: (figures, None) or (None, why not)."""
    if shutil.which("valgrind") is None:
        return None, "valgrind not installed (apt-get install valgrind)"
    out = {}
    for workload, key, _ in _WORKLOADS:
        counts = []
        for k in (n, 2 * n):
            _, count, _ = run_workload([workload, str(k), "STATE"], tmp, lib, valgrind=True)
            if count is None:
                return None, "valgrind gave no instruction count"
            counts.append(count)
        out[key] = (counts[1] - counts[0]) // n
    return out, None
