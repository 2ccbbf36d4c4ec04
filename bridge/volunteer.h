// volunteer.h: the volunteer (bridge/volunteer.c): conflux-volunteer's whole program, which
// its main calls with no hooks. A test tool (tests/tools/tool_poisoner) calls it with hooks
// that wrap the volunteer's averaging: the same download, training loop and client code as
// the product, with what it uploads changed. The product has no attack option.
#ifndef CONFLUX_BRIDGE_VOLUNTEER_H
#define CONFLUX_BRIDGE_VOLUNTEER_H

#include "models/diloco.h"
#include "models/train.h"

typedef struct {
    void *ctx;
    // sync rounds: returns the averager the volunteer trains with, given the bridge link's
    Averager (*wrap_averager)(void *ctx, Averager inner);
    // diloco rounds: returns the outer link the volunteer's worker posts through
    OuterLink (*wrap_link)(void *ctx, OuterLink inner);
} VolunteerHooks;

// conflux-volunteer's main (argc/argv as its --help says); hooks may be NULL.
int conflux_volunteer_main(int argc, char **argv, const VolunteerHooks *hooks);

#endif
