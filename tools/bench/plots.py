"""The report's plots (matplotlib, no display): heap over the reference scenario, heap over
the in-process sessions, reaction times."""
import os

from tools.bench.reactions import REACTIONS
from tools.bench.rig import HEAP


def draw(out, refs, sessions, reaction_samples, microocpp_peak):
    """Writes the plots there is data for into `out`; their file names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        written.append(name)

    fig, ax = plt.subplots(figsize=(10, 4.5))
    _heap(ax, refs, microocpp_peak)
    save(fig, "heap.png")
    if sessions and sessions.get("points"):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        xs, ys = zip(*sessions["points"])
        ax.plot(xs, [y / 1000 for y in ys], marker=".", linewidth=1)
        ax.set_xlabel("sessions completed (in-process, fake clock)")
        ax.set_ylabel("live heap (KB)")
        ax.set_ylim(0, max(ys) / 1000 * 1.2)
        ax.set_title("Live heap over %d sessions" % xs[-1])
        save(fig, "sessions.png")
    names = [n for n in REACTIONS if (reaction_samples or {}).get(n)]
    if names:
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.boxplot([reaction_samples[n] for n in names], whis=(1, 99), showfliers=True)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels([n.replace("_to_", "\n→ ").replace("_", " ") for n in names],
                           fontsize=7)
        trip = reaction_samples.get("control_round_trip")
        if trip:
            ax.axhline(sorted(trip)[len(trip) // 2], color="grey", linestyle=":", linewidth=0.8,
                       label="control round trip, p50 (25 ms settle included)")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms (control socket round trip included)")
        ax.set_title("Reaction times, %d repetitions each" % len(reaction_samples[names[0]]))
        save(fig, "reactions.png")
    return written


def _heap(ax, refs, microocpp_peak):
    for code in ("frozen", "deployed"):
        r = refs.get(code)
        if r and r["samples"]:
            ts, used = zip(*r["samples"])
            label = "%s code" % code
            if r["heap"] != HEAP:
                label += " (run at -X heapsize=%d)" % r["heap"]
            ax.plot(ts, [u / 1000 for u in used], label=label, linewidth=1.2,
                    color="tab:blue" if code == "frozen" else "tab:orange")
    first = next((refs[c] for c in ("frozen", "deployed") if refs.get(c) and refs[c]["events"]),
                 None)
    if first:
        for i, (t, name) in enumerate(first["events"]):
            ax.axvline(t, color="grey", linestyle=":", linewidth=0.8)
            ax.text(t, 0.02 + 0.3 * (i % 2), " " + name, rotation=90, fontsize=7,
                    va="bottom", color="dimgrey", transform=ax.get_xaxis_transform())
        ax.text(0.01, 0.98, "events: %s code run" % first["code"], fontsize=7, va="top",
                color="dimgrey", transform=ax.transAxes)
    total = next((r["total"] for r in refs.values() if r and r.get("heap") == HEAP), None)
    if total:
        ax.axhline(total / 1000, color="black", linestyle="--", linewidth=0.8,
                   label="usable heap at -X heapsize=%d" % HEAP)
    ax.axhline(microocpp_peak / 1000, color="tab:red", linestyle="--", linewidth=0.8,
               label="MicroOcpp peak (ESP32)")
    ax.set_xlabel("seconds since the simulator started")
    ax.set_ylabel("live heap after gc.collect() (KB)")
    ax.set_title("Reference scenario on the device twin, -X heapsize=%d" % HEAP)
    ax.set_ylim(bottom=0)
    ax.legend(loc="center right", fontsize=8)
