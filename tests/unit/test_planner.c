// test_planner.c: the bridge's round plans (bridge/planner.h): pure functions, no sockets.
//
// Every expected share below is worked out by hand from the rules in planner.h (the working
// is in the comments), not taken from a run of the code:
// - the equal plan: G*(k+1)/P - G*k/P per participant, speeds ignored;
// - volunteers left out (from the start of the list) when G < NT + nv, in both plans;
// - no volunteers: the trainers take the whole batch;
// - the throughput plan: fast and slow volunteers sized by tau, the 0.9 margin and the
//   truncation; a slow link left out (upload > 2*tau0) but one within 2*tau0 given the
//   probe; a small share raised to the probe; the idle counter and its probe after 8 rounds;
//   an unmeasured volunteer's probe taken off the top; unmeasured trainers: probes only;
// - shares cut from the last volunteer back so the trainers keep one sample each, and, over
//   random inputs, shares that never exceed the batch;
// - the speed estimates (br_plan_note_upload, br_plan_note_trainers).
//
// Exit status: 0 when every assertion passed, 1 otherwise.
#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

#include "bridge/planner.h"
#include "tests/unit/testutil.h"

static BrPlanParams params(long G, int NT, double rt, int probe, int equal) {
    return (BrPlanParams){.global_batch = G, .n_trainers = NT, .trainer_rate = rt,
                          .probe_samples = probe, .equal = equal};
}

// Runs br_plan_round on v[0..n) and compares with the expected number in the plan, shares
// and trainers' share; prints what differs. 1 when everything matches.
static int plan_is(const BrPlanParams *p, BrPlanSpeed *v, int n, int want_nv, const long *want,
                   long want_ts) {
    long share[16], ts = -1;
    int nv = br_plan_round(p, v, n, share, &ts), ok = nv == want_nv && ts == want_ts;
    for (int j = 0; j < n; j++) ok &= share[j] == want[j];
    if (!ok) {
        printf("\n  plan of G=%ld NT=%d: %d volunteers in it (want %d), trainers %ld (want %ld), shares",
               p->global_batch, p->n_trainers, nv, want_nv, ts, want_ts);
        for (int j = 0; j < n; j++) printf(" %ld (want %ld)", share[j], want[j]);
        printf("\n");
    }
    return ok;
}

// ---- the equal plan ----

static void test_equal(void) {
    // G=11, NT=2, 3 volunteers: P=5; volunteer j is participant k=2+j:
    //   k=2: 33/5 - 22/5 = 6 - 4 = 2;  k=3: 44/5 - 33/5 = 8 - 6 = 2;  k=4: 55/5 - 44/5 = 11 - 8 = 3
    // trainers: 11 - 7 = 4. Speeds (which would give other shares) are ignored.
    BrPlanSpeed v[3] = {{10, 2, 5}, {20, 1, 5}, {0, 0, 5}};
    BrPlanParams p = params(11, 2, 10.0, 4, 1);
    CU_ASSERT(plan_is(&p, v, 3, 3, (long[]){2, 2, 3}, 4));
    for (int j = 0; j < 3; j++) CU_ASSERT_EQUAL(v[j].idle_rounds, 5);  // equal plan: untouched
    // G=64, NT=4, 4 volunteers: P=8, every share 64/8 = 8; trainers 32
    BrPlanSpeed w[4] = {{0}};
    p = params(64, 4, 0.0, 1, 1);
    CU_ASSERT(plan_is(&p, w, 4, 4, (long[]){8, 8, 8, 8}, 32));
}

static void test_batch_too_small(void) {
    // G=4, NT=2, 3 volunteers: 4 < 2+3, so nv=2 and v[0] (the first in the list) is left out;
    // equal plan P=4: each 12/4 - 8/4 = 1; trainers 2
    BrPlanSpeed v[3] = {{0}};
    BrPlanParams p = params(4, 2, 0.0, 1, 1);
    CU_ASSERT(plan_is(&p, v, 3, 2, (long[]){0, 1, 1}, 2));
    // the throughput plan leaves out the same one; probes of 3 (trainers unmeasured) give
    // 3+3 = 6 > G-NT = 2: the last is cut to 0 (total 3), then the one before it by 1 -> 2
    p = params(4, 2, 0.0, 3, 0);
    CU_ASSERT(plan_is(&p, v, 3, 2, (long[]){0, 2, 0}, 2));
}

static void test_no_volunteers(void) {
    long share[1] = {-7}, ts = -1;
    for (int equal = 0; equal <= 1; equal++) {
        BrPlanParams p = params(48, 3, 12.5, 4, equal);
        CU_ASSERT_EQUAL(br_plan_round(&p, NULL, 0, share, &ts), 0);
        CU_ASSERT_EQUAL(ts, 48);
        CU_ASSERT_EQUAL(share[0], -7);  // nothing written
    }
}

// ---- the throughput plan ----

static void test_fast_and_slow(void) {
    // G=100, NT=2, r_t=10; A: r=10, u=2; B: r=20, u=1.
    // tau = (100 + 10*2 + 20*1) / (2*10 + 10 + 20) = 140/50 = 2.8 (> both uploads)
    // A: (long)(0.9*10*0.8) = (long)7.2 = 7;  B: (long)(0.9*20*1.8) = (long)32.4 = 32
    // trainers: 100 - 39 = 61. Both got a share: idle counters reset.
    BrPlanSpeed v[2] = {{10, 2, 3}, {20, 1, 0}};
    BrPlanParams p = params(100, 2, 10.0, 4, 0);
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){7, 32}, 61));
    CU_ASSERT_EQUAL(v[0].idle_rounds, 0);
    CU_ASSERT_EQUAL(v[1].idle_rounds, 0);
    CU_ASSERT_EQUAL(v[0].rate, 10.0);  // speeds are read, not changed
    CU_ASSERT_EQUAL(v[1].up_s, 1.0);
}

static void test_slow_links(void) {
    // A(10,2), E(10,9), B(20,1), C(10,12); G=100, NT=2, r_t=10, probe 4; tau0 = 100/20 = 5.
    // first solve: (100 + 20 + 90 + 20 + 120) / (20 + 10 + 10 + 20 + 10) = 350/70 = 5:
    //   E (9) and C (12) upload longer than that and drop out; again: 140/50 = 2.8, stable.
    // A 7, B 32 (as above); E: upload 9 <= 2*tau0 = 10 -> probe 4; C: 12 > 10 -> 0.
    // trainers: 100 - 43 = 57; C's idle counter 0 -> 1.
    BrPlanSpeed v[4] = {{10, 2, 0}, {10, 9, 2}, {20, 1, 0}, {10, 12, 0}};
    BrPlanParams p = params(100, 2, 10.0, 4, 0);
    CU_ASSERT(plan_is(&p, v, 4, 4, (long[]){7, 4, 32, 0}, 57));
    CU_ASSERT_EQUAL(v[1].idle_rounds, 0);
    CU_ASSERT_EQUAL(v[3].idle_rounds, 1);
    // six more rounds without a share: the counter reaches 7 ...
    for (int k = 0; k < 6; k++) CU_ASSERT(plan_is(&p, v, 4, 4, (long[]){7, 4, 32, 0}, 57));
    CU_ASSERT_EQUAL(v[3].idle_rounds, 7);
    // ... and at 8 it gets a probe (its speed may have changed) and the counter resets
    CU_ASSERT(plan_is(&p, v, 4, 4, (long[]){7, 4, 32, 4}, 53));
    CU_ASSERT_EQUAL(v[3].idle_rounds, 0);
}

static void test_small_share_gets_probe(void) {
    // A(10,2), B(20,1), D(1,2.5); G=100, NT=2, r_t=10, probe 4.
    // tau = (100 + 20 + 20 + 2.5) / (20 + 10 + 20 + 1) = 142.5/51 = 2.7941..., above every
    // upload: A (long)(9*0.7941) = (long)7.15 = 7; B (long)(18*1.7941) = (long)32.29 = 32;
    // D (long)(0.9*0.2941) = 0 < probe, upload 2.5 <= 2*tau0 = 10 -> 4. Trainers 100-43 = 57.
    BrPlanSpeed v[3] = {{10, 2, 0}, {20, 1, 0}, {1, 2.5, 0}};
    BrPlanParams p = params(100, 2, 10.0, 4, 0);
    CU_ASSERT(plan_is(&p, v, 3, 3, (long[]){7, 32, 4}, 57));
}

static void test_unmeasured(void) {
    // A(10,2) measured, U not yet; G=100, NT=2, r_t=10, probe 4. U's probe comes off the top:
    // tau = (100 - 4 + 20) / (20 + 10) = 116/30 = 3.8667; A (long)(9*1.8667) = (long)16.8 = 16
    // U 4; trainers 100 - 20 = 80.
    BrPlanSpeed v[2] = {{10, 2, 0}, {0, 0, 0}};
    BrPlanParams p = params(100, 2, 10.0, 4, 0);
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){16, 4}, 80));
    // trainers not measured yet: every volunteer gets the probe, measured or not
    p = params(100, 2, 0.0, 4, 0);
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){4, 4}, 92));
    // a probe below 1 counts as 1
    p = params(100, 2, 0.0, 0, 0);
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){1, 1}, 98));
}

static void test_trainers_keep_one_each(void) {
    // G=10, NT=2, trainers unmeasured, probe 3, 4 volunteers: probes 3+3+3+3 = 12 > G-NT = 8;
    // cut from the last: v[3] 3 -> 0 (total 9), v[2] 3 -> 2 (total 8). Trainers 2.
    BrPlanSpeed v[4] = {{0}};
    BrPlanParams p = params(10, 2, 0.0, 3, 0);
    CU_ASSERT(plan_is(&p, v, 4, 4, (long[]){3, 3, 2, 0}, 2));
}

static void test_max_share(void) {
    // G=32, NT=2, trainers at 10 samples/s, probe 4: a volunteer claiming 1e6 samples/s with
    // no upload time gets tau = (32 - 4) / (2*10 + 1e6) and 0.9 * 1e6 * tau = 25.2 -> 25 of the
    // 32 samples (the trainers 3); the cap holds it at 8 and the trainers take the rest
    // (32 - 8 - 4 = 20); the probe-sized newcomer (4) is under the cap and unchanged
    BrPlanSpeed v[2] = {{.rate = 1e6, .up_s = 0.0, .idle_rounds = 0}, {0, 0, 0}};
    BrPlanParams p = params(32, 2, 10.0, 4, 0);
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){25, 4}, 3));
    p.max_share = 8;
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){8, 4}, 20));
    // the equal plan is capped the same way: P = 2 + 2, 8 each; a cap of 5 leaves 22
    p.equal = 1;
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){8, 8}, 16));
    p.max_share = 5;
    CU_ASSERT(plan_is(&p, v, 2, 2, (long[]){5, 5}, 22));
}

static void test_never_exceeds_batch(void) {
    // a grid of batches, trainers, trainer speeds, probes and volunteers (speeds from small
    // tables, some unmeasured): no share is negative, one left out gets nothing, shares and
    // trainers add up to G, and the trainers keep one sample each
    static const double rates[] = {0, 0.3, 5, 40, 900}, ups[] = {0, 0.01, 0.7, 3, 20};
    static const double trainer_rates[] = {0, 0.5, 10, 300};
    static const int probes[] = {-1, 0, 1, 3, 7, 50};
    int bad = 0, cases = 0;
    for (long G = 1; G <= 130; G += 3)
        for (int NT = 1; NT <= 4 && NT <= G; NT++)
            for (int t = 0; t < 4; t++)
                for (int q = 0; q < 6; q++)
                    for (int n = 0; n <= 9; n++)
                        for (int equal = 0; equal <= 1; equal++) {
                            BrPlanSpeed v[9];
                            long share[9], ts;
                            for (int j = 0; j < n; j++)
                                v[j] = (BrPlanSpeed){.rate = rates[(j * 3 + n + q) % 5],
                                                     .up_s = ups[(j * 2 + t + (int)G) % 5],
                                                     .idle_rounds = (j + q) % 9};
                            BrPlanParams p = params(G, NT, trainer_rates[t], probes[q], equal);
                            int nv = br_plan_round(&p, v, n, share, &ts);
                            long sum = 0;
                            for (int j = 0; j < n; j++) {
                                bad += share[j] < 0 || (j < n - nv && share[j] != 0);
                                sum += share[j];
                            }
                            bad += nv < 0 || nv > n || ts < NT || sum + ts != G;
                            cases++;
                        }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(cases > 50000);
}

// ---- speed estimates ----

static void test_note_upload(void) {
    BrPlanSpeed v = {0};
    br_plan_note_upload(&v, 8, 2.0, 0.5);  // first: taken as is, 8/2 = 4 samples/s
    CU_ASSERT_EQUAL(v.rate, 4.0);
    CU_ASSERT_EQUAL(v.up_s, 0.5);
    br_plan_note_upload(&v, 8, 1.0, 1.5);  // then the mean: (4 + 8)/2, (0.5 + 1.5)/2
    CU_ASSERT_EQUAL(v.rate, 6.0);
    CU_ASSERT_EQUAL(v.up_s, 1.0);
    br_plan_note_upload(&v, 8, 0.001, 3.0);  // 1 ms of compute measures rate 0: (6 + 0)/2
    CU_ASSERT_EQUAL(v.rate, 3.0);
    CU_ASSERT_EQUAL(v.up_s, 2.0);
    CU_ASSERT_EQUAL(v.idle_rounds, 0);
}

static void test_note_trainers(void) {
    // 2 trainers, 40 samples, 4 s of compute summed: 2 s each, 40/2/2 = 10 samples/s
    double r = br_plan_note_trainers(0.0, 40, 2, 4.0);
    CU_ASSERT_EQUAL(r, 10.0);
    // then the mean with 60/2/1 = 30: 20
    r = br_plan_note_trainers(r, 60, 2, 2.0);
    CU_ASSERT_EQUAL(r, 20.0);
    // nothing measured: 0.1 ms per trainer, or no trainer samples
    CU_ASSERT_EQUAL(br_plan_note_trainers(r, 60, 2, 2e-4), 20.0);
    CU_ASSERT_EQUAL(br_plan_note_trainers(r, 0, 2, 2.0), 20.0);
}

// ---- main ----

int main(void) {
    static const TuTest tests[] = {
        {"equal plan", test_equal},
        {"batch too small for everyone", test_batch_too_small},
        {"no volunteers", test_no_volunteers},
        {"throughput: fast and slow volunteers", test_fast_and_slow},
        {"throughput: slow links and the idle probe", test_slow_links},
        {"throughput: a small share becomes the probe", test_small_share_gets_probe},
        {"throughput: unmeasured volunteers and trainers", test_unmeasured},
        {"throughput: the trainers keep one sample each", test_trainers_keep_one_each},
        {"one volunteer's share is capped", test_max_share},
        {"shares never exceed the batch", test_never_exceeds_batch},
        {"volunteer speed estimate", test_note_upload},
        {"trainer speed estimate", test_note_trainers},
    };
    return tu_run_suite("planner", tests, sizeof tests / sizeof tests[0]);
}
