// robust.h: robust aggregation of untrusted contributions (issue 15, "Robust aggregation").
// Pure math on float vectors, no I/O; every sum accumulates in double.
//
// The bridge aggregates k contributions x[0..k) (n floats each, weights w[j] > 0: loss
// tokens or samples) into one vector. Three ways (RobustKind):
//   mean            sum_j w_j x_j / W (W = sum_j w_j): exact, no defence (trusted peers)
//   centered-clip   CenteredClip (Karimireddy, He, Jaggi 2021, "Learning from History for
//                   Byzantine Robust Optimization"; hivemind's BTARD uses it): from a start v,
//                   iterate  v += sum_j w_j c_j (x_j - v) / W,  c_j = min(1, tau / ||x_j - v||).
//                   A contribution within tau of v counts in full; one farther away counts as
//                   if it lay at distance tau in its direction, so one contribution of weight
//                   w moves the result by at most tau * w / W per iteration, however large it
//                   is. Start and radius (both scale-free, no constant tied to a model):
//                     v_0 = the coordinate-wise weighted median (robust while less than half
//                           the weight is hostile);
//                     tau = tau_ratio * the weighted median of ||x_j - v_0||.
//                   Honest contributions of similar size lie at about the same distance from
//                   v_0 (the sampling noise of a share, concentrated in many dimensions), so
//                   with tau_ratio 2 none is clipped and the result is their weighted mean
//                   (to float rounding), and with 1 (the bridge's choice, aggregate.c) the
//                   ones beyond the median distance are clipped by factors near 1; a hostile
//                   minority cannot raise the median distance above an honest one's.
//   trimmed-mean    per coordinate: sort the k values, drop weight trim * W from each end
//                   (part of a value's weight where a cut falls inside it), weighted mean of
//                   the rest. trim 0 is the mean; trim -> 0.5 the weighted median.
// And the first defence, before any of them: robust_clip scales one contribution down to
// a maximum L2 norm (the bridge's --clip-ratio times the trainers' own norm).
#ifndef CONFLUX_BRIDGE_ROBUST_H
#define CONFLUX_BRIDGE_ROBUST_H

#include <stddef.h>

typedef enum { ROBUST_MEAN = 0, ROBUST_CENTERED_CLIP = 1, ROBUST_TRIMMED_MEAN = 2 } RobustKind;

#define ROBUST_MAX_K 4096  // contributions per aggregation at most (the kernels' stack arrays)

// "mean", "centered-clip", "trimmed-mean" -> RobustKind; -1 for anything else.
int robust_kind_by_name(const char *name);
const char *robust_kind_name(int kind);

// L2 norm of v (n floats), summed in double.
double robust_norm(const float *v, size_t n);
// ||a - b||, summed in double.
double robust_dist(const float *a, const float *b, size_t n);

// Scales v (n floats) by max_norm / ||v|| when ||v|| > max_norm. Returns the factor applied
// (1: unchanged; max_norm <= 0 means no limit).
double robust_clip(float *v, size_t n, double max_norm);

// Coordinate-wise weighted median of x[0..k) (n floats each, weights w > 0) into out (n):
// per coordinate, the value where the cumulative weight of the sorted values passes W / 2;
// where a cut falls exactly between two values (within 1e-12 W), their mean.
void robust_median(float *out, const float *const *x, const double *w, int k, size_t n);

// Coordinate-wise weighted trimmed mean of x[0..k) into out (n), trim in [0, 0.5): per
// coordinate the values sorted, the weight in [trim W, (1 - trim) W] of the cumulative
// weight kept, their weighted mean. trimmed (may be NULL; k counters the caller zeroed)
// counts per contribution the coordinates where it lost weight.
void robust_trimmed_mean(float *out, const float *const *x, const double *w, int k, size_t n,
                         double trim, long *trimmed);

// CenteredClip of x[0..k) into out (n), as above: v_0 the weighted median, tau = tau_ratio x
// the weighted median distance to it (when that is 0, a contribution holding half the weight
// or more being the median: the weighted median of the nonzero distances, so that the others
// are not weighed down to nothing), then at most iters iterations (stops once every
// contribution lies within tau of the mean it gives). factor (may be NULL; k doubles)
// receives each contribution's c_j in the last iteration (1: counted in full). Returns tau.
double robust_centered_clip(float *out, const float *const *x, const double *w, int k, size_t n,
                            double tau_ratio, int iters, double *factor);

// Weighted mean of x[0..k) into out (n), accumulated in double: the reference the robust
// kernels reduce to on honest contributions.
void robust_mean(float *out, const float *const *x, const double *w, int k, size_t n);

#endif
