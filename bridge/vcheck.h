// vcheck.h: conflux-volunteer --check (bridge/vcheck.c): measures the link to a bridge and
// what this machine would contribute, then leaves with BYE without joining rounds.
//
// Steps, each reported on stderr: TCP connect (time), TLS with the pinned certificate,
// the join token (HELLO/WELCOME), round trips (empty PROBEs: min and median), the download
// rate (the state, timed), the upload rate (PROBEs of filler the bridge discards, timed by
// the bridge), BYE; then a short local benchmark of the run's model (its configuration is
// at the head of the state: the samples per second of forward + backward on micro-batches
// of this machine's data, when the run's data is here) and the time a gradient upload
// would take at the measured rate. A last line "check: key=value ..." repeats the figures
// for scripts.
#ifndef CONFLUX_BRIDGE_VCHECK_H
#define CONFLUX_BRIDGE_VCHECK_H

#include "bridge/client.h"

// Exit statuses of --check (docs/tools.md): 0 the link works; 1 another failure (e.g. a
// bridge without the link check); 2 usage (main's); one per failure class of the join:
enum {
    VCHECK_UNREACHABLE = 3,  // cannot resolve, connection refused, no answer
    VCHECK_TLS = 4,          // TLS handshake failed (a --plaintext bridge, or the reverse)
    VCHECK_PIN = 5,          // certificate fingerprint mismatch
    VCHECK_TOKEN = 6,        // the bridge refused the join token
    VCHECK_VERSION = 7,      // protocol version mismatch
    VCHECK_BUSY = 8,         // the bridge is full, shutting down, or its tokens unavailable
};

// Runs the check with the join options o (o->identity is ignored: a check never resumes);
// sets are the volunteer's --set overrides (data paths, train.threads) for the benchmark.
// Returns the exit status above.
int volunteer_check(const BrClientOptions *o, const char *const *sets, int n_sets);

#endif
