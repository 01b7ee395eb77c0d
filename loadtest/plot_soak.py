"""Plots a soak's samples: the proxy's RSS, open descriptors and idle pooled connections over
time, with the faults marked. Run by soak.py under a python3 that has matplotlib:

    python3 loadtest/plot_soak.py SAMPLES.json OUT.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"reload": "tab:green", "kill -9 + restart": "tab:red", "rolling restart": "tab:orange",
           "slow clients": "tab:purple"}


def main(data_path: str, out: str):
    data = json.load(open(data_path))
    samples, events = data["samples"], data["events"]
    t = [s["t"] for s in samples]
    series = [("rss_mib", "RSS (MiB)"), ("fds", "open descriptors"),
              ("idle_pooled", "idle pooled upstream connections"),
              ("open_client_connections", "open client connections")]
    fig, axes = plt.subplots(len(series), 1, figsize=(11, 9), sharex=True)
    for ax, (key, label) in zip(axes, series):
        ax.plot(t, [s[key] for s in samples], lw=1.2, color="black")
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        for event in events:
            colour = COLOURS.get(event["kind"], "grey")
            if event["end"] - event["start"] > 0.5:
                ax.axvspan(event["start"], event["end"], color=colour, alpha=0.12, lw=0)
            else:
                ax.axvline(event["start"], color=colour, alpha=0.5, lw=0.8)
    handles = [plt.Line2D([], [], color=c, lw=4, alpha=0.5, label=k) for k, c in COLOURS.items()]
    axes[0].legend(handles=handles, fontsize=7, loc="upper left", ncol=4)
    axes[-1].set_xlabel("seconds since the traffic started")
    fig.suptitle(data["title"])
    fig.tight_layout()
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
