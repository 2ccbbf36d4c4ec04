// test_round_core.c: the bridge's round logic without I/O (bridge/round_core.h), the code
// that decides in both the bridge server and the simulator.
//
// Every expected value below is worked out by hand from the rules in round_core.h (the
// working is in the comments), not taken from a run of the code:
// - sync opens: which seats are eligible (in the rounds, in step, nothing outstanding), the
//   shares' sample ranges after the trainers' part, the deadline;
// - the wait: outstanding uploads before and after the deadline;
// - fates: fresh, stale, dropped past max_staleness, over the aggregator's cap, rejected
//   for its loss tokens, rejected for its norm (diloco, however late); the accounting;
// - what the planner learns: a fresh sync upload's rate and upload time (the first chunk
//   scaled in), every diloco upload measured from the later of its round's opening and its
//   last upload;
// - diloco opens: H for the equal plan, H/trainers while unmeasured, 0.9 of the round time
//   at the measured rate (clamped to [1, H]), the cursor, a seat still uploading taking the
//   round as its next, a seat too far behind left out;
// - diloco deadlines in their four cases, the round time's moving mean;
// - lost shares, laggards, and the next round becoming the held one after an upload.
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bridge/round_core.h"
#include "tests/unit/testutil.h"

static BrPlanSpeed speeds[8];
static double prev_first[8];

static void seats_init(BrSeat *s, BrSeat **p, int n) {
    for (int j = 0; j < n; j++) {
        speeds[j] = (BrPlanSpeed){0};
        prev_first[j] = 0;
        s[j] = (BrSeat){.in_rounds = 1, .speed = &speeds[j], .t_prev_first = &prev_first[j]};
        p[j] = &s[j];
    }
}

// ---- sync rounds ----

static void test_sync_open(void) {
    BrCoreOptions o = {.deadline_s = 30, .max_staleness = 1, .history = 8, .plan_equal = 1};
    BrRoundCore k;
    br_core_init(&k, &o);
    BrSeat s[5], *p[5];
    seats_init(s, p, 5);
    // done = 10 steps; samples seen 640
    s[0].acked_step = 10;                          // in step: eligible
    s[1].acked_step = 9;                           // 9 + 1 >= 10: eligible (about to apply 10)
    s[2].acked_step = 8;                           // 8 + 1 < 10: behind, not planned
    s[3].acked_step = 10, s[3].assigned_round = 10, s[3].assigned_samples = 4;  // outstanding
    s[4].acked_step = 10, s[4].in_rounds = 0;      // not live
    BrShare sh[5];
    br_core_sync_open(&k, p, 5, 64, 2, 10, 640, 100.0, sh);
    // equal plan of G=64 over NT=2 + 2 volunteers: P=4, 16 each; trainers 32, samples
    // [640, 672); volunteer 0 (s[0]): [672, 688); volunteer 1 (s[1]): [688, 704)
    CU_ASSERT_EQUAL(k.round, 11);
    CU_ASSERT_EQUAL(k.trainer_samples, 32);
    CU_ASSERT_EQUAL(k.assigned, 2);
    CU_ASSERT_EQUAL(k.assigned_samples, 32);
    CU_ASSERT(sh[0].planned && sh[0].start == 672 && sh[0].n == 16);
    CU_ASSERT(sh[1].planned && sh[1].start == 688 && sh[1].n == 16);
    CU_ASSERT(!sh[2].planned && sh[2].n == 0);
    CU_ASSERT(!sh[3].planned && sh[3].n == 0);
    CU_ASSERT(!sh[4].planned && sh[4].n == 0);
    CU_ASSERT(s[0].assigned_round == 11 && s[0].assigned_start == 672 && s[0].assigned_samples == 16);
    CU_ASSERT_EQUAL(s[3].assigned_round, 10);  // untouched
    CU_ASSERT_EQUAL(s[2].assigned_round, 0);
    CU_ASSERT(k.open && k.t_open == 100.0 && k.t_deadline == 130.0);
}

static void test_sync_wait(void) {
    BrCoreOptions o = {.deadline_s = 30, .plan_equal = 1};
    BrRoundCore k;
    br_core_init(&k, &o);
    BrSeat s[1], *p[1];
    seats_init(s, p, 1);
    s[0].acked_step = 4;
    BrShare sh[1];
    br_core_sync_open(&k, p, 1, 8, 1, 0, 0, 50.0, sh);
    double until = 0;
    CU_ASSERT_EQUAL(br_core_sync_wait(&k, 1, 60.0, &until), 0);  // outstanding, 20 s left
    CU_ASSERT_EQUAL(until, 80.0);
    CU_ASSERT_EQUAL(br_core_sync_wait(&k, 1, 80.0, &until), 1);  // at the deadline
    CU_ASSERT_EQUAL(br_core_sync_wait(&k, 0, 51.0, &until), 1);  // everything in
}

static void test_sync_fates(void) {
    BrCoreOptions o = {.deadline_s = 30, .max_staleness = 1, .plan_equal = 1};
    BrRoundCore k;
    br_core_init(&k, &o);
    BrSeat s[1], *p[1];
    seats_init(s, p, 1);
    s[0].acked_step = 4;
    BrShare sh[1];
    br_core_sync_open(&k, p, 1, 8, 1, 4, 0, 10.0, sh);  // round 5, t_open 10
    CU_ASSERT_EQUAL(k.round, 5);
    BrPlanSpeed v[5] = {{0}};
    BrUpload u[5] = {
        {.round = 3, .samples = 7, .tokens_ok = 1, .speed = &v[0]},   // age 2 > 1: dropped
        {.round = 4, .samples = 5, .tokens_ok = 1, .speed = &v[1], .up_bytes = 100, .up_s = 1},  // stale
        {.round = 5, .samples = 4, .tokens_ok = 0, .speed = &v[2]},   // rejected: tokens
        {.round = 5, .samples = 8, .tokens_ok = 1, .speed = &v[3], .t_first = 12, .t_done = 13,
         .up_bytes = 262144, .up_s = 0.5},                              // fresh
        {.round = 5, .samples = 3, .tokens_ok = 1, .speed = &v[4]},   // fresh, but over the cap
    };
    int fate[5];
    br_core_close(&k, 5, u, 5, 2, 0, fate);
    CU_ASSERT_EQUAL(fate[0], BR_FATE_DROPPED_STALE);
    CU_ASSERT_EQUAL(fate[1], BR_FATE_STALE);
    CU_ASSERT_EQUAL(fate[2], BR_FATE_REJECTED_TOKENS);
    CU_ASSERT_EQUAL(fate[3], BR_FATE_FRESH);
    CU_ASSERT_EQUAL(fate[4], BR_FATE_DROPPED_STALE);  // the cap of 2 is full
    CU_ASSERT_EQUAL(k.fresh, 8);
    CU_ASSERT_EQUAL(k.stale, 5);
    CU_ASSERT_EQUAL(k.dropped, 7 + 4 + 3);
    CU_ASSERT_EQUAL(k.up_bytes, 100 + 262144);
    CU_ASSERT_EQUAL(k.up_s, 1.5);
    // the fresh one taught the planner: 8 samples in 12 - 10 = 2 s: 4 samples/s; upload
    // 13 - 12 = 1 s plus the first chunk scaled in: 0.5 s / 262144 B x 262144 B = 0.5 s
    CU_ASSERT_DOUBLE_EQUAL(v[3].rate, 4.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[3].up_s, 1.5, 1e-12);
    // the stale one did not (sync rounds measure fresh uploads only)
    CU_ASSERT_EQUAL(v[1].rate, 0.0);
    // no cap: the last one is fresh
    br_core_init(&k, &o);
    seats_init(s, p, 1);
    s[0].acked_step = 4;
    br_core_sync_open(&k, p, 1, 8, 1, 4, 0, 10.0, sh);
    br_core_close(&k, 5, u + 3, 2, 0, 0, fate);
    CU_ASSERT(fate[0] == BR_FATE_FRESH && fate[1] == BR_FATE_FRESH);
    CU_ASSERT_EQUAL(k.fresh, 11);
    // the trainers' speed: 4 of 8 samples (the rest went to the volunteer) on 1 trainer in 2 s
    CU_ASSERT_EQUAL(k.trainer_samples, 4);
    br_core_note_trainers(&k, 1, 2.0);
    CU_ASSERT_DOUBLE_EQUAL(k.trainer_rate, 2.0, 1e-12);
    CU_ASSERT_EQUAL(k.open, 0);
}

static void test_lost_and_laggards(void) {
    BrCoreOptions o = {.deadline_s = 30, .history = 8, .plan_equal = 1};
    BrRoundCore k;
    br_core_init(&k, &o);
    BrSeat s[2], *p[2];
    seats_init(s, p, 2);
    s[0].acked_step = s[1].acked_step = 20;
    BrShare sh[2];
    br_core_sync_open(&k, p, 2, 12, 1, 20, 0, 0.0, sh);  // round 21: 4 samples each
    s[1].next_round = 22, s[1].next_samples = 6;         // (as a diloco seat would hold)
    CU_ASSERT_EQUAL(br_core_seat_lost(&k, &s[0]), 4);
    CU_ASSERT_EQUAL(k.lost, 4);
    CU_ASSERT_EQUAL(br_core_seat_lost(&k, &s[1]), 4 + 6);  // held in all
    CU_ASSERT_EQUAL(k.lost, 8);                             // only the round in progress counts
    CU_ASSERT(s[1].assigned_round == 0 && s[1].next_round == 0);
    // max_lag = max(8 / 2, 2) = 4: at 30 rounds done, acked 25 is not a laggard, 25 - 1 is
    CU_ASSERT_EQUAL(br_core_max_lag(&k), 4);
    s[0].acked_step = 26;
    CU_ASSERT_EQUAL(br_core_laggard(&k, &s[0], 30), 0);
    s[0].acked_step = 25;
    CU_ASSERT_EQUAL(br_core_laggard(&k, &s[0], 30), 1);
    s[0].uploading = 1;  // busy seats are not dropped for lagging
    CU_ASSERT_EQUAL(br_core_laggard(&k, &s[0], 30), 0);
    k.o.history = 3;  // max(1, 2) = 2
    CU_ASSERT_EQUAL(br_core_max_lag(&k), 2);
}

// ---- diloco outer rounds ----

static void test_outer_open(void) {
    BrCoreOptions o = {.deadline_s = 60, .history = 8, .diloco = 1, .inner_steps = 10, .batch = 16};
    BrRoundCore k;
    br_core_init(&k, &o);
    k.cursor = 1000;
    BrSeat s[5], *p[5];
    seats_init(s, p, 5);
    for (int j = 0; j < 5; j++) s[j].acked_step = 3;
    s[1].uploading = 1;   // still uploading round 3: round 4 becomes its next
    s[2].acked_step = 0;  // 0 + max_lag 4 < 5 applied: left out
    s[3].next_round = 3;  // already holds a next round: left out
    speeds[4] = (BrPlanSpeed){.rate = 50, .up_s = 2};
    BrShare sh[5];
    // round 4, 5 rounds applied... (acked 3 + 4 >= 5: in), 2 trainers, no round time yet:
    // unmeasured and measured alike take ceil(10 / 2) = 5 steps = 80 samples
    br_core_outer_open(&k, p, 5, 4, 5, 2, 7.0, sh);
    // the cluster takes [1000, 1160) (10 x 16)
    CU_ASSERT_EQUAL(k.trainer_samples, 160);
    CU_ASSERT(sh[0].planned && sh[0].start == 1160 && sh[0].n == 80);
    CU_ASSERT(sh[1].planned && sh[1].start == 1240 && sh[1].n == 80);
    CU_ASSERT(!sh[2].planned && !sh[3].planned);
    CU_ASSERT(sh[4].planned && sh[4].start == 1320 && sh[4].n == 80);
    CU_ASSERT_EQUAL(k.cursor, 1400);
    CU_ASSERT(s[0].assigned_round == 4 && s[0].assigned_t_open == 7.0);
    CU_ASSERT(s[1].assigned_round == 0 && s[1].next_round == 4 && s[1].next_start == 1240);
    CU_ASSERT_EQUAL(k.assigned, 3);
    CU_ASSERT_EQUAL(k.assigned_samples, 240);
    CU_ASSERT_EQUAL(k.max_up_s, 2.0);
    // once the round time is measured (8 s): 0.9 x 50 samples/s x 8 s / 16 = 22.5 -> 10 (H);
    // at 20 samples/s: 0.9 x 20 x 8 / 16 = 9 steps; at 1 sample/s: 0.45 -> 1 (at least one)
    k.round_s = 8;
    for (int j = 0; j < 5; j++) s[j] = (BrSeat){.in_rounds = 1, .acked_step = 4, .speed = &speeds[j]};
    speeds[0].rate = 20;
    speeds[1].rate = 1;
    speeds[2].rate = 0;  // unmeasured: ceil(10 / 2) = 5
    br_core_outer_open(&k, p, 5, 5, 5, 2, 9.0, sh);
    CU_ASSERT_EQUAL(sh[0].n, 9 * 16);
    CU_ASSERT_EQUAL(sh[1].n, 1 * 16);
    CU_ASSERT_EQUAL(sh[2].n, 5 * 16);
    CU_ASSERT_EQUAL(sh[4].n, 10 * 16);
    // the equal plan: H for everyone
    k.o.plan_equal = 1;
    for (int j = 0; j < 5; j++) s[j] = (BrSeat){.in_rounds = 1, .acked_step = 5, .speed = &speeds[j]};
    br_core_outer_open(&k, p, 5, 6, 5, 2, 9.0, sh);
    for (int j = 0; j < 5; j++) CU_ASSERT_EQUAL(sh[j].n, 160);
    // an upload done: the next round becomes the held one
    BrSeat q = {.assigned_round = 3, .assigned_samples = 5, .next_round = 4, .next_start = 77,
                .next_samples = 80, .next_t_open = 7.0};
    br_core_upload_done(&q);
    CU_ASSERT(q.assigned_round == 4 && q.assigned_start == 77 && q.assigned_samples == 80 &&
              q.assigned_t_open == 7.0 && q.next_round == 0);
    br_core_upload_done(&q);
    CU_ASSERT(q.assigned_round == 0 && q.assigned_samples == 0);
}

static void test_outer_deadline(void) {
    BrCoreOptions o = {.deadline_s = 60, .diloco = 1, .inner_steps = 10, .batch = 16};
    BrRoundCore k;
    br_core_init(&k, &o);
    // no overlap: twice the slowest upload + 1 s, at most the deadline; none measured: the deadline
    CU_ASSERT_DOUBLE_EQUAL(br_core_outer_deadline(&k, 100, 3.0), 107.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(br_core_outer_deadline(&k, 100, 40.0), 160.0, 1e-12);  // 81 > 60
    CU_ASSERT_DOUBLE_EQUAL(br_core_outer_deadline(&k, 100, 0.0), 160.0, 1e-12);
    // overlap: 0.9 of the measured round time; not measured yet: as without
    k.o.overlap = 1;
    CU_ASSERT_DOUBLE_EQUAL(br_core_outer_deadline(&k, 100, 3.0), 107.0, 1e-12);
    // the round time: intervals between the cluster's arrivals, a moving mean
    br_core_note_cluster(&k, 10.0);
    CU_ASSERT_EQUAL(k.round_s, 0.0);
    br_core_note_cluster(&k, 30.0);  // 20
    CU_ASSERT_DOUBLE_EQUAL(k.round_s, 20.0, 1e-12);
    br_core_note_cluster(&k, 40.0);  // (20 + 10) / 2
    CU_ASSERT_DOUBLE_EQUAL(k.round_s, 15.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(br_core_outer_deadline(&k, 100, 3.0), 113.5, 1e-12);
    // the equal plan (reproducible runs): always the deadline
    k.o.plan_equal = 1;
    CU_ASSERT_DOUBLE_EQUAL(br_core_outer_deadline(&k, 100, 3.0), 160.0, 1e-12);
}

static void test_outer_fates(void) {
    BrCoreOptions o = {.deadline_s = 60, .max_staleness = 1, .max_delta_ratio = 4, .diloco = 1,
                       .inner_steps = 10, .batch = 16};
    BrRoundCore k;
    br_core_init(&k, &o);
    k.lost = 9;  // diloco closes reset the round's accounting
    BrPlanSpeed v[3] = {{0}};
    double pf[3] = {5.0, 0.0, 0.0};
    BrUpload u[3] = {
        // round 2 (stale at round 3), norm 3.9 <= 4 x 1: counted; it computed from its last
        // upload (5 s) rather than its round's opening (2 s) until 13 s: 80 samples / 8 s
        {.round = 2, .samples = 80, .t_open = 2, .t_first = 13, .t_done = 15, .norm = 3.9,
         .tokens_ok = 1, .speed = &v[0], .t_prev_first = &pf[0]},
        // 4.1 > 4: rejected however late; it still teaches the planner (opened at 4, first
        // chunk at 24: 40 samples / 20 s)
        {.round = 3, .samples = 40, .t_open = 4, .t_first = 24, .t_done = 25, .norm = 4.1,
         .tokens_ok = 1, .speed = &v[1], .t_prev_first = &pf[1]},
        // two rounds old: dropped; measured all the same (16 samples from 1 s to 3 s)
        {.round = 1, .samples = 16, .t_open = 1, .t_first = 3, .t_done = 4, .norm = 1,
         .tokens_ok = 1, .speed = &v[2], .t_prev_first = &pf[2]},
    };
    int fate[3];
    br_core_close(&k, 3, u, 3, 0, 1.0, fate);
    CU_ASSERT_EQUAL(fate[0], BR_FATE_STALE);
    CU_ASSERT_EQUAL(fate[1], BR_FATE_REJECTED_NORM);
    CU_ASSERT_EQUAL(fate[2], BR_FATE_DROPPED_STALE);
    CU_ASSERT_EQUAL(k.stale, 80);
    CU_ASSERT_EQUAL(k.fresh, 0);
    CU_ASSERT_EQUAL(k.dropped, 56);
    CU_ASSERT_EQUAL(k.lost, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[0].rate, 10.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[0].up_s, 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(pf[0], 13.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[1].rate, 2.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(v[2].rate, 8.0, 1e-12);  // 16 / (3 - 1)
    CU_ASSERT_STRING_EQUAL(br_fate_name(fate[1]), "rejected-norm");
    // the round's upload figures start from 0 at each close (the stale one's 100 B, 1 s)
    k.up_bytes = 99, k.up_s = 9;
    u[0].up_bytes = 100, u[0].up_s = 1;
    br_core_close(&k, 3, u, 1, 0, 1.0, fate);
    CU_ASSERT(k.up_bytes == 100 && k.up_s == 1);
    // a ratio below 1 rejects too (0.6 > 0.5 x 1); ratio 0 turns the rule off (norm 100)
    k.o.max_delta_ratio = 0.5;
    u[0].norm = 0.6;
    br_core_close(&k, 3, u, 1, 0, 1.0, fate);
    CU_ASSERT_EQUAL(fate[0], BR_FATE_REJECTED_NORM);
    k.o.max_delta_ratio = 0;
    u[0].norm = 100;
    br_core_close(&k, 3, u, 1, 0, 1.0, fate);
    CU_ASSERT_EQUAL(fate[0], BR_FATE_STALE);
}

int main(void) {
    static const TuTest tests[] = {
        {"sync open: eligibility and shares", test_sync_open},
        {"sync wait: outstanding and the deadline", test_sync_wait},
        {"sync close: fates, accounting, speeds", test_sync_fates},
        {"lost shares and laggards", test_lost_and_laggards},
        {"diloco open: inner steps and the cursor", test_outer_open},
        {"diloco deadlines and the round time", test_outer_deadline},
        {"diloco close: norm, staleness, speeds", test_outer_fates},
    };
    return tu_run_suite("round_core", tests, sizeof tests / sizeof tests[0]);
}
