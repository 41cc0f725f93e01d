"""Benchmarks of the firmware on the device twin, with Mosquitto and the development Central
System.

    python3 -m tools.bench [--quick | --smoke] [--out DIR] [--keep] [--only bridge|crypto]
                                                                    (or `make bench`)

Measures code size (mpy-cross, frozen image), heap (idle, peak, per transaction, growth over
1000 sessions, smallest -X heapsize that still passes; what a local list of 1000 idTags, 10
charging profiles and a running firmware download add), reaction times through the control
socket, CPU per inbound call and per MeterValues, a fleet of chargers on one broker and
one Central System, the fleet bridge (tools/bridge) with 1000 light chargers, and the
public-key arithmetic on the twin (each operation's time, longest slice, ESP32 estimate).
Writes DIR/BENCHMARKS.md and plots (DIR/heap.png, DIR/sessions.png, DIR/reactions.png; DIR
defaults to docs/) and prints one JSON object on its last line. Every
key is present whatever happened; a phase that failed leaves null values and a line in
"errors", and the exit status is 1.

  (default)  the full run: 60 s reference session, 100 repetitions per reaction time,
             1000 in-process sessions, bisection to 2 KB, a fleet of 50 for 60 s
  --quick    the same with a 15 s reference session
  --smoke    under a minute: every figure, few repetitions, a fleet of 3, a two-step
             bisection (an upper bound at best), the bridge with 20 chargers
  --only bridge|crypto  that phase alone; its section and JSON key of DIR/BENCHMARKS.md are
             replaced, the rest of the report is kept

Everything runs on 127.0.0.1, every loop is bounded, and every process started here (brokers,
simulators, their firmware) is stopped on the way out, Ctrl-C and SIGTERM included. The
device twins are built if missing (tools/twin.py); Mosquitto is installed with `make
mosquitto` if missing. The simulators' state lives in a temporary folder (kept with --keep).

One module per phase: sizes, heap, profiles, reactions, cpu, fleet, bridge, crypto; rig (processes,
simulators, the in-process workloads), report and plots (the markdown), run (the command line);
workloads.py runs on the twin itself.
"""
