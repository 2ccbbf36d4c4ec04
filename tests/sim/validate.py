#!/usr/bin/python3
"""Simulates `make experiment`'s runs with conflux-sim and compares them with the real ones.

For each real run (hpc, sync, diloco, churn) it measures, from that run's own files only:
  - the trainers' speed: their samples over metrics.csv's compute_s;
  - the trainers' per-step overhead (median of time between steps minus compute_s and comm_s)
    and the validation pass (the same after a step with valid_loss, minus that overhead);
  - the bridge's work per round before its all-reduce (sync: median of bridge.csv's time
    between rounds minus wait_s and allreduce_s and the step overhead; diloco runs take the
    sync run's, their bridge.csv not separating it);
  - each volunteer's compute speed (its --stats CSV: share samples over compute seconds);
  - the links: experiment.sh's profiles (wan_link_up ID RTT JITTER LOSS UP DOWN), each rate
    capped at what the sync run's volunteer measured downloading over it (the link emulator's
    ceiling);
  - joins, leaves and kills: volunteers.csv's joined and disconnected events (disconnections
    the bridge decided, for lagging, are left to the simulated bridge);
  - the exchanged parameters: from the sync run's upload bytes (fp16 with the chunk framing).
Then it writes one conflux-sim configuration per run (with the run's own metrics.csv as the
loss curve), runs conflux-sim, reads both with conflux-report --format json and prints, per
run, the time to the target validation loss and the samples of each participant, real and
simulated, and the relative errors. The last line:
  sim-validate: time_to_target_err=E samples_err=F
E: the largest relative error of the time to target; F: the largest relative error of a
participant's samples among participants that trained at least 5% of their run's samples
(smaller ones are listed with their share of the run, which relative errors would blow up).
usage: validate.py EXPERIMENT_DIR BIN_DIR OUT_DIR [TARGET_LOSS] [--markdown FILE]
Exit status: 0, or 1 when a run is missing or a tool fails.
"""
import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXPERIMENT_SH = os.path.join(HERE, "..", "bench", "experiment.sh")


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def link_profiles():
    """experiment.sh's links by volunteer name: rtt_ms, loss (fraction), up, down (Mbit/s)."""
    text = open(EXPERIMENT_SH).read()
    links = {}
    for m in re.finditer(r"^wan_link_up (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", text, re.M):
        links[m.group(1)] = dict(rtt_ms=float(m.group(2)), loss=float(m.group(4)) / 100,
                                 up=float(m.group(5)), down=float(m.group(6)))
    names = {}
    for m in re.finditer(r"volunteer \$name (\d+) (\w+)", text):
        names[m.group(2)] = links[m.group(1)]
    return names


def step_overheads(m):
    """(step overhead, validation pass) of a trainer's metrics.csv, in seconds."""
    over, after = [], []
    for i in range(1, len(m)):
        o = float(m[i]["time_s"]) - float(m[i - 1]["time_s"]) - float(m[i]["compute_s"]) - float(m[i]["comm_s"])
        (after if m[i - 1]["valid_loss"] else over).append(o)
    step_s = max(statistics.median(over), 0.0)
    eval_s = max(statistics.mean(after) - step_s, 0.0) if after else 0.0
    return step_s, eval_s


def vol_speed(path):
    r = rows(path)
    s = sum(int(x["share_samples"]) for x in r)
    c = sum(float(x["compute_s"]) for x in r)
    return s / c if c > 0 else None


def down_mbps(path):
    r = [x for x in rows(path) if float(x["download_steady_s"]) > 0]
    if not r:
        return None
    return statistics.median(float(x["download_steady_bytes"]) * 8 / float(x["download_steady_s"]) / 1e6 for x in r)


def exchanged_params(sync_stats):
    """Parameters of the exchanged vector from an fp16 upload's bytes (2 per element plus
    76 bytes of framing per 131072-element chunk)."""
    b = max(int(x["upload_bytes"]) for x in rows(sync_stats))
    for chunks in range(1, 100000):
        n = (b - 76 * chunks) // 2
        if math.ceil(n / 131072) == chunks:
            return n
    raise SystemExit("validate: cannot size the parameters from %s" % sync_stats)


def trace_of(run_dir, name):
    """The volunteer's joins and kills from the run's volunteers.csv. A disconnection the bridge
    decided for lagging ("rounds behind") and the reconnect that follows it are left out: the
    simulated bridge makes those decisions itself."""
    ev, skip_join = [], False
    for x in rows(os.path.join(run_dir, "volunteers.csv")):
        if x["name"] != name:
            continue
        t = float(x["time_s"])
        if x["event"] == "joined":
            if skip_join:
                skip_join = False
            elif not ev or ev[-1][1] != "join":
                ev.append((t, "join"))
        elif x["event"] == "disconnected" and ev and ev[-1][1] == "join":
            if "rounds behind" in x["detail"]:
                skip_join = True
            else:
                ev.append((t, "kill"))
    return ev


def config_for(run, exp, params, links, process_s):
    d = os.path.join(exp, run)
    m = rows(os.path.join(d, "metrics.csv"))
    cfg = json.load(open(os.path.join(d, "run.json")))["config"]
    ranks = json.load(open(os.path.join(d, "run.json")))["ranks"]
    mode = cfg["averaging"]["mode"]
    gb = int(cfg["train"]["global_batch"])
    step_s, eval_s = step_overheads(m)
    comp = sum(float(x["compute_s"]) for x in m)
    if os.path.exists(os.path.join(d, "bridge.csv")) and mode == "sync":
        trainer_samples = sum(int(x["trainer_samples"]) for x in rows(os.path.join(d, "bridge.csv")))
    else:
        trainer_samples = gb * len(m)  # each step: the global batch (diloco: the cluster's inner batch)
    rate = trainer_samples / comp / ranks
    lines = ["[run]", "mode = %s" % mode, "steps = %d" % len(m), "global_batch = %d" % gb,
             "inner_steps = %s" % cfg["averaging"]["inner_steps"], "params = %d" % params,
             "seq_len = %s" % cfg["data"]["seq_len"], "eval_every = %s" % cfg["train"]["eval_every"],
             "eval_s = %.4f" % eval_s, "step_s = %.4f" % step_s,
             "loss_curve = %s" % os.path.abspath(os.path.join(d, "metrics.csv")),
             "[bridge]", "deadline_s = 20", "up_mbps = 10000", "down_mbps = 10000", "latency_ms = 0",
             "probe_samples = %s" % cfg["train"]["micro_batch"], "process_s = %.4f" % process_s,
             "wait_volunteers = %d" % (2 if run == "churn" else 3),
             "[cluster]", "trainers = %d" % ranks, "samples_per_s = %.3f" % rate]
    measured = {"trainer_samples_per_s": rate, "step_s": step_s, "eval_s": eval_s}
    if os.path.exists(os.path.join(d, "volunteers.csv")):
        for i, (name, link) in enumerate(sorted(links.items()), 1):
            tr = trace_of(d, name)
            if not tr:
                continue
            # a volunteer killed and restarted: its --stats file is the last process's only
            # (the restart replaces it), so it takes its speed from the diloco run (the same
            # participants and mode, no churn)
            joins = sum(1 for _, e in tr if e == "join")
            src = run if joins == 1 else "diloco"
            speed = vol_speed(os.path.join(exp, "%s.%s.stats.csv" % (src, name)))
            measured["%s speed source" % name] = src
            cap = down_mbps(os.path.join(exp, "sync.%s.stats.csv" % name)) or link["down"]
            up, down = min(link["up"], cap), min(link["down"], cap)
            lines += ["[profile.%d]" % i, "name = %s" % name, "count = 1",
                      "samples_per_s = %.3f" % (speed or rate), "up_mbps = %.3f" % up,
                      "down_mbps = %.3f" % down, "latency_ms = %.3f" % (link["rtt_ms"] / 2),
                      "loss = %.4f" % link["loss"],
                      "trace = %s" % ",".join("%.3f:%s" % te for te in tr)]
            measured[name] = {"samples_per_s": speed, "up_mbps": up, "down_mbps": down}
    return "\n".join(lines) + "\n", measured


def report(bindir, dirs, target):
    out = subprocess.run([os.path.join(bindir, "conflux-report"), "--target-loss", str(target),
                          "--format", "json"] + dirs, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("validate: conflux-report failed: %s" % out.stderr.strip())
    return json.loads(out.stdout)["runs"]


def by_name(run):
    s = {}
    for p in run["participants"]:
        if p["kind"] not in ("trainer", "volunteer"):
            continue
        s[p["name"]] = s.get(p["name"], 0) + (p["samples"] or 0)
    return s


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    md = None
    if "--markdown" in sys.argv:
        md = sys.argv[sys.argv.index("--markdown") + 1]
        args.remove(md)
    if len(args) < 3:
        print(__doc__.split("usage: ")[1].split("\n")[0], file=sys.stderr)
        return 2
    exp, bindir, out = args[0], args[1], args[2]
    target = float(args[3]) if len(args) > 3 else 7.6
    os.makedirs(out, exist_ok=True)
    links = link_profiles()
    params = exchanged_params(os.path.join(exp, "sync.fast.stats.csv"))
    sb = rows(os.path.join(exp, "sync", "bridge.csv"))
    step_sync, _ = step_overheads(rows(os.path.join(exp, "sync", "metrics.csv")))
    process_s = max(statistics.median(float(sb[i]["time_s"]) - float(sb[i - 1]["time_s"]) - float(sb[i]["wait_s"])
                                      - float(sb[i]["allreduce_s"]) for i in range(1, len(sb))) - step_sync, 0.0)
    print("validate: exchanged parameters %d; the bridge's work per round %.3f s (sync run)" % (params, process_s))
    t_err, s_err, table = 0.0, 0.0, []
    for run in ["hpc", "sync", "diloco", "churn"]:
        if not os.path.isdir(os.path.join(exp, run)):
            print("validate: %s: no such run in %s" % (run, exp), file=sys.stderr)
            return 1
        ini, measured = config_for(run, exp, params, links, process_s)
        path = os.path.join(out, run + ".ini")
        open(path, "w").write(ini)
        sim_dir = os.path.join(out, run)
        r = subprocess.run([os.path.join(bindir, "conflux-sim"), "--config", path, "--out", sim_dir, "-q"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("validate: conflux-sim failed on %s: %s" % (path, r.stderr.strip()), file=sys.stderr)
            return 1
        real, sim = report(bindir, [os.path.join(exp, run), sim_dir], target)
        tr, ts = real["target"]["time_s"], sim["target"]["time_s"]
        if tr is None or ts is None:
            print("validate: %s: the target %.2f is not reached (real %s, simulated %s)" % (run, target, tr, ts))
            return 1
        e = abs(ts - tr) / tr
        t_err = max(t_err, e)
        print("validate: %-6s time to target: real %7.2f s, simulated %7.2f s (%+.1f%%); wall %.1f s vs %.1f s"
              % (run, tr, ts, 100 * (ts - tr) / tr, real["wall_s"], sim["wall_s"]))
        table.append((run, "time to target (s)", tr, ts, (ts - tr) / tr))
        rs, ss = by_name(real), by_name(sim)
        total = sum(rs.values())
        for name in sorted(rs):
            a, b = rs[name], ss.get(name, 0.0)
            if a >= 0.05 * total:
                e = abs(b - a) / a
                s_err = max(s_err, e)
                note = "%+.1f%%" % (100 * (b - a) / a)
            else:
                note = "%.2f%% of the run's samples (below 5%%: not in samples_err)" % (100 * abs(b - a) / total)
            print("validate: %-6s   %-8s samples: real %7.0f, simulated %7.0f  %s" % (run, name, a, b, note))
            table.append((run, name + " samples", a, b, (b - a) / a if a else float("nan")))
    if md:
        with open(md, "w") as f:
            f.write("| run | quantity | real | simulated | error |\n|---|---|---:|---:|---:|\n")
            for run, q, a, b, e in table:
                f.write("| %s | %s | %.2f | %.2f | %s |\n" % (run, q, a, b, "%+.1f%%" % (100 * e) if e == e else "-"))
    print("sim-validate: time_to_target_err=%.3f samples_err=%.3f" % (t_err, s_err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
