// test_state.c: the state blob a volunteer downloads (bridge/state.h): version 1 (params and
// both AdamW moments) and version 2 (a DiLoCo run's outer state: params and the outer
// momentum, no second moment) round-trip exactly; sizes, versions, checksums and
// truncation are rejected with their messages.
#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/state.h"
#include "models/common.h"
#include "tests/unit/testutil.h"

enum { N = 37 };
static const char CONFIG[] = "[train]\nsteps = 12\n";

static float P[N], M[N], V[N];

static void fill(void) {
    for (int i = 0; i < N; i++) {
        P[i] = (float)i * 0.25f - 3.0f;
        M[i] = -1e-3f * (float)(i + 1);
        V[i] = 1e-6f * (float)(i * i + 1);
    }
}

// Writes a blob of the given state; *n receives its size.
static uint8_t *blob(int with_v, size_t *n) {
    fill();
    BrState st = {.step = 7, .samples_seen = 4096, .n_params = N, .data_windows = 123,
                  .config = CONFIG, .config_bytes = strlen(CONFIG), .params = P, .m = M,
                  .v = with_v ? V : NULL};
    *n = br_state_bytes(N, strlen(CONFIG), with_v ? 3 : 2);
    uint8_t *b = malloc(*n);
    CU_ASSERT_EQUAL_FATAL(br_state_write(b, &st), *n);
    return b;
}

static void test_roundtrip(void) {
    for (int with_v = 0; with_v <= 1; with_v++) {
        size_t n;
        uint8_t *b = blob(with_v, &n);
        CU_ASSERT_EQUAL(n, BR_STATE_HEADER_BYTES + strlen(CONFIG) + (size_t)(with_v ? 3 : 2) * N * 4 + 4);
        CU_ASSERT_EQUAL(b[4], with_v ? BR_STATE_VERSION : BR_STATE_VERSION_OUTER);
        BrState s;
        char err[CX_ERRLEN];
        CU_ASSERT_EQUAL_FATAL(br_state_parse(b, n, &s, err), 0);
        CU_ASSERT_EQUAL(s.step, 7);
        CU_ASSERT_EQUAL(s.samples_seen, 4096);
        CU_ASSERT_EQUAL(s.n_params, N);
        CU_ASSERT_EQUAL(s.data_windows, 123);
        CU_ASSERT_EQUAL(s.config_bytes, strlen(CONFIG));
        CU_ASSERT_STRING_EQUAL(s.config, CONFIG);
        CU_ASSERT(memcmp(s.params, P, sizeof P) == 0);
        CU_ASSERT(memcmp(s.m, M, sizeof M) == 0);
        if (with_v) {
            CU_ASSERT(s.v && memcmp(s.v, V, sizeof V) == 0);
        } else {
            CU_ASSERT_PTR_NULL(s.v);
        }
        br_state_free(&s);
        free(b);
    }
}

static void expect(const uint8_t *b, size_t n, const char *want) {
    BrState s;
    char err[CX_ERRLEN] = "";
    CU_ASSERT_EQUAL(br_state_parse(b, n, &s, err), -1);
    if (strcmp(err, want) != 0) printf("\n    got '%s'\n    want '%s'", err, want);
    CU_ASSERT_STRING_EQUAL(err, want);
}

static void test_rejects(void) {
    size_t n;
    uint8_t *b = blob(0, &n);
    char msg[200];
    // a version-2 blob cut to a version-1 size, and the other way round
    snprintf(msg, sizeof msg, "state is %zu bytes but its header implies %zu", n - 4, n);
    expect(b, n - 4, msg);
    b[4] = 1;  // claims 3 arrays: the size disagrees (checked before the checksum)
    snprintf(msg, sizeof msg, "state is %zu bytes but its header implies %zu", n, n + 4 * N);
    expect(b, n, msg);
    b[4] = 3;
    expect(b, n, "state version 3 is not supported (this build reads 1 and 2)");
    b[4] = 2;
    b[BR_STATE_HEADER_BYTES + 3] ^= 0x40;  // a flipped bit in the configuration
    uint32_t stored = (uint32_t)b[n - 4] | (uint32_t)b[n - 3] << 8 | (uint32_t)b[n - 2] << 16 |
                      (uint32_t)b[n - 1] << 24;
    BrState s;
    char err[CX_ERRLEN];
    CU_ASSERT_EQUAL(br_state_parse(b, n, &s, err), -1);
    snprintf(msg, sizeof msg, "state checksum mismatch (stored %08x,", stored);
    CU_ASSERT(strncmp(err, msg, strlen(msg)) == 0);
    memcpy(b, "CXSU", 4);
    expect(b, n, "state does not start with CXST");
    snprintf(msg, sizeof msg, "state of %d bytes is shorter than its header", BR_STATE_HEADER_BYTES);
    expect(b, BR_STATE_HEADER_BYTES, msg);
    free(b);
}

// The configuration from a blob's head alone (conflux-volunteer --check reads it from the
// first bytes of the download): exactly the header + the text is enough, a byte less is not.
static void test_peek_config(void) {
    size_t n;
    uint8_t *b = blob(1, &n);
    const size_t need = BR_STATE_HEADER_BYTES + strlen(CONFIG);
    char *c = br_state_peek_config(b, need);
    CU_ASSERT(c && strcmp(c, CONFIG) == 0);
    free(c);
    CU_ASSERT_PTR_NULL(br_state_peek_config(b, need - 1));
    CU_ASSERT_PTR_NULL(br_state_peek_config(b, BR_STATE_HEADER_BYTES - 1));
    memcpy(b, "CXSU", 4);
    CU_ASSERT_PTR_NULL(br_state_peek_config(b, n));
    free(b);
}

int main(void) {
    static const TuTest tests[] = {
        {"version 1 and 2 round trips", test_roundtrip},
        {"bad sizes, versions, checksums, magic", test_rejects},
        {"the configuration from a blob's head", test_peek_config},
    };
    return tu_run_suite("state", tests, sizeof tests / sizeof tests[0]);
}
