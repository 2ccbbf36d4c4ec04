// testutil.h: helpers shared by the test programs: a temporary directory per suite.
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

// One CUnit suite of n tests, run verbosely. Returns the exit status: 0 when every test
// passed, 1 otherwise (CU_basic_run_tests alone returns 0 even when tests fail).
typedef struct {
    const char *name;
    void (*fn)(void);
} TuTest;

static inline int tu_run_suite(const char *suite, const TuTest *tests, size_t n) {
    int rc = 0;
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    for (size_t i = 0; s && i < n; i++)
        if (!CU_add_test(s, tests[i].name, tests[i].fn)) s = NULL;
    if (!s) {
        fprintf(stderr, "%s: cannot register tests: %s\n", suite, CU_get_error_msg());
        rc = 1;
    } else {
        CU_basic_set_mode(CU_BRM_VERBOSE);
        if (CU_basic_run_tests() != CUE_SUCCESS) rc = 1;
        if (CU_get_number_of_failures() > 0) rc = 1;
        if (CU_get_number_of_suites_failed() > 0 || CU_get_number_of_tests_failed() > 0) rc = 1;
    }
    CU_cleanup_registry();
    return rc;
}

#endif
