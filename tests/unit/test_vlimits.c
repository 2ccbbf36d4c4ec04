// test_vlimits.c: bridge/vlimits.c, the volunteer owner's limits: --hours windows (plain and
// across midnight, the time until one opens, refusals), --max-upload-rate values, and the
// load measurement's contract (no figure before 1 s of samples; a figure within [0, CPUs]).
#include <CUnit/Basic.h>
#include <string.h>
#include <unistd.h>

#include "bridge/vlimits.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

static void test_hours(void) {
    char err[CX_ERRLEN];
    VlHours h;
    CU_ASSERT_EQUAL_FATAL(vl_hours_parse("22-07", &h, err), 0);
    CU_ASSERT(vl_hours_inside(&h, 22) && vl_hours_inside(&h, 23) && vl_hours_inside(&h, 0) &&
              vl_hours_inside(&h, 6));
    CU_ASSERT(!vl_hours_inside(&h, 7) && !vl_hours_inside(&h, 12) && !vl_hours_inside(&h, 21));
    CU_ASSERT_DOUBLE_EQUAL(vl_hours_until_open(&h, 21, 30, 0), 1800, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(vl_hours_until_open(&h, 7, 0, 0), 15 * 3600, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(vl_hours_until_open(&h, 23, 59, 59), 0, 1e-9);
    CU_ASSERT_EQUAL_FATAL(vl_hours_parse("9-17", &h, err), 0);
    CU_ASSERT(vl_hours_inside(&h, 9) && vl_hours_inside(&h, 16) && !vl_hours_inside(&h, 17) &&
              !vl_hours_inside(&h, 8));
    CU_ASSERT_DOUBLE_EQUAL(vl_hours_until_open(&h, 18, 0, 0), 15 * 3600, 1e-9);
    CU_ASSERT_EQUAL(vl_hours_parse("7-7", &h, err), -1);
    CU_ASSERT(strstr(err, "FROM equals TO") != NULL);
    const char *bad[] = {"24-3", "3", "-1-5", "3-5x", "a-b", "3--5", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CU_ASSERT_EQUAL(vl_hours_parse(bad[i], &h, err), -1);
        CU_ASSERT(strstr(err, "is not FROM-TO") != NULL);
    }
}

static void test_rate(void) {
    char err[CX_ERRLEN];
    double r;
    CU_ASSERT(vl_rate_parse("2M", &r, err) == 0 && r == 2e6);
    CU_ASSERT(vl_rate_parse("400k", &r, err) == 0 && r == 4e5);
    CU_ASSERT(vl_rate_parse("1.5G", &r, err) == 0 && r == 1.5e9);
    CU_ASSERT(vl_rate_parse("250000", &r, err) == 0 && r == 250000);
    const char *bad[] = {"0", "-2M", "2X", "M", "", "999", "2MB"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CU_ASSERT_EQUAL(vl_rate_parse(bad[i], &r, err), -1);
        CU_ASSERT(strstr(err, "--max-upload-rate") != NULL);
    }
}

static void test_busy(void) {
    VlBusy b;
    vl_busy_init(&b);
    CU_ASSERT(b.n_cpus >= 1);
    CU_ASSERT_EQUAL(vl_busy_load(&b, 5), -1);  // one sample: no figure yet
    usleep(600000);
    CU_ASSERT_EQUAL(vl_busy_load(&b, 5), -1);  // 0.6 s: still none
    usleep(600000);
    double l = vl_busy_load(&b, 5);
    CU_ASSERT(l >= 0 && l <= b.n_cpus + 0.01);
}

// The load from synthetic samples: other processes' ticks (busy minus this process's) per
// tick of one CPU, over the newest sample at least window_s older than the last.
static void test_busy_samples(void) {
    VlBusy b = {.n_cpus = 2};
    vl_busy_add(&b, 0.0, 0, 0, 0);
    CU_ASSERT_EQUAL(vl_busy_load_at(&b, 5), -1);  // one sample
    vl_busy_add(&b, 0.8, 10, 160, 0);
    CU_ASSERT_EQUAL(vl_busy_load_at(&b, 5), -1);  // less than 1 s of samples
    // t = 1 .. 7: each second 200 ticks over the 2 CPUs; busy 150, of which ours 50 in the
    // first 4 s (other 100: load 1.0), then busy 60 with ours 40 (other 20: load 0.2)
    uint64_t busy = 10, total = 160, self = 0;
    for (int t = 1; t <= 7; t++) {
        total += 200;
        busy += t <= 4 ? 150 : 60;
        self += t <= 4 ? 50 : 40;
        vl_busy_add(&b, (double)t, busy, total, self);
    }
    // window 2 s: t = 5 .. 7, load 0.2; window 5 s: t = 2 .. 7 (2 s at 1.0, 3 s at 0.2)
    CU_ASSERT_DOUBLE_EQUAL(vl_busy_load_at(&b, 2), 0.2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(vl_busy_load_at(&b, 5), (2 * 100 + 3 * 20) / (5 * 100.0), 1e-12);
    // a window longer than the samples: the oldest one (t = 0)
    const double all = (double)(busy - self) / ((double)total / 2);
    CU_ASSERT_DOUBLE_EQUAL(vl_busy_load_at(&b, 60), all, 1e-12);
    b.n_cpus = 1;  // the same ticks over one CPU: twice the figure per CPU
    CU_ASSERT_DOUBLE_EQUAL(vl_busy_load_at(&b, 2), 0.1, 1e-12);
    // our own time is never the others' load, even when the counters disagree
    vl_busy_add(&b, 8.0, busy + 10, total + 200, self + 30);
    CU_ASSERT_DOUBLE_EQUAL(vl_busy_load_at(&b, 0.5), 0.0, 1e-12);
}

int main(void) {
    static const TuTest tests[] = {
        {"--hours windows", test_hours},
        {"--max-upload-rate values", test_rate},
        {"load: none before 1 s of samples, then within [0, CPUs]", test_busy},
        {"load from samples: own time, window, CPUs", test_busy_samples},
    };
    return tu_run_suite("vlimits", tests, sizeof tests / sizeof tests[0]);
}
