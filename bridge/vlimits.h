// vlimits.h: what a volunteer's owner allows (conflux-volunteer --hours, --pause-when-busy,
// --max-upload-rate): the parsers and the load measurement, no policy (bridge/volunteer.c
// decides when to leave the rounds and when to come back).
#ifndef CONFLUX_BRIDGE_VLIMITS_H
#define CONFLUX_BRIDGE_VLIMITS_H

#include <stdint.h>

// --hours FROM-TO: local hours [FROM, TO), 0..23 each; FROM > TO wraps midnight ("22-07":
// 22:00 to 06:59). FROM == TO is refused (an empty, or a whole-day, window is no limit).
typedef struct {
    int from, to;
} VlHours;
int vl_hours_parse(const char *s, VlHours *h, char *err);  // 0, or -1 with err
int vl_hours_inside(const VlHours *h, int hour);           // hour 0..23
// Seconds from (hour, minute, second) until the window next opens (0 inside it).
double vl_hours_until_open(const VlHours *h, int hour, int minute, int second);

// --max-upload-rate RATE: bytes per second, a number with an optional decimal suffix k
// (1e3), M (1e6) or G (1e9) ("2M" = 2,000,000 bytes/s = 16 Mbit/s). 0, or -1 with err.
int vl_rate_parse(const char *s, double *bytes_per_s, char *err);

// --pause-when-busy: the CPU time other processes use on the CPUs this process may run on
// (its affinity mask), in cores (1.0 = one core busy all the time), from /proc/stat's
// per-CPU lines minus this process's own time (/proc/self/stat, all its threads).
#define VL_BUSY_RING 64
typedef struct {
    struct {
        double t;                  // seconds (cx_now)
        uint64_t busy, total, self;  // clock ticks
    } s[VL_BUSY_RING];
    int n, head;
    int n_cpus;                    // in the affinity mask
} VlBusy;
void vl_busy_init(VlBusy *b);
// Takes a sample (at most every 0.5 s) and returns the other processes' load averaged over
// the last window_s seconds, or -1 while fewer than 1 s of samples exist (or /proc is not
// readable).
double vl_busy_load(VlBusy *b, double window_s);
// Its parts, for tests: adds a sample (seconds; /proc/stat's busy and total ticks of the
// affinity CPUs, this process's ticks), and the load from the samples held.
void vl_busy_add(VlBusy *b, double t, uint64_t busy, uint64_t total, uint64_t self);
double vl_busy_load_at(const VlBusy *b, double window_s);

#endif
