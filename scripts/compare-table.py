"""The table and the chart of scripts/compare-redis.sh, from its results.jsonl.

Writes DIR/results.md (the table, with the date, the machine and what limited each run) and
DIR/chart.gp (a gnuplot script for DIR/compare.png, with its data beside it). Every figure
comes from one run of each scenario against each server, made in the same session.

usage: python3 scripts/compare-table.py DIR
"""
import json
import sys

out = sys.argv[1]
runs = {(r["scenario"], r["proto"]): r for r in map(json.loads, open(f"{out}/results.jsonl"))}
machine = open(f"{out}/machine.txt").read().splitlines()
date = machine[0]
model = next((l.split(":", 1)[1].strip() for l in machine if l.startswith("Model name")), "?")
cpus = next((l.split(":", 1)[1].strip() for l in machine if l.startswith("CPU(s)")), "?")
hypervisor = next((l.split(":", 1)[1].strip() for l in machine if l.startswith("Hypervisor")), "")
redis = next((w for l in machine if l.startswith("Redis") for w in l.split() if w.startswith("v=")), "v=?")


def memory(r):
    """Bytes per idle connection: the server's RSS, the kernel's (server's end), both."""
    user, kernel = r.get("rss_bytes_per_conn", 0), r.get("kernel_bytes_per_conn", 0)
    return user, kernel, user + kernel


ROWS = [
    # scenario, measure, how to get it, format, note
    ("fanout", "deliveries per second", lambda r: r["deliveries_per_sec"], "{:,.0f}", "higher is better"),
    ("fanout", "p50 / p99 latency (ms)", lambda r: (r["latency_us_p50"] / 1000, r["latency_us_p99"] / 1000), "{:.2f} / {:.2f}", "p99 ratio"),
    ("fanout", "line time by Little's law (ms)", lambda r: r["line_time_us"] / 1000, "{:.2f}", "64 x receivers in flight / rate"),
    ("fanout", "server / generator CPU (s)", lambda r: (r["server_cpu_secs"], r["generator_traffic_cpu_secs"]), "{:.2f} / {:.2f}", "of the traffic time below"),
    ("fanout", "traffic time (s)", lambda r: r["traffic_secs"], "{:.2f}", ""),
    ("latency", "deliveries per second", lambda r: r["deliveries_per_sec"], "{:,.0f}", "set by the load"),
    ("latency", "p50 / p99 latency (ms)", lambda r: (r["latency_us_p50"] / 1000, r["latency_us_p99"] / 1000), "{:.3f} / {:.3f}", "p99 ratio"),
    ("latency", "server CPU (s)", lambda r: r["server_cpu_secs"], "{:.2f}", "lower is better"),
    ("chatty", "deliveries per second", lambda r: r["deliveries_per_sec"], "{:,.0f}", "set by the load"),
    ("chatty", "p50 / p99 latency (ms)", lambda r: (r["latency_us_p50"] / 1000, r["latency_us_p99"] / 1000), "{:.2f} / {:.2f}", "p99 ratio"),
    ("chatty", "server CPU (s)", lambda r: r["server_cpu_secs"], "{:.2f}", "lower is better"),
    ("idle", "server RSS per idle connection (bytes)", lambda r: memory(r)[0], "{:,.0f}", "lower is better"),
    ("idle", "kernel per idle connection, server's end (bytes)", lambda r: memory(r)[1], "{:,.0f}", "socket slab caches"),
    ("idle", "user + kernel per idle connection (bytes)", lambda r: memory(r)[2], "{:,.0f}", "lower is better"),
]


def ratio(p, r):
    if isinstance(p, tuple):
        p, r = p[-1], r[-1]
    return p / r if r else float("nan")


lines = [
    f"Measured {date} on {cpus} x {model} ({hypervisor} virtual machine); Redis {redis[2:]}.",
    "Server pinned to core 0, generator (pollchat bench, one thread) to core 1.",
    "",
    "| scenario | measure | pollchat | Redis | pollchat/Redis | |",
    "|---|---|---|---|---|---|",
]
for scenario, name, get, fmt, note in ROWS:
    p, r = get(runs[scenario, "pollchat"]), get(runs[scenario, "redis"])
    show = (lambda v: fmt.format(*v)) if isinstance(p, tuple) else fmt.format
    lines.append(f"| {scenario} | {name} | {show(p)} | {show(r)} | {ratio(p, r):.2f} | {note} |")
lines += ["", "| scenario | server | limit | established | failed | delivered of expected |", "|---|---|---|---|---|---|"]
for scenario in ("idle", "fanout", "latency", "chatty"):
    for proto in ("pollchat", "redis"):
        r = runs[scenario, proto]
        limit = r["limit"] if scenario != "idle" else "none (no traffic)"
        lines.append(f"| {scenario} | {proto} | {limit} | {r['established']} | {r['failed']} | "
                     f"{r['delivered']:,} of {r['expected']:,} |")
table = "\n".join(lines)
open(f"{out}/results.md", "w").write(table + "\n")
print()
print(table)

# The chart: one panel per question, each with its unit and its ratio in the title.
fan = [runs["fanout", p]["deliveries_per_sec"] / 1e6 for p in ("pollchat", "redis")]
lat = [runs["latency", p]["latency_us_p99"] for p in ("pollchat", "redis")]
chat = [runs["chatty", p]["latency_us_p99"] / 1000 for p in ("pollchat", "redis")]
mem = [memory(runs["idle", p]) for p in ("pollchat", "redis")]
receivers = runs["fanout", "pollchat"]["receivers"]
with open(f"{out}/chart-bars.dat", "w") as f:
    f.write("# panel pollchat redis\n")
    f.write(f"fanout {fan[0]} {fan[1]}\nlatency {lat[0]} {lat[1]}\nchatty {chat[0]} {chat[1]}\n")
with open(f"{out}/chart-memory.dat", "w") as f:
    f.write("# part pollchat redis\n")
    for i, part in enumerate(("RSS", "kernel", "total")):
        f.write(f"{part} {mem[0][i]} {mem[1][i]}\n")


def title(text, p, r, better):
    return f"{text}\\npollchat/Redis = {p / r:.2f} ({better} is better)"


gp = f"""set terminal pngcairo size 1300,420 font ",9"
set output "{out}/compare.png"
set multiplot layout 1,4 title "pollchat vs Redis {redis[2:]} pub/sub, {date[:10]}, {cpus} x {model} ({hypervisor}): server on core 0, generator on core 1"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key outside bottom center horizontal
set xtics format ""
set grid ytics
set yrange [0:*]
set title "{title(f"fan-out, 1 sender to {receivers:,}: deliveries/s (millions)", *fan, "higher")}"
set ylabel "million deliveries per second"
plot "{out}/chart-bars.dat" every ::0::0 using 2 title "pollchat" lc rgb "#3366cc", "" every ::0::0 using 3 title "Redis" lc rgb "#cc3333"
set title "{title("100 clients x 10 lines/s: p99 latency (µs)", *lat, "lower")}"
set ylabel "p99 latency, microseconds"
plot "{out}/chart-bars.dat" every ::1::1 using 2 title "pollchat" lc rgb "#3366cc", "" every ::1::1 using 3 title "Redis" lc rgb "#cc3333"
set title "{title("500 clients x 5 lines/s: p99 latency (ms)", *chat, "lower")}"
set ylabel "p99 latency, milliseconds"
plot "{out}/chart-bars.dat" every ::2::2 using 2 title "pollchat" lc rgb "#3366cc", "" every ::2::2 using 3 title "Redis" lc rgb "#cc3333"
set title "{title("idle connection, RSS + kernel: bytes (log)", mem[0][2], mem[1][2], "lower")}"
set ylabel "bytes per idle connection"
set logscale y
set yrange [100:100000]
set xtics format "%s"
plot "{out}/chart-memory.dat" using 2:xtic(1) title "pollchat" lc rgb "#3366cc", "" using 3 title "Redis" lc rgb "#cc3333"
unset multiplot
"""
open(f"{out}/chart.gp", "w").write(gp)
