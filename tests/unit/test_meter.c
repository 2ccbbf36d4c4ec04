// test_meter.c: bridge/meter.c, the transfer progress of the volunteer's downloads: the
// line's text (bytes, percentage, rate, ETA), the ETA's units, and lines mode's pacing (one
// line per interval, a final one, nothing when quiet) with the test's own clock.
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/meter.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

static void test_format(void) {
    char b[256];
    CU_ASSERT_STRING_EQUAL(br_meter_format(b, sizeof b, "state", 3.2e6, 7.1e6, 2.4e6),
                           "state 3.2 / 7.1 MB (45%), 2.40 MB/s, ETA 2 s");
    CU_ASSERT_STRING_EQUAL(br_meter_format(b, sizeof b, "state", 0, 7.1e6, 0),
                           "state 0.0 / 7.1 MB (0%)");
    CU_ASSERT_STRING_EQUAL(br_meter_format(b, sizeof b, "data", 5e5, 0, 1e6), "data 0.5 MB, 1.00 MB/s");
    CU_ASSERT_STRING_EQUAL(br_meter_format(b, sizeof b, "x", 7.1e6, 7.1e6, 1e6),
                           "x 7.1 / 7.1 MB (100%), 1.00 MB/s, ETA 0 s");
    CU_ASSERT_STRING_EQUAL(br_meter_format_eta(b, sizeof b, 59.4), "59 s");
    CU_ASSERT_STRING_EQUAL(br_meter_format_eta(b, sizeof b, 65), "1 min 05 s");
    CU_ASSERT_STRING_EQUAL(br_meter_format_eta(b, sizeof b, 7380), "2 h 03 min");
    CU_ASSERT_STRING_EQUAL(br_meter_format_eta(b, sizeof b, -1), "?");
}

// Lines mode (a file is not a terminal): a line per interval of the given clock, and the
// rate of this meter's bytes only (a resumed transfer started at 1 MB).
static void test_lines(void) {
    FILE *f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    BrMeter m;
    br_meter_start(&m, f, "state", 10e6, 1e6, 0);
    CU_ASSERT_EQUAL(m.tty, 0);
    double t0 = m.t0;
    br_meter_update_at(&m, 2e6, t0 + 1.0, 0);  // within the interval: nothing
    br_meter_update_at(&m, 3e6, t0 + 2.0, 0);  // a line: 2 MB in 2 s
    br_meter_update_at(&m, 3.5e6, t0 + 3.0, 0);
    br_meter_update_at(&m, 5e6, t0 + 4.0, 0);  // a line: 4 MB in 4 s, 5 MB left
    rewind(f);
    char l1[256] = "", l2[256] = "", l3[256] = "";
    CU_ASSERT(fgets(l1, sizeof l1, f) && fgets(l2, sizeof l2, f));
    CU_ASSERT(fgets(l3, sizeof l3, f) == NULL);
    CU_ASSERT_STRING_EQUAL(l1, "state 3.0 / 10.0 MB (30%), 1.00 MB/s, ETA 7 s\n");
    CU_ASSERT_STRING_EQUAL(l2, "state 5.0 / 10.0 MB (50%), 1.00 MB/s, ETA 5 s\n");
    fclose(f);
    // quiet: nothing at all
    f = tmpfile();
    br_meter_start(&m, f, "state", 10e6, 0, 1);
    br_meter_update_at(&m, 5e6, m.t0 + 10, 1);
    br_meter_finish(&m, 10e6);
    CU_ASSERT_EQUAL(ftell(f), 0);
    fclose(f);
}

int main(void) {
    static const TuTest tests[] = {
        {"line text, ETA units", test_format},
        {"lines mode: one per interval, rate of this run's bytes, quiet", test_lines},
    };
    return tu_run_suite("meter", tests, sizeof tests / sizeof tests[0]);
}
