#!/usr/bin/env python3
"""Turns one bench/run.sh run into BENCHMARKS.md-ready Markdown tables.

    report.py OUT_DIR CRITERION_DIR [--quick]

Reads OUT_DIR/results.txt ("<test> <design> <run> RESULT k=v ..."),
OUT_DIR/callgrind.txt ("<body> <ops> <ir> <ir_per_op>"), OUT_DIR/machine.txt
and the criterion estimates; prints the tables. Every ratio is against a
baseline measured in the same run. Targets are marked met / not met.
"""
import json
import os
import statistics
import sys

out_dir, crit_dir = sys.argv[1], sys.argv[2]
quick = "--quick" in sys.argv


def mark(ok):
    if ok is None:
        return "–"
    return "**met**" if ok else "**not met**"


def fmt(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


# ------------------------------------------------------------ criterion
def crit(group, fn):
    # Criterion turns "/" inside a function name into "_" (a BenchmarkId's
    # parameter is a subdirectory instead: "userlane/8").
    if not group.startswith("fanout"):
        fn = fn.replace("/", "_")
    path = os.path.join(crit_dir, group, fn, "new", "estimates.json")
    try:
        with open(path) as f:
            e = json.load(f)
    except OSError:
        return None
    m = e["median"]
    return (m["point_estimate"], m["confidence_interval"]["lower_bound"], m["confidence_interval"]["upper_bound"])


def ns(v, per=1):
    if v is None:
        return "–"
    p, lo, hi = (x / per for x in v)
    return f"{p:,.1f} ns [{lo:,.1f}–{hi:,.1f}]"


lines = []
w = lines.append
summary = []


def target(area, name, measured, ok):
    """Records a target for the summary table; returns its bullet text."""
    summary.append(f"| {area} | {name} | {measured} | {mark(ok)} |")
    return f"target {name}: {measured} → {mark(ok)}"

w("### Micro-benchmarks (criterion, median [95 % CI of the median])\n")
w("`send_to_user`: 10,000 users (80 % one connection, 20 % two or three), 64-byte `Arc<[u8]>` payload, "
  "queues drained untimed every 10,000 sends. *by id* looks the user up by id first (as B-map does); "
  "*by handle* uses the `ManagerHandle` the application keeps.\n")
g = "send_to_user_10k"
by_id, by_h, bmap, brw = (crit(g, f) for f in ("userlane_by_id", "userlane_by_handle", "b_map", "b_rw"))
w("| design | time per send | B-map ÷ this |")
w("|---|---:|---:|")
for name, v in (("userlane, by id", by_id), ("userlane, by handle", by_h), ("B-map (`Mutex<HashMap>`)", bmap), ("B-rw (`RwLock<HashMap>`)", brw)):
    r = bmap[0] / v[0] if (v and bmap) else None
    w(f"| {name} | {ns(v)} | {fmt(r, 2)}× |")
w("")
t1 = by_id and by_id[0] <= 100
t2 = (by_id and bmap) and bmap[0] / by_id[0] >= 2
w("- " + target("send_to_user", "≤ 100 ns median (by id)", f"{fmt(by_id[0] if by_id else None, 1)} ns", bool(t1)))
w("- " + target("send_to_user", "≤ 100 ns median (by handle)", f"{fmt(by_h[0] if by_h else None, 1)} ns", bool(by_h and by_h[0] <= 100)))
w("- " + target("send_to_user", "≥ 2× faster than B-map (by id)", f"{fmt(bmap[0] / by_id[0] if (by_id and bmap) else None, 2)}×", bool(t2)) + "\n")

g = "send_to_user_10k_churn"
w("Throughput while a second thread churns connect + disconnect (userlane through the async shim "
  "`SharedFactory` with a `std::sync::Mutex` raw mutex, one shard; B-map through its global mutex):\n")
w("| churn | userlane (shim) per send | B-map per send | throughput ratio |")
w("|---|---:|---:|---:|")
churn_ok = None
churn_r = None
for label, title in (("50k_ops", "50,000 ops/s"), ("flat_out", "flat out")):
    u, b = crit(g, f"userlane_shim/{label}"), crit(g, f"b_map/{label}")
    r = b[0] / u[0] if (u and b) else None
    if label == "50k_ops":
        churn_ok = r is not None and r >= 3
        churn_r = r
    w(f"| {title} | {ns(u)} | {ns(b)} | {fmt(r, 2)}× |")
w("")
w("- " + target("send_to_user", "≥ 3× B-map throughput under churn (50,000 ops/s)", f"{fmt(churn_r, 2)}×", churn_ok) + "\n")

w("Fan-out of one message to every connection of one user; a delivery is the publish plus the consumer "
  "taking the message (userlane: `send_to_user`, then `drain_events` + `poll_transmit` per connection):\n")
w("| fan-out | userlane | async-broadcast (B-bcast) | embassy `PubSubChannel` | B-map channels | userlane ÷ B-bcast |")
w("|---|---:|---:|---:|---:|---:|")
fan_ok = []
for n in (8, 10000):
    g = f"fanout_{n}"
    u, ab, em, bm = (crit(g, f"{d}/{n}") for d in ("userlane", "async_broadcast", "embassy_pubsub", "b_map_channels"))
    r = (u[0] / ab[0]) if (u and ab) else None
    fan_ok.append((n, u[0] / n if u else None, r))
    w(f"| {n:,} connections, per delivery | {ns(u, n)} | {ns(ab, n)} | {ns(em, n)} | {ns(bm, n)} | {fmt(r, 2)}× |")
w("")
for n, per, r in fan_ok:
    w("- " + target(f"fan-out to {n:,}", "≤ 30 ns per delivery", f"{fmt(per, 1)} ns", per is not None and per <= 30))
    w("- " + target(f"fan-out to {n:,}", "≤ 1.5× B-bcast per delivery", f"{fmt(r, 2)}×", r is not None and r <= 1.5))
w("")
w("| lifecycle | userlane | B-map | B-map ÷ userlane |")
w("|---|---:|---:|---:|")
for op, title in (("connect_disconnect", "connect + disconnect"), ("create_reclaim", "create + reclaim manager")):
    u, b = crit("lifecycle", f"{op}/userlane"), crit("lifecycle", f"{op}/b_map")
    w(f"| {title} | {ns(u)} | {ns(b)} | {fmt(b[0] / u[0] if (u and b) else None, 2)}× |")
w("")

# ------------------------------------------------------------ callgrind
cg = {}
try:
    with open(os.path.join(out_dir, "callgrind.txt")) as f:
        for line in f:
            body, ops, ir, per = line.split()
            cg[body] = float(per)
except OSError:
    pass
if cg:
    w("### Instruction counts (valgrind callgrind, per operation; deterministic)\n")
    w("| body | instructions per op | per delivery | ratio to B-map |")
    w("|---|---:|---:|---:|")
    base = {"send": "send_b_map", "connect": "connect_disconnect_b_map", "create": "create_reclaim_b_map",
            "fanout8": "fanout8_b_map", "fanout10k": "fanout10k_b_map"}
    for body, per in cg.items():
        key = body.split("_")[0]
        b = cg.get(base.get(key, ""), None)
        deliveries = 8 if key == "fanout8" else 10000 if key == "fanout10k" else None
        w(f"| `{body}` | {fmt(per, 1)} | {fmt(per / deliveries, 1) if deliveries else '–'} | {fmt(per / b, 2) + '×' if b else '–'} |")
    if "send_userlane_by_id" in cg and "send_b_map" in cg:
        r = cg["send_userlane_by_id"] / cg["send_b_map"]
        w("\n- " + target("instructions", "≤ 0.5× B-map per send (perf anchors P1)", f"{r:.2f}×", r <= 0.5))
    w("")

# ------------------------------------------------------------ system
results = {}
try:
    with open(os.path.join(out_dir, "results.txt")) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or parts[3] != "RESULT":
                continue
            test, design, run = parts[0], parts[1], parts[2]
            kv = {}
            for p in parts[5:]:
                if "=" in p:
                    k, v = p.split("=", 1)
                    kv[k] = v
            results.setdefault((test, design), []).append(kv)
except OSError:
    pass


def vals(test, design, key):
    out = []
    for kv in results.get((test, design), []):
        try:
            out.append(float(kv[key]))
        except (KeyError, ValueError):
            pass
    return out


def med(test, design, key):
    v = vals(test, design, key)
    return statistics.median(v) if v else None


def spread(test, design, key, digits=0, scale=1.0):
    v = [x * scale for x in vals(test, design, key)]
    if not v:
        return "–"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt(m, digits)
    return f"{fmt(m, digits)} ({fmt(min(v), digits)}–{fmt(max(v), digits)})"


def ratio(a, b):
    return a / b if (a is not None and b) else None


runs = max((len(v) for v in results.values()), default=0)
w(f"### System benchmarks (median of {runs} run(s), min–max in brackets; server and client pinned to different cores)\n")

w("**Echo** (request/response; userlane: every message goes through `ServerHandle::send_to_user` of the sender's user):\n")
w("| profile | userlane msgs/s | B-echo msgs/s | ratio | userlane msgs per server CPU-s | B-echo msgs per CPU-s | ratio |")
w("|---|---:|---:|---:|---:|---:|---:|")
echo_ok = []
for test, title in (("echo20", "100 conns × 20 B"), ("echo1k", "10 conns × 1 KiB")):
    a, b = med(test, "userlane", "msgs_per_s"), med(test, "b-echo", "msgs_per_s")
    c, d = med(test, "userlane", "msgs_per_cpu_s"), med(test, "b-echo", "msgs_per_cpu_s")
    r1, r2 = ratio(a, b), ratio(c, d)
    echo_ok.append((title, r1, r2))
    w(f"| {title} | {spread(test, 'userlane', 'msgs_per_s')} | {spread(test, 'b-echo', 'msgs_per_s')} | {fmt(r1, 2)}× "
      f"| {spread(test, 'userlane', 'msgs_per_cpu_s')} | {spread(test, 'b-echo', 'msgs_per_cpu_s')} | {fmt(r2, 2)}× |")
w("")
for title, r1, r2 in echo_ok:
    w("- " + target(f"echo {title}", "≥ 0.9× B-echo msgs/s", f"{fmt(r1, 2)}×", r1 is not None and r1 >= 0.9))
    w("- " + target(f"echo {title}", "≥ 0.9× B-echo msgs per server CPU-second", f"{fmt(r2, 2)}×", r2 is not None and r2 >= 0.9))
w("")

conns = med("fanout", "userlane", "conns")
w(f"**Fan-out** ({fmt(conns)} connections, one user each; bursts of "
  f"{fmt(med('fanout', 'userlane', 'per_burst'))} publishes of {fmt(med('fanout', 'userlane', 'size'))} B to every user; "
  "latency from the publish timestamp in the payload to the client's read, same `CLOCK_MONOTONIC`):\n")
w("| design | deliveries/s | p50 latency | p99 latency | max | server CPU-s |")
w("|---|---:|---:|---:|---:|---:|")
for design, title in (("userlane", "userlane (send_to_user per user, writers batch)"), ("b-raw", "B-raw (one write per socket per message)")):
    w(f"| {title} | {spread('fanout', design, 'deliveries_per_s')} | {spread('fanout', design, 'p50_us', 1, 1e-3)} ms "
      f"| {spread('fanout', design, 'p99_us', 1, 1e-3)} ms | {spread('fanout', design, 'max_us', 1, 1e-3)} ms | {spread('fanout', design, 'server_cpu_s', 2)} |")
r = ratio(med("fanout", "userlane", "deliveries_per_s"), med("fanout", "b-raw", "deliveries_per_s"))
w("\n- " + target(f"fan-out {fmt(conns)} conns", "deliveries/s ≥ 0.7× B-raw", f"{fmt(r, 2)}×", r is not None and r >= 0.7) + "\n")

n_idle = med("idle", "userlane", "conns")
w(f"**Idle memory** ({fmt(n_idle)} idle connections; (RSS − RSS before connecting) ÷ connections; kernel socket memory excluded):\n")
w("| server | bytes per connection | ratio to B-echo |")
w("|---|---:|---:|")
u = med("idle", "userlane", "bytes_per_conn")
be = med("idle", "b-echo", "bytes_per_conn")
bd = med("idle", "b-echo-default", "bytes_per_conn")
w(f"| userlane-smol (4 KiB read / 4 KiB write buffers) | {spread('idle', 'userlane', 'bytes_per_conn')} | {fmt(ratio(u, be), 2)}× |")
w(f"| B-echo, same buffers | {spread('idle', 'b-echo', 'bytes_per_conn')} | 1.00× |")
w(f"| B-echo, tungstenite default buffers (128 KiB read) | {spread('idle', 'b-echo-default', 'bytes_per_conn')} | {fmt(ratio(bd, be), 2)}× |")
w("")
w("- " + target("idle memory", "≤ 1.1× B-echo per connection", f"{fmt(ratio(u, be), 2)}×", bool(u is not None and be and u / be <= 1.1)))
w("- " + target("idle memory", "≤ 10 KiB per connection in total", f"{fmt(u)} B", u is not None and u <= 10240))
w("- " + target("idle memory", "≤ 0.15× the default-buffer server (perf anchors P4; measured on B-echo, since `ServerConfig` refuses read buffers above 8 KiB)",
               f"{fmt(ratio(u, bd), 3)}×", bool(u is not None and bd and u / bd <= 0.15)) + "\n")

# ------------------------------------------------------------ peers
skipped = {}
try:
    with open(os.path.join(out_dir, "skipped.txt")) as f:
        for line in f:
            if line.strip():
                design, _, why = line.strip().partition(" ")
                skipped[design] = why
except OSError:
    pass
PEERS = (("tt-default", "tokio-tungstenite, default config (128 KiB read buffer)"),
         ("tt-4k", "tokio-tungstenite, 4 KiB buffers (as userlane)"),
         ("fastws", "fastwebsockets (hyper upgrade)"),
         ("node-ws", "Node.js `ws`, one process"))
# A measurement at the offered rate counts only if the server answered at
# least this share of it with no error and the client's core stayed below
# CLIENT_MAX busy: then the client did not limit the server.
REACHED, CLIENT_MAX = 0.95, 0.80


def per_run(test, design, num, den):
    v = []
    for kv in results.get((test, design), []):
        try:
            d = float(kv[den])
            if d > 0:
                v.append(float(kv[num]) / d)
        except (KeyError, ValueError):
            pass
    return v


def rate_check(test, design):
    """None if the run at the offered rate is valid, else why not."""
    runs = results.get((test, design), [])
    if not runs:
        return "no result"
    why = []
    for kv in runs:
        if "error" in kv or float(kv.get("errors", 1)) > 0:
            why.append(f"error {kv.get('error', kv.get('errors'))}")
        elif float(kv.get("msgs_per_s", 0)) < REACHED * float(kv.get("offered_per_s", 0) or 1e18):
            why.append(f"reached {fmt(float(kv['msgs_per_s']))} of {fmt(float(kv['offered_per_s']))} msgs/s")
        elif float(kv.get("client_cpu_share", 1)) >= CLIENT_MAX:
            why.append(f"client core {float(kv['client_cpu_share']):.0%} busy")
    return "; ".join(why) or None


def not_run(design):
    return f"not run: {skipped.get(design, 'no result')}"


def rate_cell(test, design):
    if not vals(test, design, "msgs_per_cpu_s"):
        return not_run(design), "–"
    cell = spread(test, design, "msgs_per_cpu_s")
    bad = rate_check(test, design)
    if bad:
        cell += f" (not valid: {bad})"
    ctx = (f"{spread(test, design, 'msgs_per_s')} msgs/s, server {spread(test, design, 'server_cpu_share', 0, 100)} %, "
           f"client {spread(test, design, 'client_cpu_share', 0, 100)} %")
    return cell, ctx


offered = med("echo20r", "userlane", "offered_per_s")
w(f"**userlane vs peers** (echo at a fixed offered rate of {fmt(offered)} msgs/s in all, spread over the connections, "
  "below the load client's ceiling; headline: messages per server CPU-second; the same client, pinning and run for every server. "
  f"A figure counts only if the server answered ≥ {REACHED:.0%} of the offered rate without an error and the client's core "
  f"stayed below {CLIENT_MAX:.0%} busy, from its own CPU clock; the context column gives answered msgs/s and both cores' busy share):\n")
w("| server | 100 conns × 20 B: msgs per server CPU-s | context | 10 conns × 1 KiB: msgs per server CPU-s | context | idle bytes per connection |")
w("|---|---:|---|---:|---|---:|")
for design, title in (("userlane", "**userlane-smol** (4 KiB buffers, echo through `send_to_user`)"), ("b-echo", "B-echo (baseline: smol + async-tungstenite, no manager)")) + PEERS:
    a, actx = rate_cell("echo20r", design)
    b, bctx = rate_cell("echo1kr", design)
    idle_cell = spread("idle", design, "bytes_per_conn") if vals("idle", design, "bytes_per_conn") else not_run(design)
    w(f"| {title} | {a} | {actx} | {b} | {bctx} | {idle_cell} |")
w("")
for test, title in (("echo20r", "100 conns × 20 B"), ("echo1kr", "10 conns × 1 KiB")):
    u = med(test, "userlane", "msgs_per_cpu_s") if rate_check(test, "userlane") is None else None
    valid = [(med(test, d, "msgs_per_cpu_s"), t) for d, t in PEERS if vals(test, d, "msgs_per_cpu_s") and rate_check(test, d) is None]
    best = max(valid, default=(None, None))
    r = ratio(u, best[0])
    measured = f"{fmt(r, 2)}× (best peer: {best[1]})" if r is not None else "– (" + ("userlane's run not valid: " + str(rate_check(test, "userlane")) if u is None else "no valid peer") + ")"
    w(f"- {title}: " + target(f"echo {title} vs peers", "≥ 1.05× the best peer's msgs per server CPU-second", measured, None if r is None else r >= 1.05))
u = med("idle", "userlane", "bytes_per_conn")
peer_idle = [(med("idle", d, "bytes_per_conn"), t) for d, t in PEERS if vals("idle", d, "bytes_per_conn")]
best = min(peer_idle, default=(None, None))
r = ratio(u, best[0])
w("- " + target("idle memory vs peers", "≤ 0.5× the leanest peer per connection",
               f"{fmt(r, 2)}× (leanest peer: {best[1]})" if r is not None else "– (no peer)", None if r is None else r <= 0.5))
w("")
w(f"**Fan-out vs a peer** ({fmt(conns)} connections as above; deliveries per server CPU-second = deliveries ÷ the server's CPU "
  "during the bursts; the peer is tokio + tokio-tungstenite with one bounded `tokio::sync::mpsc` channel (depth 64) per connection "
  "in a `Mutex<HashMap>` registry, a writer task per connection that feeds what its channel holds and flushes once):\n")
w("| design | deliveries per server CPU-s | deliveries/s | p99 latency | incomplete bursts |")
w("|---|---:|---:|---:|---:|")
fan = {}
for design, title in (("userlane", "userlane (send_to_user per user)"), ("peer-fanout", "peer: tokio + per-connection mpsc channels")):
    v = per_run("fanout", design, "deliveries", "server_cpu_s")
    if not v:
        w(f"| {title} | {not_run(design)} | – | – | – |")
        continue
    fan[design] = statistics.median(v) if v else None
    cell = "–" if not v else (fmt(fan[design]) if len(v) == 1 else f"{fmt(fan[design])} ({fmt(min(v))}–{fmt(max(v))})")
    w(f"| {title} | {cell} | {spread('fanout', design, 'deliveries_per_s')} | {spread('fanout', design, 'p99_us', 1, 1e-3)} ms "
      f"| {spread('fanout', design, 'incomplete_bursts')} |")
r = ratio(fan.get("userlane"), fan.get("peer-fanout"))
w("\n- " + target("fan-out vs peer", "≥ 1.0× the peer's deliveries per server CPU-second", f"{fmt(r, 2)}×", None if r is None else r >= 1.0) + "\n")

w("**Slow consumers** (10 of the clients stop reading — their process is SIGSTOPped — during a paced fan-out; "
  "the other clients' latency, the server's RSS and the 1013 closes):\n")
w("| run | healthy p50 | healthy p99 | server RSS growth | slow closed 1013 (server / client) | detection after stop | deadline | ")
w("|---|---:|---:|---:|---:|---:|---:|")
size = med("slow", "with", "size") or 16384
rate = med("slow", "with", "rate") or 25
det, dl = [], []
for kv_w, kv_h in zip(results.get(("slow", "with"), []), results.get(("slow-hold", "with"), [])):
    closes = kv_w.get("slow_closes_ms_seq_n", "-")
    if closes == "-":
        continue
    ms = [int(c.split(":")[0]) for c in closes.split(",")]
    seqs = [int(c.split(":")[1]) for c in closes.split(",")]
    seq_stop = int(kv_w.get("seq_at_stop", 0))
    det.append(max(ms) / 1000)
    dl.append((max(seqs) - seq_stop) / float(kv_w.get("rate", rate)))
server_closed = []
for kv in results.get(("slow", "with"), []):
    c = kv.get("slow_closes_ms_seq_n", "-")
    server_closed.append(0 if c == "-" else sum(int(x.split(":")[2]) for x in c.split(",")))
client_closed = vals("slow-hold", "with", "closed_1013")
for design, title in (("without", "without slow clients"), ("with", "with 10 slow clients")):
    extra = ""
    if design == "with":
        extra = (f"{fmt(statistics.median(server_closed)) if server_closed else '–'} / {fmt(statistics.median(client_closed)) if client_closed else '–'} "
                 f"| {fmt(statistics.median(det), 2) if det else '–'} s | {fmt(statistics.median(dl), 2) if dl else '–'} s |")
    else:
        extra = "– | – | – |"
    w(f"| {title} | {spread('slow', design, 'p50_us', 1, 1e-3)} ms | {spread('slow', design, 'p99_us', 1, 1e-3)} ms "
      f"| {spread('slow', design, 'rss_growth_kib', 0)} KiB | {extra}")
p99w, p99o = med("slow", "with", "p99_us"), med("slow", "without", "p99_us")
gw, go = med("slow", "with", "rss_growth_kib"), med("slow", "without", "rss_growth_kib")
cap_kib = (10 * (64 * (size + 14) + (4096 + 2 * 65536 + 1024)) + 1024 * 1024) / 1024
w("")
w(f"- deadline = time for a stopped client's path to fill at the publish rate ({fmt(rate)} msgs/s of {fmt(size)} B): "
  "kernel socket buffers plus the 64-message queue, from the sequence number that found the queue full; "
  "detection = SIGSTOP → the server's 1013 decision.")
w("- " + target("slow consumers", "slow clients closed with 1013", f"server {server_closed or '–'}, client close frames {[int(x) for x in client_closed] or '–'}",
               bool(server_closed) and all(x == 10 for x in server_closed) and bool(client_closed) and all(x == 10 for x in client_closed)))
ok_det = bool(det) and all(a <= 2 * b for a, b in zip(det, dl))
w("- " + target("slow consumers", "closed within 2× the deadline", ", ".join(f"{a:.2f} s vs {b:.2f} s" for a, b in zip(det, dl)) or "–", ok_det if det else None))
w("- " + target("slow consumers", "server RSS within the queue caps", f"{fmt((gw or 0) - (go or 0))} KiB caused by the slow clients (cap {fmt(cap_kib)} KiB)",
               None if (gw is None or go is None) else gw - go <= cap_kib)
  + f" — growth with − growth without; cap = 10 × (64 × frame + max write buffer) + 1 MiB; absolute growth {fmt(gw)} KiB with, {fmt(go)} KiB without "
  "(every connection's tungstenite write buffer grows to hold one frame)")
r = ratio(p99w, p99o)
w("- " + target("slow consumers", "healthy p99 ≤ 1.2× the run without slow clients", f"{fmt(r, 2)}×", None if r is None else r <= 1.2) + "\n")

try:
    with open(os.path.join(out_dir, "machine.txt")) as f:
        w("### Machine and run\n")
        w("```")
        w(f.read().rstrip())
        w("```")
except OSError:
    pass
print("\n".join(["### Targets at a glance\n", "| area | target | measured | verdict |", "|---|---|---|---|"] + summary + [""] + lines))
