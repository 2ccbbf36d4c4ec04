// conflux-sim: a collaboration simulated on SimGrid with the bridge's own round logic
// (bridge/sim/sim.h). Writes a run directory that conflux-report reads as any other.
//
// Exit status: 0 success, 1 runtime failure, 2 usage error.
// Errors read "conflux-sim: error: what (where)".
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge/sim/sim.h"
#include "models/common.h"

#define TOOL "conflux-sim"

static const char usage_text[] =
    "usage: " TOOL " [--config FILE.ini] [--set section.key=value]... [--out RUN_DIR]\n"
    "                   [--print-config] [-q]\n"
    "\n"
    "Simulates a collaborative run (a cluster, one bridge, volunteers on internet links) on\n"
    "SimGrid's flow-level network model, on a simulated clock. The bridge's decisions (plans,\n"
    "deadlines, staleness, drops, diloco outer rounds) are made by the same round core as\n"
    "conflux-bridge's (bridge/round_core.h); compute takes the configured samples/s; every\n"
    "message has its real size (codec x parameters, with the protocol's framing). Writes\n"
    "RUN_DIR/run.json (\"simulated\": true), metrics.csv, bridge.csv and volunteers.csv;\n"
    "conflux-report compares it with real runs and marks it simulated. The loss columns come\n"
    "from a real run's metrics.csv (run.loss_curve), read against samples trained.\n"
    "The same configuration and seed give the same files.\n"
    "\n"
    "  --config FILE     INI configuration (sections below); --set overrides one key\n"
    "  --out DIR         the run directory (run.dir; default sim-run)\n"
    "  --print-config    print the full configuration as INI and exit\n"
    "  -q, --quiet       no progress lines\n"
    "  -h, --help        this text\n"
    "\n"
    "Configuration:\n"
    "  [run]      mode (sync|diloco), steps (optimizer steps; diloco: the cluster's inner\n"
    "             steps), global_batch (sync: samples per step; diloco: per inner step of a\n"
    "             worker), inner_steps (H), params, up_codec/down_codec (fp32|fp16|int8;\n"
    "             default sync fp16 up and fp32 down, diloco int8 both ways), seq_len,\n"
    "             eval_every, eval_s (one validation pass), step_s (one optimizer step),\n"
    "             loss_curve (a real run's metrics.csv), seed, tcp (bbr|cubic: how random\n"
    "             loss lowers a flow's rate)\n"
    "  [bridge]   deadline_s, max_staleness, history, plan_equal, probe_samples, max_share,\n"
    "             wait_volunteers, wait_timeout_s, overlap (diloco), up_mbps, down_mbps,\n"
    "             latency_ms (its link, shared by every volunteer's transfers)\n"
    "  [cluster]  trainers, samples_per_s (one trainer rank), interconnect_gbps,\n"
    "             interconnect_latency_us (the gradient's ring all-reduce, bridge included)\n"
    "  [profile.1] .. [profile.8]   volunteers: name, count, samples_per_s, speed_sigma\n"
    "             (log-normal spread), up_mbps, down_mbps, latency_ms (one way), loss,\n"
    "             join_s, join_spread_s, stay_s (mean stint, exponential; 0: to the end),\n"
    "             stay_max_s, away_s (mean gap before rejoining; 0: never), leave\n"
    "             (kill: a share in hand is lost | graceful: leaves between rounds)\n"
    "\n"
    "Example (from the repository: tests/sim/scenarios/ holds the scenarios make sim runs):\n"
    "  " TOOL " --config tests/sim/scenarios/dedloc-hybrid.ini --out /tmp/sim-hybrid\n"
    "  conflux-report --target-loss 7.6 /tmp/sim-hybrid\n";

static void usage(FILE *f) { fputs(usage_text, f); }

int main(int argc, char **argv) {
    SimConfig c;
    sim_defaults(&c);
    char err[CX_ERRLEN];
    int quiet = 0, print = 0;
    const char *out = NULL;
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"out", required_argument, 0, 'o'},    {"print-config", no_argument, 0, 'p'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    // the configuration file first, whatever its place, then the --set overrides in order
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        const char *file = NULL;
        if (!strcmp(argv[i], "--config") && i + 1 < argc) file = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9)) file = argv[i] + 9;
        if (file && cfg_load_file(&SIM_SCHEMA, &c, file, err) != 0) {
            fprintf(stderr, TOOL ": error: %s\n", err);
            return 2;
        }
    }
    int o;
    while ((o = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': break;
        case 's':
            if (cfg_set(&SIM_SCHEMA, &c, optarg, err) != 0) {
                fprintf(stderr, TOOL ": error: %s\n", err);
                return 2;
            }
            break;
        case 'o': out = optarg; break;
        case 'p': print = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, TOOL ": error: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (out) snprintf(c.dir, sizeof c.dir, "%s", out);
    if (sim_check(&c, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 2;
    }
    if (print) {
        static char ini[1 << 16];
        cfg_to_ini(&SIM_SCHEMA, &c, ini, sizeof ini);
        fputs(ini, stdout);
        return 0;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (sim_run(&c, quiet, err) != 0) {
        fprintf(stderr, TOOL ": error: %s\n", err);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!quiet)
        fprintf(stderr, TOOL ": wrote %s (%.1f s of computing)\n", c.dir,
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
