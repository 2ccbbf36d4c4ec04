// state.h: the training state a volunteer downloads from the bridge, as one byte blob.
//
// Layout (little-endian):
//   0   4  magic "CXST"
//   4   4  version (1)
//   8   8  step (optimizer steps done)
//   16  8  samples_seen (global data cursor)
//   24  8  n_params
//   32  8  data_windows (windows of the run's training data: the volunteer's copy must match)
//   40  8  config_bytes
//   48  ...config text (INI, config_bytes bytes, no NUL)
//       ...params, exp_avg, exp_avg_sq: 3 * n_params little-endian binary32
//          (version 2, a DiLoCo run's outer state: params = the outer parameters, exp_avg =
//          the outer momentum, no exp_avg_sq: a joining worker's inner moments start at 0)
//       4  CRC32C of every byte before it
// Pure functions: no I/O.
#ifndef CONFLUX_BRIDGE_STATE_H
#define CONFLUX_BRIDGE_STATE_H

#include <stddef.h>
#include <stdint.h>

#define BR_STATE_MAGIC "CXST"
#define BR_STATE_VERSION 1u
#define BR_STATE_VERSION_OUTER 2u
#define BR_STATE_HEADER_BYTES 48

typedef struct {
    uint64_t step, samples_seen, n_params, data_windows;
    const char *config;      // config_bytes bytes, not NUL-terminated in a parsed blob
    size_t config_bytes;
    const float *params, *m, *v;  // n_params each (parsed: point into a private copy); v NULL:
                                  // the outer state (version 2)
} BrState;

// Bytes of the blob for a state with these sizes and n_arrays arrays (3; 2 without v).
size_t br_state_bytes(size_t n_params, size_t config_bytes, int n_arrays);

// Writes the blob into buf (br_state_bytes(...) bytes; version 2 when s->v is NULL). Returns
// the size written.
size_t br_state_write(uint8_t *buf, const BrState *s);

// Parses and checks a blob (magic, version, sizes, CRC). On success fills *s with pointers
// into freshly allocated copies owned by *s (free with br_state_free) and returns 0;
// otherwise -1 with err naming what is wrong.
int br_state_parse(const uint8_t *buf, size_t n, BrState *s, char *err);
void br_state_free(BrState *s);
// The run's configuration text from the first n bytes of a blob (a download's head),
// NUL-terminated and malloc'ed, or NULL when they do not hold it all (or are no state).
char *br_state_peek_config(const uint8_t *buf, size_t n);

#endif
