// meter.h: progress of a transfer (the volunteer's state download, its data download): a
// bar on a terminal, periodic lines otherwise. Bytes so far, total, rate and ETA.
//
//   BrMeter m;
//   br_meter_start(&m, stderr, "conflux-volunteer: state", total_bytes, have_bytes, quiet);
//   ... br_meter_update(&m, have_bytes) after each piece ...
//   br_meter_finish(&m, have_bytes);
//
// On a terminal (isatty of the stream's descriptor) the line is redrawn in place at most
// every 0.2 s: "LABEL [#######.......]  45%  3.2/7.1 MB  2.4 MB/s  ETA 2 s". Otherwise
// one line every 2 seconds and at the end: "LABEL 3.2 / 7.1 MB (45%), 2.4 MB/s, ETA 2 s". The rate counts only the bytes of
// this meter's run (a resumed transfer starts its rate at the bytes it already had).
// Nothing is written when quiet. No allocation; the stream is not closed.
#ifndef CONFLUX_BRIDGE_METER_H
#define CONFLUX_BRIDGE_METER_H

#include <stdio.h>

typedef struct {
    FILE *out;
    char label[96];
    double total, start_bytes;  // bytes
    double t0, t_shown;         // seconds (cx_now)
    int tty, quiet;
} BrMeter;

// Starts a meter at `have` of `total` bytes (total 0: unknown size; no percentage or ETA).
void br_meter_start(BrMeter *m, FILE *out, const char *label, double total, double have, int quiet);
// Reports `have` bytes; draws when the interval passed.
void br_meter_update(BrMeter *m, double have);
// The same at time now (seconds; tests pass their own clock). force: draw regardless.
void br_meter_update_at(BrMeter *m, double have, double now, int force);
// Draws the final state (and ends the terminal line).
void br_meter_finish(BrMeter *m, double have);

// The text of one progress line into buf (no newline): lines mode's format. Rate in bytes
// per second (<= 0: unknown). Returns buf.
char *br_meter_format(char *buf, size_t cap, const char *label, double have, double total,
                      double rate);
// "2 s", "1 min 05 s", "2 h 03 min", "?" (negative or not finite).
char *br_meter_format_eta(char *buf, size_t cap, double seconds);

#endif
