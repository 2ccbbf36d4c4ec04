// conflux-report: compares recorded runs (time to a target validation loss, throughput,
// compute utilization, traffic, participant-hours, cost) and plots them with gnuplot.
// Reads only run.json, metrics.csv, bridge.csv and volunteers.csv of each run directory.
//
// Exit status: 0 success, 1 runtime failure (files, data, gnuplot), 2 usage error.
// Errors read "conflux-report: error: what (file:line)".
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/eval/report.h"
#include "io/run/runlog.h"
#include "models/common.h"

#define TOOL "conflux-report"

static const char usage_text[] =
    "usage: " TOOL " [--target-loss X] [--baseline RUN_DIR] [--prices FILE.ini]\n"
    "                      [--format text|markdown|csv|json] [--plots DIR] RUN_DIR...\n"
    "\n"
    "Compares training runs recorded by conflux-train (and conflux-bridge): for each run a\n"
    "table of time to a target validation loss, samples/s, compute utilization, bytes sent\n"
    "and received per participant, participant-hours and cost; then every run against the\n"
    "baseline. Reads only RUN_DIR/run.json, metrics.csv and, for collaborative runs,\n"
    "bridge.csv and volunteers.csv.\n"
    "\n"
    "  --target-loss X   validation loss to reach. Time to target: the first validation at\n"
    "                    or below X, interpolated linearly in time (and samples) from the\n"
    "                    last validation above X; \"not reached\" otherwise\n"
    "  --baseline DIR    the run the others are compared with (default: the first RUN_DIR;\n"
    "                    a DIR not among them is added in front)\n"
    "  --prices FILE     prices in $ per hour (INI, below); without it no cost is shown\n"
    "  --format F        text (default), markdown, csv (one row per run) or json\n"
    "  --plots DIR       also write PNG plots with gnuplot into DIR (created if needed):\n"
    "                    loss_vs_time.png, loss_vs_samples.png, throughput.png,\n"
    "                    contribution.png; plus their data and plots.gp to redraw them.\n"
    "                    The GNUPLOT environment variable names another gnuplot program\n"
    "  -h, --help        this text\n"
    "\n"
    "What the numbers mean:\n"
    "  wall time          the trainer's clock at its last step; a resumed run's segments\n"
    "                     are added up (the time between preemption and restart is not)\n"
    "  mode               sync (a gradient sum every step) or diloco, H=N (outer rounds of\n"
    "                     N inner steps): run.json's config averaging.mode\n"
    "  samples/s          samples processed (repeated steps count again) / wall time; in\n"
    "                     diloco mode the data cursor also covers the volunteers' ranges\n"
    "  compute util.      sum compute_s / sum (compute_s + comm_s) of trainer rank 0: the\n"
    "                     time-weighted share of each step spent computing\n"
    "  traffic            trainer ranks: the MPI all-reduce estimate of metrics.csv, per\n"
    "                     rank; volunteers: the bridge's summary row (sent = their uploads);\n"
    "                     bridge (WAN): bridge.csv, all volunteers together\n"
    "  bytes/participant  sent + received, the mean over trainer ranks and volunteers\n"
    "  WAN bytes/sample   bridge (WAN) bytes in + out / trained samples (the trainers'\n"
    "                     plus the volunteers' accepted ones)\n"
    "  samples            accepted samples: trainers' split evenly over the ranks (from\n"
    "                     bridge.csv in collaborative runs); volunteers' accepted and\n"
    "                     accepted-stale events\n"
    "  participant-hours  trainer ranks x wall time + each volunteer's connected time: from\n"
    "                     each 'joined' to its 'left', 'kicked', 'lost' or 'unfinished', or\n"
    "                     else to its last event before it joins again or the log ends\n"
    "                     (the bridge logs nothing when an idle connection drops). The\n"
    "                     bridge rank computes no gradients and is not a participant\n"
    "  cost               nodes x wall hours x the node price + each volunteer's connected\n"
    "                     hours x its price; cost to target stops the clock at the target\n"
    "  ratios             run / baseline (time to target, samples/s, cost)\n"
    "\n"
    "Prices file (INI; ';' or '#' start comments):\n"
    "  [prices]\n"
    "  node = 2.50          ; $/hour per node of a run (the default node type \"node\")\n"
    "  h100 = 4.10          ; $/hour per node of type \"h100\" (any other name: a node type)\n"
    "  volunteer = 0        ; $/hour for volunteers not listed below (default 0)\n"
    "  [runs]\n"
    "  hpc-baseline = h100  ; a run (directory name or path) -> its node type\n"
    "  [volunteers]\n"
    "  alice = 0.05         ; $/hour by volunteer name, token name, or identity (or a\n"
    "                       ; prefix of it of at least 8 hex digits)\n"
    "\n"
    "Exit status: 0 success, 1 bad input or a failed plot, 2 usage error.\n"
    "\n"
    "example:\n"
    "  printf '[prices]\\nnode = 2.50\\n[volunteers]\\nann = 0.05\\n' > prices.ini\n"
    "  " TOOL " --target-loss 7.6 --prices prices.ini --format markdown --plots plots \\\n"
    "      tests/data/report/baseline tests/data/report/collab\n";

// Usage error (exit status 2) and runtime failure (exit status 1).
#define die_usage(...) cx_tool_fail(TOOL, 2, __VA_ARGS__)
#define die(...) cx_tool_fail(TOOL, 1, __VA_ARGS__)

// Same directory (after resolving links), or the same text when one does not resolve.
static int same_dir(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    if (realpath(a, ra) && realpath(b, rb)) return strcmp(ra, rb) == 0;
    return strcmp(a, b) == 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"target-loss", required_argument, 0, 't'}, {"baseline", required_argument, 0, 'b'},
        {"prices", required_argument, 0, 'p'},      {"format", required_argument, 0, 'f'},
        {"plots", required_argument, 0, 'P'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    double target = NAN;
    const char *baseline = NULL, *prices_path = NULL, *plots = NULL;
    RepFormat fmt = REP_TEXT;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': {
            char *end;
            errno = 0;
            target = strtod(optarg, &end);
            if (!*optarg || *end || errno || !isfinite(target))
                die_usage("--target-loss needs a number, not '%s'", optarg);
            break;
        }
        case 'b': baseline = optarg; break;
        case 'p': prices_path = optarg; break;
        case 'f':
            if (!strcmp(optarg, "text")) fmt = REP_TEXT;
            else if (!strcmp(optarg, "markdown") || !strcmp(optarg, "md")) fmt = REP_MARKDOWN;
            else if (!strcmp(optarg, "csv")) fmt = REP_CSV;
            else if (!strcmp(optarg, "json")) fmt = REP_JSON;
            else die_usage("--format must be text, markdown, csv or json, not '%s'", optarg);
            break;
        case 'P': plots = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: die_usage("unknown or incomplete option");
        }
    }
    int n_args = argc - optind;
    if (n_args < 1 && !baseline) die_usage("no RUN_DIR given");

    // the runs: the baseline first when it is not among the arguments
    const char **dirs = calloc((size_t)n_args + 1, sizeof *dirs);
    if (!dirs) die("out of memory");
    int n = 0, base = 0;
    if (baseline) {
        int found = -1;
        for (int i = 0; i < n_args; i++)
            if (found < 0 && same_dir(argv[optind + i], baseline)) found = i;
        if (found < 0) dirs[n++] = baseline;
        else base = found;
    }
    for (int i = 0; i < n_args; i++) dirs[n++] = argv[optind + i];

    char err[CX_ERRLEN];
    RepPrices *prices = NULL;
    if (prices_path) {
        prices = calloc(1, sizeof *prices);
        if (!prices) die("out of memory");
        if (report_load_prices(prices_path, prices, err) != 0) die("%s", err);
    }
    RepRun *runs = calloc((size_t)n, sizeof *runs);
    RepStats *stats = calloc((size_t)n, sizeof *stats);
    if (!runs || !stats) die("out of memory");
    for (int i = 0; i < n; i++) {
        if (report_load_run(dirs[i], &runs[i], err) != 0) die("%s", err);
    }
    // names show in tables and plots: runs that share a name are shown by their paths
    int *clash = calloc((size_t)n, sizeof *clash);
    if (!clash) die("out of memory");
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) clash[i] |= i != j && !strcmp(runs[i].name, runs[j].name);
    for (int i = 0; i < n; i++)
        if (clash[i] && strlen(runs[i].dir) < sizeof runs[i].name)
            memcpy(runs[i].name, runs[i].dir, strlen(runs[i].dir) + 1);
    free(clash);
    for (int i = 0; i < n; i++)
        if (report_analyze(&runs[i], target, prices, &stats[i], err) != 0) die("%s", err);
    if (plots) {
        if (runlog_mkdirs(plots, err) != 0) die("%s", err);
        const char *gp = getenv("GNUPLOT");
        if (report_plots(plots, gp && *gp ? gp : "gnuplot", runs, stats, n, target, err) != 0) die("%s", err);
    }
    if (report_write(stdout, fmt, runs, stats, n, base, target, prices, err) != 0) die("%s", err);
    if (plots && fmt != REP_CSV && fmt != REP_JSON)
        fprintf(stderr, TOOL ": plots in %s: loss_vs_time.png loss_vs_samples.png throughput.png contribution.png\n",
                plots);
    for (int i = 0; i < n; i++) {
        report_stats_free(&stats[i]);
        report_run_free(&runs[i]);
    }
    free(stats);
    free(runs);
    free(prices);
    free(dirs);
    return 0;
}
