// runcols.h: the columns of the run directory's CSV files, defined once for their writers
// (io/run/runlog.c, bridge/rounds.c, bridge/server.c) and their reader (io/eval/report.c).
// Each file is appended to by every process of a run that writes it (a resumed trainer, each
// bridge process); the header line is written when a file is new.
//
// RUN_DIR/metrics.csv: one row per optimizer step (docs/design.md, "Run directory"), plus a
//   trailing valid_loss (empty on steps without validation; files from before it have 12
//   columns).
//
// RUN_DIR/bridge.csv: one row per round (optimizer step):
//   time_s                      seconds since this bridge process started
//   step, samples               the step and the samples summed into it
//   trainer_samples             the trainers' share of the plan
//   volunteers_assigned         volunteers in the plan (bridge/planner.h)
//   volunteer_samples_assigned  samples of their shares
//   fresh_samples, stale_samples   volunteer samples summed: this round's, earlier rounds' late ones
//   dropped_samples             late uploads older than max_staleness, not summed
//   lost_samples                shares whose volunteer disconnected
//   participants, live_volunteers, loss
//   wait_s, allreduce_s         waiting for uploads; the cluster's all-reduce
//   bytes_sent, bytes_recv      bytes to and from volunteers this round
//   upload_bytes_timed, upload_s_timed   uploads summed this round: bytes after their first
//                               chunk and the seconds they took (goodput)
// RUN_DIR/volunteers.csv: one row per volunteer event (joined, live, accepted, late, lost,
//   left, kicked, summary, clipped and down-weighted by robust aggregation, ...); name,
//   token_name and detail are quoted CSV fields.
#ifndef CONFLUX_IO_RUNCOLS_H
#define CONFLUX_IO_RUNCOLS_H

#define RUNCOLS_METRICS                                                                    \
    "time_s,step,samples,loss,lr,samples_per_s,tokens_per_s,compute_s,comm_s,bytes_sent,"  \
    "bytes_recv,participants,valid_loss"
#define RUNCOLS_METRICS_N 13

#define RUNCOLS_BRIDGE                                                                     \
    "time_s,step,samples,trainer_samples,volunteers_assigned,volunteer_samples_assigned,"  \
    "fresh_samples,stale_samples,dropped_samples,lost_samples,participants,live_volunteers," \
    "loss,wait_s,allreduce_s,bytes_sent,bytes_recv,upload_bytes_timed,upload_s_timed"
#define RUNCOLS_BRIDGE_N 19

#define RUNCOLS_VOLUNTEERS "time_s,step,identity,name,token_name,event,samples,detail"
#define RUNCOLS_VOLUNTEERS_N 8

#endif
