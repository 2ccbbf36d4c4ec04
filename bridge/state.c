// state.c: serialized training state (see state.h).
#include "bridge/state.h"

#include <stdlib.h>
#include <string.h>

#include "models/codec.h"
#include "bridge/proto.h"
#include "models/common.h"

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

size_t br_state_bytes(size_t n_params, size_t config_bytes, int n_arrays) {
    return BR_STATE_HEADER_BYTES + config_bytes + (size_t)n_arrays * n_params * sizeof(float) + 4;
}

size_t br_state_write(uint8_t *buf, const BrState *s) {
    memcpy(buf, BR_STATE_MAGIC, 4);
    put_u32(buf + 4, s->v ? BR_STATE_VERSION : BR_STATE_VERSION_OUTER);
    put_u64(buf + 8, s->step);
    put_u64(buf + 16, s->samples_seen);
    put_u64(buf + 24, s->n_params);
    put_u64(buf + 32, s->data_windows);
    put_u64(buf + 40, s->config_bytes);
    uint8_t *p = buf + BR_STATE_HEADER_BYTES;
    memcpy(p, s->config, s->config_bytes);
    p += s->config_bytes;
    const float *arr[3] = {s->params, s->m, s->v};
    for (int k = 0; k < (s->v ? 3 : 2); k++) {
        codec_fp32_encode(p, arr[k], s->n_params);
        p += s->n_params * sizeof(float);
    }
    put_u32(p, br_crc32c(0, buf, (size_t)(p - buf)));
    return (size_t)(p - buf) + 4;
}

char *br_state_peek_config(const uint8_t *buf, size_t n) {
    if (n < BR_STATE_HEADER_BYTES || memcmp(buf, BR_STATE_MAGIC, 4) != 0) return NULL;
    uint64_t len = get_u64(buf + 40);
    if (len > n - BR_STATE_HEADER_BYTES) return NULL;
    char *text = malloc((size_t)len + 1);
    CHECK(text, "out of memory for a %llu-byte configuration", (unsigned long long)len);
    memcpy(text, buf + BR_STATE_HEADER_BYTES, (size_t)len);
    text[len] = 0;
    return text;
}

int br_state_parse(const uint8_t *buf, size_t n, BrState *s, char *err) {
    memset(s, 0, sizeof *s);
    if (n < BR_STATE_HEADER_BYTES + 4) return cx_err(err, "state of %zu bytes is shorter than its header", n);
    if (memcmp(buf, BR_STATE_MAGIC, 4) != 0) return cx_err(err, "state does not start with CXST");
    uint32_t version = get_u32(buf + 4);
    if (version != BR_STATE_VERSION && version != BR_STATE_VERSION_OUTER)
        return cx_err(err, "state version %u is not supported (this build reads %u and %u)", version,
                      BR_STATE_VERSION, BR_STATE_VERSION_OUTER);
    const int n_arrays = version == BR_STATE_VERSION ? 3 : 2;
    uint64_t n_params = get_u64(buf + 24), cfg = get_u64(buf + 40);
    if (n_params > ((uint64_t)1 << 34) || cfg > ((uint64_t)1 << 24))
        return cx_err(err, "state declares %llu parameters and %llu config bytes: too large",
                      (unsigned long long)n_params, (unsigned long long)cfg);
    size_t want = br_state_bytes((size_t)n_params, (size_t)cfg, n_arrays);
    if (n != want)
        return cx_err(err, "state is %zu bytes but its header implies %zu", n, want);
    uint32_t crc = get_u32(buf + n - 4), have = br_crc32c(0, buf, n - 4);
    if (crc != have)
        return cx_err(err, "state checksum mismatch (stored %08x, computed %08x)", crc, have);
    s->step = get_u64(buf + 8);
    s->samples_seen = get_u64(buf + 16);
    s->n_params = n_params;
    s->data_windows = get_u64(buf + 32);
    s->config_bytes = (size_t)cfg;
    char *text = malloc(cfg + 1);
    float *arr = malloc((size_t)n_arrays * n_params * sizeof(float) + 1);
    if (!text || !arr) {
        free(text);
        free(arr);
        return cx_err(err, "out of memory for a state of %zu bytes", n);
    }
    memcpy(text, buf + BR_STATE_HEADER_BYTES, cfg);
    text[cfg] = 0;
    codec_fp32_decode(arr, buf + BR_STATE_HEADER_BYTES + cfg, (size_t)n_arrays * n_params);
    s->config = text;
    s->params = arr;
    s->m = arr + n_params;
    s->v = n_arrays == 3 ? arr + 2 * n_params : NULL;
    return 0;
}

void br_state_free(BrState *s) {
    free((void *)s->config);
    free((void *)s->params);
    memset(s, 0, sizeof *s);
}
