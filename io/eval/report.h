// report.h: reading recorded run directories and comparing runs (conflux-report).
//
// A run directory (docs/design.md "Run directory") holds run.json and metrics.csv (io/run/runlog.h);
// a collaborative run also holds the bridge's bridge.csv (one row per round) and
// volunteers.csv (events per volunteer). Only these four files are read.
//
// Clocks. metrics.csv time_s counts from the trainer's first step; a resumed run appends
// rows whose time_s starts again near 0. The report continues the clock: each resumed
// segment is offset by the end of the previous one (time between preemption and restart
// is not counted). bridge.csv and volunteers.csv use the bridge process's clock; they are
// aligned to the trainer's by the first step both files record.
//
// Errors: every loader returns -1 and fills err (CX_ERRLEN bytes) with
// "what (file:line)" naming the file and, where there is one, the line.
#ifndef CONFLUX_REPORT_H
#define CONFLUX_REPORT_H

#include <stdio.h>

// One metrics.csv row (io/run/runlog.h), plus the continued clock.
typedef struct {
    double time_s;        // as recorded
    double t;             // continued clock across resumed segments (seconds)
    long step, samples;   // samples: the global data cursor after this step
    double loss, lr, samples_per_s, tokens_per_s, compute_s, comm_s;
    long long bytes_sent, bytes_recv;  // per trainer rank, this step
    int participants;
    double valid_loss;    // NaN: no validation this step
    long step_samples;    // samples this step processed (cursor difference)
} RepMetric;

// One bridge.csv row (the bridge's rounds).
typedef struct {
    double time_s, t;     // t: on the trainer's continued clock
    long step, samples, trainer_samples;
    long volunteers_assigned;
    long long volunteer_samples_assigned, fresh, stale, dropped, lost;
    long participants, live_volunteers;
    double loss, wait_s, allreduce_s, bytes_sent, bytes_recv, upload_bytes, upload_s;
} RepRound;

// A volunteer, from volunteers.csv (all bridge processes of the run together).
typedef struct {
    char identity[33];
    char name[192];
    char token_name[96];
    int n_sessions;
    double *sess_start, *sess_end;  // connected intervals, trainer's continued clock
    double connected_s;             // sum of the intervals
    long long accepted, accepted_stale, dropped, lost, late_events;  // dropped: stale, or
                                    // (diloco) rejected for its norm ("rejected-norm")
    int have_summary;               // a summary row was read (bytes known)
    double bytes_sent, bytes_recv;  // the volunteer's view: uploads to / downloads from the bridge
} RepVolunteer;

typedef struct {
    char dir[1024];          // as given
    char name[256];          // directory base name (or dir when names collide)
    // run.json
    char tool[64], started[64], host[256], launcher[32], version[32];
    int ranks, nodes;        // trainer ranks; distinct hosts of the MPI job
    int tp_rows, tp_cols;    // layout: each data-parallel replica's tensor-parallel grid
                             // (1 x 1 when run.json has no layout: runs before it)
    int resumed;             // resumed_from was set
    int simulated;           // run.json says "simulated": true (conflux-sim): its name
                             // carries " (simulated)" in every table, plot and format
    long global_batch;       // config train.global_batch, 0 if absent
    char mode[16];           // config averaging.mode ("sync" when absent: runs before DiLoCo)
    long inner_steps;        // config averaging.inner_steps in diloco mode, else 0
    // metrics.csv
    RepMetric *m;
    int n_m, n_segments;
    int has_valid_column;
    // bridge.csv / volunteers.csv (absent: n_* == 0 and has_* == 0)
    int has_bridge, has_volunteers;
    RepRound *b;
    int n_b;
    RepVolunteer *v;
    int n_v;
} RepRun;

// Loads run.json, metrics.csv and, when present, bridge.csv and volunteers.csv of dir.
// run is filled (free it with report_run_free, also after a failure). -1 with err.
int report_load_run(const char *dir, RepRun *run, char *err);
void report_run_free(RepRun *run);

// Prices (INI, see conflux-report --help):
//   [prices] node = $/h per node (the default node type), volunteer = $/h default for
//            volunteers (0 when absent), TYPE = $/h per node of type TYPE
//   [runs] RUN_NAME = TYPE       (the node type of a run; default "node")
//   [volunteers] KEY = $/h       (KEY: a volunteer's name, token name, or identity or a
//                                 prefix of it of at least 8 hex digits)
typedef struct {
    int n_types;
    char type[32][64];
    double type_price[32];
    int n_runs;
    char run[64][256], run_type[64][64];
    int n_vols;
    char vol[256][192];
    double vol_price[256];
    double volunteer_default;
    char path[1024];
} RepPrices;

// Parses an INI prices file. -1 with err ("what (file:line)").
int report_load_prices(const char *path, RepPrices *p, char *err);

typedef struct {
    const char *kind;       // "trainer", "volunteer" or "bridge"
    char name[192];
    double hours;           // connected (trainer: wall) hours; bridge: 0 (not a participant)
    double samples;         // accepted samples (trainer ranks: an even split of theirs)
    double bytes_sent, bytes_recv;  // NaN: unknown
    double cost;            // NaN: no prices
} RepParticipant;

// Derived numbers of one run.
typedef struct {
    double wall_s;              // continued clock at the last row
    long steps;                 // last step
    long samples;               // last data cursor
    double samples_processed;   // sum of step samples (repeated steps count again)
    double samples_per_s;       // samples_processed / wall_s
    int participants_min, participants_max;  // metrics.csv participants column
    double participants_mean;
    double compute_util;        // sum compute_s / sum (compute_s + comm_s)
    double final_loss, final_valid, best_valid;  // NaN when none
    long best_valid_step;
    int n_valid;
    int reached;                // target given and reached
    double time_to_target, samples_to_target;  // interpolated (NaN: not reached)
    long step_at_target;        // first validation step at or below the target
    double trainer_bytes_sent, trainer_bytes_recv;  // per trainer rank, whole run
    double trainer_samples;     // all trainer ranks together
    double volunteer_samples;   // accepted (fresh + stale) samples of all volunteers
    double volunteer_hours;     // connected hours of all volunteers
    double volunteer_bytes_sent, volunteer_bytes_recv;  // all volunteers; NaN: a summary row missing
    double bridge_bytes_sent, bridge_bytes_recv;   // WAN, NaN when no bridge.csv
    double participant_hours;   // ranks * wall + volunteers' connected time
    double trained_samples;     // trainer_samples + volunteer_samples: the samples whose
                                // gradients (sync) or pseudo-gradients (diloco) counted
    double bytes_per_participant;  // mean over trainer ranks and volunteers of bytes sent +
                                // received (MPI for ranks, WAN for volunteers); NaN: unknown
    double wan_bytes_per_sample;   // bridge WAN bytes in + out / trained_samples; NaN: no bridge
    double cost, cost_to_target;  // NaN: no prices, or target not reached
    RepParticipant *parts;
    int n_parts;
} RepStats;

// Computes stats for run. target: validation loss (NaN: none). prices: NULL for none.
// -1 with err (a run without a price for its node type).
int report_analyze(const RepRun *run, double target, const RepPrices *prices, RepStats *s,
                   char *err);
void report_stats_free(RepStats *s);

typedef enum { REP_TEXT, REP_MARKDOWN, REP_CSV, REP_JSON } RepFormat;

// Writes the report of n runs (stats[i] belongs to runs[i]); runs[baseline] is the
// reference of the comparison. -1 with err on a write error.
int report_write(FILE *f, RepFormat fmt, const RepRun *runs, const RepStats *stats, int n,
                 int baseline, double target, const RepPrices *prices, char *err);

// Writes plot data, a gnuplot script (DIR/plots.gp) and, by running gnuplot, the PNGs
// DIR/loss_vs_time.png, loss_vs_samples.png, throughput.png and contribution.png.
// gnuplot: the program to run ("gnuplot", or a path). -1 with err when gnuplot is missing
// or fails (its messages are in DIR/gnuplot.log).
int report_plots(const char *dir, const char *gnuplot, const RepRun *runs,
                 const RepStats *stats, int n, double target, char *err);

#endif
