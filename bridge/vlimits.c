// vlimits.c: the volunteer owner's limits: parsers and the load measurement (vlimits.h).
#include "bridge/vlimits.h"

#include <ctype.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/common.h"
#include "models/train.h"  // cx_now

int vl_hours_parse(const char *s, VlHours *h, char *err) {
    int a, b, n = 0;
    if (sscanf(s, "%d-%d%n", &a, &b, &n) != 2 || s[n] || !isdigit((unsigned char)s[0]) || a < 0 ||
        a > 23 || b < 0 || b > 23)
        return cx_err(err, "--hours '%s' is not FROM-TO with hours 0..23 (e.g. 22-07: from 22:00 to "
                      "06:59)", s);
    if (a == b) return cx_err(err, "--hours '%s': FROM equals TO (leave --hours out to train at any hour)", s);
    h->from = a;
    h->to = b;
    return 0;
}

int vl_hours_inside(const VlHours *h, int hour) {
    return h->from < h->to ? hour >= h->from && hour < h->to : hour >= h->from || hour < h->to;
}

double vl_hours_until_open(const VlHours *h, int hour, int minute, int second) {
    if (vl_hours_inside(h, hour)) return 0;
    int hours = (h->from - hour + 24) % 24;
    return hours * 3600.0 - minute * 60.0 - second;
}

int vl_rate_parse(const char *s, double *out, char *err) {
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1e3, end++;
    else if (*end == 'M') mul = 1e6, end++;
    else if (*end == 'G') mul = 1e9, end++;
    if (end == s || *end || !(v > 0) || v * mul < 1000)
        return cx_err(err, "--max-upload-rate '%s' is not a rate in bytes per second of at least "
                      "1k (a number with an optional k, M or G: 2M = 2,000,000 bytes/s)", s);
    *out = v * mul;
    return 0;
}

void vl_busy_init(VlBusy *b) {
    memset(b, 0, sizeof *b);
    cpu_set_t set;
    b->n_cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
}

// The affinity CPUs' busy and total ticks, and this process's. 0, or -1.
static int read_ticks(uint64_t *busy, uint64_t *total, uint64_t *self) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) CPU_ZERO(&set);
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    *busy = *total = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long v[10] = {0};
        if (strncmp(line, "cpu", 3) != 0 || !isdigit((unsigned char)line[3])) continue;
        if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) < 9)
            continue;
        if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set)) continue;
        // user nice system idle iowait irq softirq steal
        uint64_t b = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        *busy += b;
        *total += b + v[3] + v[4];
        found = 1;
    }
    fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    char st[2048];
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = 0;
    char *p = strrchr(st, ')');  // the command name may hold spaces
    unsigned long long ut = 0, stime = 0;
    // after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stime) != 2)
        return -1;
    *self = ut + stime;
    return found ? 0 : -1;
}

void vl_busy_add(VlBusy *b, double t, uint64_t busy, uint64_t total, uint64_t self) {
    b->s[b->head].t = t;
    b->s[b->head].busy = busy;
    b->s[b->head].total = total;
    b->s[b->head].self = self;
    b->head = (b->head + 1) % VL_BUSY_RING;
    if (b->n < VL_BUSY_RING) b->n++;
}

double vl_busy_load_at(const VlBusy *b, double window_s) {
    const int last = (b->head + VL_BUSY_RING - 1) % VL_BUSY_RING;
    // the newest sample at least window_s older than the last (else the oldest one)
    int from = -1;
    for (int k = 1; k < b->n; k++) {
        int i = (last + VL_BUSY_RING - k) % VL_BUSY_RING;
        from = i;
        if (b->s[last].t - b->s[i].t >= window_s) break;
    }
    if (from < 0 || b->s[last].t - b->s[from].t < 1.0 || b->n_cpus <= 0) return -1;
    double dtotal = (double)(b->s[last].total - b->s[from].total);
    if (dtotal <= 0) return -1;
    double dbusy = (double)(b->s[last].busy - b->s[from].busy);
    double dself = (double)(b->s[last].self - b->s[from].self);
    double other = dbusy - dself;
    if (other < 0) other = 0;
    return other / (dtotal / b->n_cpus);  // ticks of other work per tick of one CPU
}

double vl_busy_load(VlBusy *b, double window_s) {
    double now = cx_now();
    int last = (b->head + VL_BUSY_RING - 1) % VL_BUSY_RING;
    if (b->n == 0 || now - b->s[last].t >= 0.5) {
        uint64_t busy, total, self;
        if (read_ticks(&busy, &total, &self) != 0) return -1;
        vl_busy_add(b, now, busy, total, self);
    }
    return vl_busy_load_at(b, window_s);
}
