// conflux-volunteer: joins a collaborative run through its bridge (bridge/volunteer.h;
// `conflux-volunteer --help`).
#include "bridge/volunteer.h"

int main(int argc, char **argv) { return conflux_volunteer_main(argc, argv, NULL); }
