#!/usr/bin/python3
"""The collaboration scenarios of `make sim` (tests/sim/scenarios/*.ini), each in sync and
DiLoCo mode, against the cluster alone.

For each scenario:
  - the cluster alone (the same configuration without volunteers: the HPC reference);
  - the collaboration in sync mode (every step's gradient averaged);
  - the collaboration in DiLoCo mode (inner steps of 256 sequences per worker, H = 50, int8
    both ways; its loss axis the measured make-experiment DiLoCo curve, so DiLoCo's lower
    sample efficiency is carried over);
and reports, read back with conflux-report --format json:
  - the time to the target validation loss and its ratio to the cluster alone;
  - the cost to the target: the cluster's GPUs and the bridge VM at on-demand prices (below),
    preemptible nodes at spot prices, home volunteers free; and its ratio;
  - the bridge link's utilisation (bytes over the run's time over the link's rate, each way);
  - the volunteer count at which one bridge becomes the bottleneck: the scenario's volunteers
    are multiplied (x2, x4, ... up to 4096 volunteers) in short runs, each run twice, with the
    scenario's bridge and with an ideal one (a link 1000x faster, no processing time); the
    first count at which the run makes less than 90% of the ideal bridge's samples per second;
    "none up to N" when none does.
usage: scenarios.py BIN_DIR OUT_DIR [SCENARIO...] [--markdown FILE]
Exit status: 0, or 1 when a simulation fails.
"""
import configparser
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCEN = os.path.join(HERE, "scenarios")
TARGET = 7.6
# $ per hour: a V100 (AWS p3, on demand, per GPU), the bridge's VM, a preemptible T4 (spot)
PRICE_GPU, PRICE_BRIDGE = 3.06, 0.50
PRICE_PROFILE = {"t4-preemptible": 0.16}
DILOCO = ["--set", "run.mode=diloco", "--set", "run.global_batch=256", "--set", "run.steps=1500",
          "--set", "run.inner_steps=50", "--set", "run.eval_every=50",
          "--set", "run.loss_curve=tests/data/sim/experiment/diloco/metrics.csv"]


def sim(bindir, ini, out, extra):
    t0 = time.time()
    r = subprocess.run([os.path.join(bindir, "conflux-sim"), "--config", ini, "--out", out, "-q"] + extra,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("scenarios: conflux-sim failed on %s %s: %s" % (ini, " ".join(extra), r.stderr.strip()))
    return time.time() - t0


def report(bindir, d):
    r = subprocess.run([os.path.join(bindir, "conflux-report"), "--target-loss", str(TARGET), "--format", "json", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("scenarios: conflux-report failed on %s: %s" % (d, r.stderr.strip()))
    return json.loads(r.stdout)["runs"][0]


def profiles(ini):
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
    cp.read(ini)
    out = []
    for s in cp.sections():
        if s.startswith("profile.") and cp.getint(s, "count", fallback=0) > 0:
            out.append((s, cp.get(s, "name"), cp.getint(s, "count")))
    return cp, out


def bridge_util(d, cp):
    """The bridge link's busy share each way: bytes over the run's time over the link's rate."""
    rows = open(os.path.join(d, "bridge.csv")).read().split("\n")[1:]
    rows = [r.split(",") for r in rows if r]
    if not rows:
        return 0.0, 0.0
    wall = float(rows[-1][0])
    sent = sum(float(r[15]) for r in rows)
    recv = sum(float(r[16]) for r in rows)
    up = cp.getfloat("bridge", "up_mbps") * 1e6 / 8
    down = cp.getfloat("bridge", "down_mbps") * 1e6 / 8
    return sent / wall / up, recv / wall / down


def cost_to_target(run, cp, profs, t):
    """$ to the target: the cluster's GPUs and the bridge for t seconds, priced volunteers for
    their connected hours scaled to t."""
    hours = t / 3600
    c = cp.getint("cluster", "trainers") * PRICE_GPU * hours
    if profs:
        c += PRICE_BRIDGE * hours
        wall = run["wall_s"] or t
        for p in run["participants"]:
            if p["kind"] == "volunteer":
                name = p["name"].rsplit("-", 1)[0] if p["name"].rsplit("-", 1)[-1].isdigit() else p["name"]
                c += PRICE_PROFILE.get(name, 0.0) * (p["hours"] or 0) * min(1.0, t / wall)
    return c


def rate_of(d):
    rows = [r.split(",") for r in open(os.path.join(d, "metrics.csv")).read().split("\n")[1:] if r]
    return (float(rows[-1][2]) - float(rows[0][2])) / max(float(rows[-1][0]) - float(rows[0][0]), 1e-9)


def bottleneck(bindir, ini, out, profs, cp, mode_args):
    """The volunteer count at which the bridge limits the run: the scenario's volunteers
    multiplied by 2, 4, ... (up to 4096), each in a short run twice, with the scenario's bridge
    and with an ideal one (a link 1000x faster, no processing time); the first count at which
    the run reaches less than 90% of the ideal bridge's samples per second."""
    base = sum(n for _, _, n in profs)
    short = ["--set", "run.steps=%d" % (8 if not mode_args else 300), "--set", "run.eval_every=0",
             "--set", "run.loss_curve="]
    ideal = ["--set", "bridge.up_mbps=%g" % (1000 * cp.getfloat("bridge", "up_mbps")),
             "--set", "bridge.down_mbps=%g" % (1000 * cp.getfloat("bridge", "down_mbps")),
             "--set", "bridge.process_s=0", "--set", "bridge.process_s_per_upload=0"]
    k = 1
    while base * k <= 4096:
        sets = ["--set", "bridge.wait_volunteers=%d" % (base * k)]
        for sec, _, n in profs:
            sets += ["--set", "%s.count=%d" % (sec, n * k)]
        d = os.path.join(out, "sweep-%d" % (base * k))
        sim(bindir, ini, d, mode_args + short + sets)
        sim(bindir, ini, d + "-ideal", mode_args + short + sets + ideal)
        real, best = rate_of(d), rate_of(d + "-ideal")
        if real < 0.9 * best:
            u_out, u_in = bridge_util(d, cp)
            return "%d (%.0f%% of an ideal bridge's samples/s; link %.0f%% / %.0f%% busy)" % (
                base * k, 100 * real / best, 100 * u_out, 100 * u_in)
        k *= 2
    return "none up to %d" % (base * k // 2)


def main():
    args = [a for a in sys.argv[1:]]
    md = None
    if "--markdown" in args:
        md = args[args.index("--markdown") + 1]
        del args[args.index("--markdown"):args.index("--markdown") + 2]
    if len(args) < 2:
        print(__doc__.split("usage: ")[1].split("\n")[0], file=sys.stderr)
        return 2
    bindir, out = args[0], args[1]
    names = args[2:] or ["dedloc-server", "dedloc-workstation", "dedloc-hybrid", "sahajbert", "home-1000"]
    lines = ["| scenario | mode | volunteers | time to target | x cluster | cost to target | x cluster "
             "| bridge link out / in | bridge bottleneck at |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name in names:
        ini = os.path.join(SCEN, name + ".ini")
        cp, profs = profiles(ini)
        nvol = sum(n for _, _, n in profs)
        d0 = os.path.join(out, name, "cluster")
        zero = []
        for sec, _, _ in profs:
            zero += ["--set", "%s.count=0" % sec]
        s0 = sim(bindir, ini, d0, zero)
        r0 = report(bindir, d0)
        t0 = r0["target"]["time_s"]
        c0 = cost_to_target(r0, cp, [], t0) if t0 else None
        print("scenarios: %-18s cluster alone: time to target %s (%.1f s to simulate)"
              % (name, "%.0f s" % t0 if t0 else "not reached", s0))
        lines.append("| %s | cluster alone | 0 | %s | 1.00 | %s | 1.00 | - | - |"
                     % (name, "%.0f s" % t0 if t0 else "not reached", "$%.2f" % c0 if c0 else "-"))
        for mode, margs in (("sync", []), ("diloco", DILOCO)):
            d = os.path.join(out, name, mode)
            s = sim(bindir, ini, d, margs)
            r = report(bindir, d)
            t = r["target"]["time_s"]
            c = cost_to_target(r, cp, profs, t) if t else None
            u_out, u_in = bridge_util(d, cp)
            bn = bottleneck(bindir, ini, os.path.join(out, name, mode + "-sweep"), profs, cp, margs)
            ts = "%.0f s" % t if t else "not reached"
            xr = "%.2f" % (t / t0) if t and t0 else "-"
            cs = "$%.2f" % c if c else "-"
            xc = "%.2f" % (c / c0) if c and c0 else "-"
            print("scenarios: %-18s %-6s time to target %s (x%s), cost %s (x%s), bridge link %.0f%% out / %.0f%% in, "
                  "bottleneck at %s (%.1f s to simulate)" % (name, mode, ts, xr, cs, xc, 100 * u_out, 100 * u_in, bn, s))
            lines.append("| %s | %s | %d | %s | %s | %s | %s | %.0f%% / %.0f%% | %s |"
                         % (name, mode, nvol, ts, xr, cs, xc, 100 * u_out, 100 * u_in, bn))
    text = "\n".join(lines) + "\n"
    print(text)
    if md:
        open(md, "w").write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
