// status.h: the bridge's read-only status page: "/" (the page of bridge/status_page.h) and
// "/status.json" (step, loss, samples/s, the loss curve, and per volunteer its name, a short
// identity, state and counts; no tokens or addresses), served by libevent's evhttp on the
// server's event base. Internal to the bridge server.
#ifndef CONFLUX_BRIDGE_STATUS_H
#define CONFLUX_BRIDGE_STATUS_H

#include "bridge/server.h"

enum { LOSS_HISTORY = 2000 };  // loss points the page keeps (thinned when full)

// The page's state (BridgeServer.status).
typedef struct {
    struct evhttp *http;               // NULL: no status page
    float loss_hist[LOSS_HISTORY][2];  // (step, loss)
    int loss_n;
    double last_loss, samples_per_s, t_last_step;
} StatusPage;

// Serves the page on o.status_listen ("HOST:PORT"). Returns 0, or -1 with err (not
// HOST:PORT, or the address cannot be bound).
int br_status_start(BridgeServer *b, char *err);
// Records a finished step for the page: last loss, samples per second, the loss curve.
void br_status_note_step(BridgeServer *b, const StepResult *r);
// Counts the page's connections that evhttp closed and re-opens the listener below the cap
// (from the server's 250 ms tick).
void br_status_tick(BridgeServer *b);
// Stops serving the page. Safe when it never started.
void br_status_free(BridgeServer *b);

#endif
