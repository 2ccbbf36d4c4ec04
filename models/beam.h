// beam.h: greedy and beam-search decoding over any incremental scorer.
//
// The model side is a step function (for the encoder-decoder: encdec_gen_step) that, at
// decoding step t, extends hypotheses by one token and returns next-token logits; this
// module turns them into log-probabilities (log-softmax, double precision) and searches.
//
// Conventions (all lengths count generated tokens; the BOS fed at position 0 is not one):
//  * Step t (t = 0, 1, ...) feeds token bos (t == 0) or a hypothesis' last token at
//    decoder position t and scores token t+1 of the hypothesis.
//  * Forbidden continuations get log-probability -inf, WITHOUT renormalising the others
//    (as PreSumm/BertSumAbs and Hugging Face's logits processors do): the banned tokens;
//    EOS while fewer than min_len tokens have been generated; with block_trigrams, any
//    token that would make the hypothesis' last three tokens equal an earlier trigram of
//    the same hypothesis. With a token automaton (fsm: io/tokenizer's of well-formed UTF-8,
//    so that no headline ends inside, or breaks, a character), any token the automaton
//    rejects in the hypothesis' state; EOS, and at max_len any token, unless it leads to
//    state 0 (the start and only accepting state). Last, a caller's mask (io/headline/lexicon.h's
//    rule of known words, for one).
//  * A hypothesis ends when it emits EOS (EOS is part of it and of its length) or when it
//    reaches max_len tokens (then it ends without EOS).
//  * Score of a finished hypothesis of len tokens with summed log-probability S:
//    S / lp(len), lp(len) = ((5 + len) / 6)^alpha  (GNMT length penalty, Wu et al. 2016, as
//    used by BertSumAbs/OpenNMT); alpha = 0 gives the plain sum.
//  * Beam search (OpenNMT-style selection): at each step the K best continuations of all
//    live hypotheses by summed log-probability are kept (ties: lower hypothesis index, then
//    lower token id); those ending (EOS or max_len) move to the finished list, the others
//    stay live, so the live beam shrinks by the number that ended. The search stops when
//    nothing is live, or when the best finished score is >= every live hypothesis' upper
//    bound S_live / lp(max_len) (log-probabilities are <= 0 and alpha >= 0, so no
//    continuation can do better): when K is at least the number of possible hypotheses the
//    result is the exhaustive optimum, and K = 1 is exactly greedy search.
//  * Greedy search takes the highest log-probability allowed token at each step (ties: the
//    lower id) and reports the same normalised score.
//  * Sampling (beam_sample) draws n hypotheses at once, independently, each token from the
//    allowed ones (the rules above) with probability q[w] = exp(lp[w] / T) / Z (temperature T,
//    Z the sum over the allowed tokens), after epsilon truncation (Hewitt et al. 2022, as
//    Freitag et al. 2023 use it for minimum Bayes risk candidates): tokens with q[w] < epsilon
//    are dropped and the rest renormalised; when none is left, the most likely token (lower id
//    on ties) is taken. Token t of sample j uses the uniform number u = cx_rng_uniform(seed,
//    j * max_len + t) (models/rng.h): the first w in id order whose cumulative kept mass
//    exceeds u times the kept total (the last kept token when rounding leaves none), so a
//    sample does not depend on the others or on how the steps are batched. Its score is that
//    of beam search: the summed untempered lp of its tokens over lp(len).
// Nothing here allocates after beam_work_create.
#ifndef CONFLUX_BEAM_H
#define CONFLUX_BEAM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int beam_size;          // K >= 1
    int min_len;            // EOS forbidden while fewer tokens than this were generated
    int max_len;            // at most this many generated tokens (EOS included), >= 1
    float alpha;            // GNMT length-penalty exponent, >= 0
    int block_trigrams;     // 1: no trigram occurs twice within a hypothesis
    int32_t bos, eos;       // start token fed at step 0; end token
    const int32_t *banned;  // n_banned tokens that are never generated (may be NULL)
    int n_banned;
    // a token automaton (may be NULL): fsm[s * V + w] is the state after token w in state
    // s (s < fsm_states <= 255), or BEAM_FSM_REJECT; hypotheses start in state 0 and end
    // only there
    const uint8_t *fsm;
    int fsm_states;
    // a caller's rule (may be NULL), applied after the ones above to every live hypothesis
    // at every step: mask(mask_ctx, tid, hist, t, last, eos, lp) sets lp[w] = -INFINITY for
    // each token w that may not follow the t tokens hist (EOS included; last: w would be the
    // final token, at max_len). It must not raise any lp, and its verdicts must depend on
    // its arguments only. beam_sample masks the samples of a step on the pool's threads
    // (models/par.h) at once: tid (0 <= tid < CX_PAR_MAX_THREADS) is the calling thread's,
    // so a mask keeps its scratch per tid; beam search calls it with tid 0 only.
    void (*mask)(void *mask_ctx, int tid, const int32_t *hist, int t, int last, int32_t eos,
                 double *lp);
    void *mask_ctx;
} BeamConfig;
#define BEAM_FSM_REJECT 255

// Advances K hypotheses: hypothesis k (k < K) is hypothesis parents[k] of the previous
// step (its cached state is reordered accordingly) extended by tokens[k] at decoder
// position t. Writes next-token logits (K,V). At t == 0, K == 1, parents[0] == 0 and
// tokens[0] == bos.
typedef void (*BeamStepFn)(void *ctx, int K, const int32_t *parents, const int32_t *tokens,
                           int t, float *logits);

// Sampling (beam_sample).
typedef struct {
    int n;              // hypotheses drawn, 1 <= n <= the workspace's max_beam
    float temperature;  // T > 0
    float epsilon;      // [0, 1): tokens of probability below this are not drawn (0: none cut)
    uint64_t seed;      // the draws are a pure function of (seed, sample, position)
} BeamSampling;

typedef struct BeamWork BeamWork;

// Workspace for beams of up to max_beam hypotheses of up to max_len tokens over a
// vocabulary of vocab_size. CHECKs its arguments (setup).
BeamWork *beam_work_create(int max_beam, int max_len, int vocab_size);
void beam_work_free(BeamWork *w);

// Validates c against the workspace; -1 with err naming the field.
int beam_config_check(const BeamConfig *c, const BeamWork *w, char *err);

// Beam search (greedy search). out (c->max_len) receives the best hypothesis, *out_len its
// length, *score its normalised score. Returns 0, or -1 when no hypothesis can be completed
// (every continuation forbidden); then *out_len is 0. c must pass beam_config_check.
int beam_search(BeamWork *w, const BeamConfig *c, BeamStepFn step, void *ctx, int32_t *out,
                int *out_len, double *score);
int beam_greedy(BeamWork *w, const BeamConfig *c, BeamStepFn step, void *ctx, int32_t *out,
                int *out_len, double *score);

// Validates s against c and the workspace; -1 with err naming the field.
int beam_sampling_check(const BeamSampling *s, const BeamWork *w, char *err);

// Draws s->n samples (c and s must pass the checks). out (s->n, c->max_len) receives sample j
// in row j, lens[j] its length (0: the sample ran into a state where every continuation is
// forbidden), scores[j] its normalised score (-inf when lens[j] == 0). Returns the number of
// complete samples. The rows of a step are masked and drawn on the pool's threads
// (models/par.h); the draws are the same on any number of threads.
int beam_sample(BeamWork *w, const BeamConfig *c, const BeamSampling *s, BeamStepFn step,
                void *ctx, int32_t *out, int *lens, double *scores);

// GNMT length penalty ((5 + len) / 6)^alpha.
double beam_length_penalty(int len, float alpha);

#endif
