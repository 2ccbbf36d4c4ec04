// runlog.h: the run directory contract (docs/design.md): RUN_DIR/run.json and RUN_DIR/metrics.csv.
//
// metrics.csv has one row per optimizer step with the columns of docs/design.md, plus a
// trailing valid_loss column (empty on steps without validation):
//   time_s,step,samples,loss,lr,samples_per_s,tokens_per_s,compute_s,comm_s,bytes_sent,
//   bytes_recv,participants,valid_loss
// Rows are flushed as they are written; a resumed run appends to the same file.
#ifndef CONFLUX_RUNLOG_H
#define CONFLUX_RUNLOG_H

#include <stdio.h>

typedef struct {
    const char *tool;        // "conflux-train"
    const char *config_ini;  // full effective configuration
    int ranks, nodes;
    int tp_rows, tp_cols;    // the tensor-parallel grid of every replica (0 or 1: none)
    const char *launcher;    // "none", "mpirun", "srun"
    const char *resumed_from;  // checkpoint path or NULL
    const char *extra_versions[8][2];  // {name, version} pairs, NULL-terminated
} RunInfo;

typedef struct {
    double time_s;
    long step;
    long samples;            // samples seen so far (global)
    double loss, lr, samples_per_s, tokens_per_s, compute_s, comm_s;
    long long bytes_sent, bytes_recv;
    int participants;
    double valid_loss;       // NaN = not evaluated this step
} MetricsRow;

// Creates dir (and parents) if needed. -1 with err.
int runlog_mkdirs(const char *dir, char *err);
// Writes RUN_DIR/run.json atomically. -1 with err.
int runlog_write_info(const char *dir, const RunInfo *info, char *err);
// Opens RUN_DIR/metrics.csv for appending (writes the header when the file is new or
// empty; checks the header of an existing file). NULL with err on failure.
FILE *runlog_open_metrics(const char *dir, char *err);
int runlog_write_row(FILE *f, const MetricsRow *r);
// One round's row of RUN_DIR/bridge.csv (io/run/runcols.h's RUNCOLS_BRIDGE), written by
// conflux-bridge (bridge/rounds.c) and conflux-sim alike. Flushed.
typedef struct {
    double time_s;
    long step, samples, trainer_samples;
    int volunteers_assigned;
    unsigned long long volunteer_samples_assigned, fresh, stale, dropped, lost;
    int participants, live_volunteers;
    double loss, wait_s, allreduce_s, bytes_sent, bytes_recv, upload_bytes, upload_s;
} BridgeRow;
void runlog_write_bridge_row(FILE *f, const BridgeRow *r);
// One event's row of RUN_DIR/volunteers.csv (RUNCOLS_VOLUNTEERS): name, token_name and
// detail (NULL: empty) as quoted CSV fields. Flushed.
void runlog_write_volunteer_row(FILE *f, double time_s, unsigned long long step, const char *identity,
                                const char *name, const char *token_name, const char *event,
                                unsigned long long samples, const char *detail);
// Writes RUN_DIR/finished holding the step: the mark of a run that took all its steps (a
// batch script requeues a job that exited 0 without it). -1 with err.
int runlog_write_finished(const char *dir, long step, char *err);

// Writes an ISO 8601 UTC timestamp ("2026-11-26T04:15:49Z") into buf (>= 32 bytes).
void runlog_iso_time(char *buf, size_t cap);

#endif
