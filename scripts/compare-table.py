"""The table and the chart of scripts/compare-redis.sh, from its results.jsonl.

Writes DIR/results.md (the table, with the date, the machine and what limited each run) and
DIR/chart.gp (a gnuplot script for DIR/compare.png, with its data beside it). Every figure is
the median of the runs of one scenario against one server, all made in the same session, the
two servers alternating; the runs themselves are listed below the table.

usage: python3 scripts/compare-table.py DIR
"""
import json
import statistics
import sys
from collections import defaultdict

out = sys.argv[1]
runs = defaultdict(list)
for r in map(json.loads, open(f"{out}/results.jsonl")):
    runs[r["scenario"], r["proto"]].append(r)
machine = open(f"{out}/machine.txt").read().splitlines()
date = machine[0]
model = next((l.split(":", 1)[1].strip() for l in machine if l.startswith("Model name")), "?")
cpus = next((l.split(":", 1)[1].strip() for l in machine if l.startswith("CPU(s)")), "?")
hypervisor = next((l.split(":", 1)[1].strip() for l in machine if l.startswith("Hypervisor")), "")
redis = next((w for l in machine if l.startswith("Redis") for w in l.split() if w.startswith("v=")), "v=?")
SCENARIOS = [s for s in ("idle", "fanout-line", "fanout-batch", "fanout-trickle", "latency", "chatty")
             if (s, "pollchat") in runs and (s, "redis") in runs]


def memory(r):
    """Bytes per idle connection: the server's RSS, the kernel's (server's end), both."""
    user, kernel = r.get("rss_bytes_per_conn", 0), r.get("kernel_bytes_per_conn", 0)
    return user, kernel, user + kernel


def dps(r):
    return r["deliveries_per_sec"]


def lat(r):
    return (r["latency_us_p50"] / 1000, r["latency_us_p99"] / 1000)


def per_write(r):
    return (r.get("lines_per_write", 0), r.get("bytes_per_write", 0))


FANOUT = [
    ("deliveries per second", dps, "{:,.0f}", "higher is better"),
    ("deliveries / bytes per server write call", per_write, "{:.1f} / {:,.0f}", "the batching"),
    ("p50 / p99 latency (ms)", lat, "{:.2f} / {:.2f}", "p99 ratio"),
    ("server / generator CPU (s)", lambda r: (r["server_cpu_secs"], r["generator_traffic_cpu_secs"]), "{:.2f} / {:.2f}", "of the traffic time"),
]
PACED = [
    ("deliveries per second", dps, "{:,.0f}", "set by the load"),
    ("p50 / p99 latency (ms)", lat, "{:.3f} / {:.3f}", "p99 ratio"),
    ("server CPU (s)", lambda r: r["server_cpu_secs"], "{:.2f}", "lower is better"),
]
ROWS = {
    "fanout-line": FANOUT, "fanout-batch": FANOUT, "fanout-trickle": FANOUT,
    "latency": PACED, "chatty": PACED,
    "idle": [
        ("server RSS per idle connection (bytes)", lambda r: memory(r)[0], "{:,.0f}", "lower is better"),
        ("kernel per idle connection, server's end (bytes)", lambda r: memory(r)[1], "{:,.0f}", "socket slab caches"),
        ("user + kernel per idle connection (bytes)", lambda r: memory(r)[2], "{:,.0f}", "lower is better"),
    ],
}


def median(scenario, proto, get):
    """The median of a measure over the runs (each part of a pair on its own)."""
    values = [get(r) for r in runs[scenario, proto]]
    if isinstance(values[0], tuple):
        return tuple(statistics.median(v[i] for v in values) for i in range(len(values[0])))
    return statistics.median(values)


def ratio(p, r):
    if isinstance(p, tuple):
        p, r = p[-1], r[-1]
    if isinstance(p, tuple):
        p, r = p[0], r[0]
    return p / r if r else float("nan")


count = min(len(v) for v in runs.values())
lines = [
    f"Measured {date} on {cpus} x {model} ({hypervisor} virtual machine); Redis {redis[2:]}.",
    f"Server pinned to core 0, generator (pollchat-bench, one thread) to core 1; medians of {count} runs",
    "per server, the two servers alternating.",
    "",
    "| scenario | measure | pollchat | Redis | pollchat/Redis | |",
    "|---|---|---|---|---|---|",
]
for scenario in SCENARIOS:
    for name, get, fmt, note in ROWS[scenario]:
        p, r = median(scenario, "pollchat", get), median(scenario, "redis", get)
        show = (lambda v: fmt.format(*v)) if isinstance(p, tuple) else fmt.format
        # For the batching row the ratio is of lines per write; for pairs, of the last.
        q = p[0] / r[0] if get is per_write and r[0] else ratio(p, r)
        lines.append(f"| {scenario} | {name} | {show(p)} | {show(r)} | {q:.2f} | {note} |")
lines += ["", "Every run:", "",
          "| scenario | server | run | deliveries/s | per write call | p99 (ms) | limit | established | failed | delivered of expected |",
          "|---|---|---|---|---|---|---|---|---|---|"]
for scenario in SCENARIOS:
    for proto in ("pollchat", "redis"):
        for r in runs[scenario, proto]:
            limit = r["limit"] if scenario != "idle" else "none (no traffic)"
            lines.append(f"| {scenario} | {proto} | {r.get('run', 1)} | {dps(r):,.0f} | {per_write(r)[0]:.1f} | "
                         f"{r['latency_us_p99'] / 1000:.2f} | {limit} | {r['established']} | {r['failed']} | "
                         f"{r['delivered']:,} of {r['expected']:,} |")
table = "\n".join(lines)
open(f"{out}/results.md", "w").write(table + "\n")
print()
print(table)

# The chart: one panel per question, each with its unit and its ratio in the title.
fan_shapes = [s for s in ("fanout-line", "fanout-batch", "fanout-trickle") if s in SCENARIOS]
with open(f"{out}/chart-fanout.dat", "w") as f:
    f.write("# shape pollchat redis (million deliveries/s, medians)\n")
    for s in fan_shapes:
        f.write(f"{s[7:]} {median(s, 'pollchat', dps) / 1e6} {median(s, 'redis', dps) / 1e6}\n")
panels = []
if fan_shapes:
    panels.append(f"""set title "fan-out to 1,000 by sender shape: deliveries/s (millions)\\nhigher is better"
set ylabel "million deliveries per second"
set xtics format "%s"
plot "{out}/chart-fanout.dat" using 2:xtic(1) title "pollchat" lc rgb "#3366cc", "" using 3 title "Redis" lc rgb "#cc3333"
set xtics format \"\"""")


def bars(name, pair, text, unit, better):
    p, r = pair
    with open(f"{out}/chart-{name}.dat", "w") as f:
        f.write(f"# pollchat redis\n{name} {p} {r}\n")
    return f"""set title "{text}\\npollchat/Redis = {p / r:.2f} ({better} is better)"
set ylabel "{unit}"
plot "{out}/chart-{name}.dat" using 2 title "pollchat" lc rgb "#3366cc", "" using 3 title "Redis" lc rgb "#cc3333\""""


if "latency" in SCENARIOS:
    p99 = lambda r: r["latency_us_p99"]
    panels.append(bars("latency", (median("latency", "pollchat", p99), median("latency", "redis", p99)),
                       "100 clients x 10 lines/s: p99 latency (µs)", "p99 latency, microseconds", "lower"))
if "chatty" in SCENARIOS:
    p99 = lambda r: r["latency_us_p99"] / 1000
    panels.append(bars("chatty", (median("chatty", "pollchat", p99), median("chatty", "redis", p99)),
                       "500 clients x 5 lines/s: p99 latency (ms)", "p99 latency, milliseconds", "lower"))
if "idle" in SCENARIOS:
    mem = [median("idle", p, memory) for p in ("pollchat", "redis")]
    with open(f"{out}/chart-memory.dat", "w") as f:
        f.write("# part pollchat redis\n")
        for i, part in enumerate(("RSS", "kernel", "total")):
            f.write(f"{part} {mem[0][i]} {mem[1][i]}\n")
    panels.append(f"""set title "idle connection, RSS + kernel: bytes (log)\\npollchat/Redis = {mem[0][2] / mem[1][2]:.2f} (lower is better)"
set ylabel "bytes per idle connection"
set logscale y
set yrange [100:100000]
set xtics format "%s"
plot "{out}/chart-memory.dat" using 2:xtic(1) title "pollchat" lc rgb "#3366cc", "" using 3 title "Redis" lc rgb "#cc3333\"""")

gp = f"""set terminal pngcairo size {330 * max(len(panels), 1) + 100},420 font ",9"
set output "{out}/compare.png"
set multiplot layout 1,{max(len(panels), 1)} title "pollchat vs Redis {redis[2:]} pub/sub, {date[:10]}, {cpus} x {model} ({hypervisor}): server on core 0, generator on core 1, medians of {count} runs"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key outside bottom center horizontal
set xtics format ""
set grid ytics
set yrange [0:*]
""" + "\n".join(panels) + "\nunset multiplot\n"
open(f"{out}/chart.gp", "w").write(gp)
