// testutil.h: helpers shared by the test programs: a temporary directory per suite, the
// one way to run a program's CUnit suites (tu_run) and to skip a check (TU_SKIP).
//
// Header-only (static inline): the Makefile links each tests/test_*.c alone with
// libconflux.a, so there is no test library to put them in.
#ifndef CONFLUX_TESTUTIL_H
#define CONFLUX_TESTUTIL_H

#include <CUnit/Basic.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TU_PATH_BUFS 8      // tu_path() results alive at once
#define TU_PATH_LEN 1024    // longest tu_path() result, NUL included

// Creates a new, empty directory "$TMPDIR/<prefix>XXXXXX" ("/tmp/..." when TMPDIR is unset
// or empty) and writes its path into dir (cap bytes). Returns 0, or -1 (errno from mkdtemp;
// a path too long for dir also fails there). The caller removes it (tu_rm_tree).
static inline int tu_make_tmpdir(char *dir, size_t cap, const char *prefix) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/%sXXXXXX", base && base[0] ? base : "/tmp", prefix);
    return mkdtemp(dir) ? 0 : -1;
}

// "dir/name" in one of TU_PATH_BUFS static buffers used in turn: the result stays valid for
// the next TU_PATH_BUFS - 1 calls only (for immediate use; copy it to keep it). A path
// longer than TU_PATH_LEN - 1 bytes is cut short. Not thread-safe.
static inline const char *tu_path(const char *dir, const char *name) {
    static char buf[TU_PATH_BUFS][TU_PATH_LEN];
    static int k;
    k = (k + 1) % TU_PATH_BUFS;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

// Removes dir and everything below it; symbolic links are removed, not followed. Returns
// 0, or -1 when dir cannot be opened or removed (an entry that cannot be removed, or whose
// path would be longer than TU_PATH_LEN - 1 bytes and is left alone, makes the final rmdir
// fail).
static inline int tu_rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[TU_PATH_LEN];
        int len = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (len < 0 || (size_t)len >= sizeof p) continue;
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) tu_rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

// ---- running CUnit programs -------------------------------------------------------------
// Every tests/unit/test_*.c main runs its suites through tu_run (or tu_run_suite for one
// plain suite), so that the program's exit status is 1 whenever anything went wrong:
// the registry cannot be set up, a suite or test cannot be registered (CU_add_test's
// result is never ignored), a suite's init or cleanup fails (its tests then do not run,
// which CU_basic_run_tests alone reports as success), or any test or assertion fails.

typedef struct {
    const char *name;
    void (*fn)(void);
} TuTest;

typedef struct {
    const char *name;
    CU_InitializeFunc init;      // once before the suite's tests; non-zero fails the program
    CU_CleanupFunc clean;        // once after them; non-zero fails the program
    CU_SetUpFunc setup;          // before each test (NULL: none)
    CU_TearDownFunc teardown;    // after each test (NULL: none)
    const TuTest *tests;
    size_t n_tests;
} TuSuite;

#define TU_NELEM(a) (sizeof(a) / sizeof((a)[0]))

// Registers n_suites suites and runs them in mode (CU_BRM_VERBOSE in the test run). filter:
// NULL, or only the tests whose "suite: name" contains it are registered. Returns the exit
// status: 0 when everything registered, every suite's init and cleanup succeeded and no
// test or assertion failed; 1 otherwise (with a line on stderr saying which).
static inline int tu_run(const TuSuite *suites, size_t n_suites, const char *filter,
                         CU_BasicRunMode mode) {
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "tu_run: cannot initialise the CUnit registry: %s\n", CU_get_error_msg());
        return 1;
    }
    int rc = 0;
    for (size_t k = 0; k < n_suites && rc == 0; k++) {
        const TuSuite *su = &suites[k];
        CU_pSuite s = CU_add_suite_with_setup_and_teardown(su->name, su->init, su->clean,
                                                           su->setup, su->teardown);
        if (!s) {
            fprintf(stderr, "tu_run: cannot register suite '%s': %s\n", su->name, CU_get_error_msg());
            rc = 1;
        }
        for (size_t i = 0; s && i < su->n_tests; i++) {
            char full[256];
            snprintf(full, sizeof full, "%s: %s", su->name, su->tests[i].name);
            if (filter && !strstr(full, filter)) continue;
            if (!CU_add_test(s, su->tests[i].name, su->tests[i].fn)) {
                fprintf(stderr, "tu_run: cannot register test '%s': %s\n", full, CU_get_error_msg());
                rc = 1;
                break;
            }
        }
    }
    if (rc == 0) {
        CU_basic_set_mode(mode);
        CU_ErrorCode err = CU_basic_run_tests();
        unsigned n_suites_failed = CU_get_number_of_suites_failed();
        unsigned n_tests_failed = CU_get_number_of_tests_failed();
        unsigned n_asserts_failed = CU_get_number_of_failures();
        if (err != CUE_SUCCESS || n_suites_failed || n_tests_failed || n_asserts_failed) {
            fprintf(stderr, "\nFAILED: %u suite(s) failed (init or cleanup), %u test(s) and "
                            "%u assertion(s) failed%s%s\n",
                    n_suites_failed, n_tests_failed, n_asserts_failed,
                    err != CUE_SUCCESS ? "; CUnit: " : "", err != CUE_SUCCESS ? CU_get_error_msg() : "");
            rc = 1;
        }
    }
    CU_cleanup_registry();
    return rc;
}

// One suite of n tests without init or cleanup, run verbosely; the exit status of tu_run.
static inline int tu_run_suite(const char *suite, const TuTest *tests, size_t n) {
    TuSuite s = {.name = suite, .tests = tests, .n_tests = n};
    return tu_run(&s, 1, NULL, CU_BRM_VERBOSE);
}

// ---- skips -------------------------------------------------------------------------------
// A check that cannot run here (a missing module, a missing data file) calls TU_SKIP(why)
// and returns: it prints "SKIPPED: why" on a line of its own, which tests/run-tests.sh shows
// under the program's PASS line and counts as skipped. With CONFLUX_NO_SKIP=1 (CI, where
// every such condition must hold) it records a failed assertion with the reason instead.
#define TU_SKIP(why) tu_skip_at((why), __LINE__, __FILE__)

static inline void tu_skip_at(const char *why, unsigned line, const char *file) {
    const char *no_skip = getenv("CONFLUX_NO_SKIP");
    if (no_skip && !strcmp(no_skip, "1")) {
        char msg[2 * TU_PATH_LEN];
        snprintf(msg, sizeof msg, "would skip, but CONFLUX_NO_SKIP=1: %s", why);
        printf("\nFAIL: %s\n", msg);
        CU_assertImplementation(CU_FALSE, line, msg, file, "", CU_FALSE);
        return;
    }
    printf("\nSKIPPED: %s\n", why);
}

#endif
