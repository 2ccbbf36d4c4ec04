// rouge.h: ROUGE-1, ROUGE-2 and ROUGE-L of hypothesis/reference text pairs (UTF-8), for
// scoring Russian news headline generation.
//
// Text handling (both modes)
//  - UTF-8 is decoded strictly by utf8_decode (io/text/utf8.h: no overlong forms, no surrogates,
//    nothing above U+10FFFF).
//    A byte that does not start a valid sequence is one opaque character: never
//    whitespace, never a dot, never case-folded, compared byte for byte. Invalid input
//    therefore scores like any other text and never fails (this is what Python does when
//    it reads the bytes with errors="surrogateescape").
//  - Whitespace is Python's str.isspace() set: U+0009..000D, U+001C..001F, U+0020, U+0085,
//    U+00A0 (no-break space, frequent in news text), U+1680, U+2000..200A, U+2028, U+2029,
//    U+202F, U+205F, U+3000. Tokens are the maximal runs of other characters, so a lone ","
//    is a token and "москвы," is one token.
//  - Lowercasing (unless keep_case) is locale-independent: the simple Unicode lowercase
//    mapping of U+0000..U+017F (ASCII, Latin-1, Latin Extended-A; U+0130 'İ' -> 'i') and
//    U+0370..U+052F (Greek and Coptic, Cyrillic: А-Я, Ё and the other capitals of
//    U+0400..U+042F, the U+0460.. pairs, Cyrillic Supplement). Other scripts keep their
//    case. rouge_fold_case() is the mapping.
//
// Modes
//  ROUGE_STANDARD  tokens of the whole text (no sentence splitting). ROUGE-N (N = 1, 2) with
//                  clipped counts: overlap = sum over n-grams of min(count in hyp, count in
//                  ref); P = overlap / (hyp n-grams), R = overlap / (ref n-grams). ROUGE-L:
//                  L = LCS length of the two token sequences, P = L / hyp tokens,
//                  R = L / ref tokens. F = 2PR / (P + R); P, R or F is 0 where its
//                  denominator is 0 (so an empty hypothesis or reference scores 0).
//  ROUGE_PAPER     the PyPI package `rouge` 0.3.2 (github.com/pltrdy/rouge), which produced
//                  the published RIA/Lenta scores (docs/design.md):
//                  - the text is cut at every '.'; each non-empty piece is a sentence whose
//                    words are its tokens, and a piece of whitespace only is a sentence whose
//                    one word is the empty string ("a. . b" has the words "a", "", "b");
//                  - ROUGE-N on n-gram SETS of the concatenated words of all sentences
//                    (n-grams run across sentence ends): P = |H & R| / |H|, R = |H & R| / |R|
//                    (0 when the set is empty), F = 2 * ((P * R) / (P + R + 1e-8));
//                  - ROUGE-L summary level: for each reference sentence and each hypothesis
//                    sentence, the LCS is reconstructed by the package's backtrack (see
//                    rouge_lcs_mark) and its words are collected in one set over all pairs;
//                    llcs = size of that set, m / n = number of DISTINCT words in the
//                    reference / hypothesis, R = llcs / m, P = llcs / n, beta = P / (R + 1e-12),
//                    F = (1 + beta^2) * R * P / ((R + beta^2 * P) + 1e-12),
//                    evaluated in this order in double (the build uses -std=c11, so no FMA
//                    contraction), which reproduces the package bit for bit.
//                  The package raises ValueError on a text without any sentence ("" or
//                  "..."); here such an example scores 0 (RougeCounts tells which).
//                  The package itself does not lowercase; the published scores were on
//                  lowercased text, hence the default; keep_case = 1 gives the package as is.
//  Averages over examples are macro averages: the plain mean of the per-example P, R and F
//  (RougeMean), as the package's get_scores(avg=True) computes them.
//
// Memory: a RougeScorer owns work buffers that grow to the largest pair scored and are
// reused; nothing else allocates. For a pair with H and R tokens they hold O(H + R) items,
// plus, in paper mode, O(sqrt(a) * b) int32 for an LCS reconstruction of two sentences of a
// >= b words (checkpointed rows: the full table is never stored). LCS time is O(a * b)
// (twice that for a reconstruction). The standard-mode LCS keeps one row of the shorter side.
#ifndef CONFLUX_ROUGE_H
#define CONFLUX_ROUGE_H

#include <stddef.h>
#include <stdint.h>

#define ROUGE_MAX_TEXT_BYTES ((size_t)1 << 30)  // longest hypothesis or reference accepted

typedef enum { ROUGE_STANDARD = 0, ROUGE_PAPER = 1 } RougeMode;

typedef struct {
    RougeMode mode;
    int keep_case;  // 0: lowercase as described above (default); 1: compare as written
} RougeOptions;

typedef struct {
    double p, r, f;  // precision, recall, F; fractions in [0, 1] (not x100)
} RougePRF;

typedef struct {
    RougePRF r1, r2, rl;
} RougeScores;

// The integers behind one pair's scores, for tests and diagnostics.
typedef struct {
    int64_t overlap, n_hyp, n_ref;  // ROUGE-N: overlapping / hyp / ref n-grams (standard:
                                    // counts, paper: distinct); ROUGE-L: LCS length (paper:
                                    // llcs) / hyp / ref tokens (paper: distinct words)
} RougeCount;

typedef struct {
    RougeCount r1, r2, rl;
    int64_t n_hyp_tokens, n_ref_tokens;  // tokens (paper: words, "" words included)
    int64_t n_hyp_sentences, n_ref_sentences;  // paper: sentences; standard: 1, or 0 if no token
} RougeCounts;

typedef struct RougeScorer RougeScorer;

// Creates a scorer for opt (NULL: standard mode, lowercasing). *out is owned by the
// caller (rouge_scorer_free). Returns 0, or -1 with err (CX_ERRLEN bytes) filled on an
// invalid mode or when out of memory.
int rouge_scorer_new(RougeScorer **out, const RougeOptions *opt, char *err);
// Frees s and its buffers; NULL is a no-op.
void rouge_scorer_free(RougeScorer *s);
// Bytes currently held by s's work buffers (they only grow; for tests and diagnostics).
size_t rouge_scorer_bytes(const RougeScorer *s);

// Scores one pair: hyp_bytes bytes of hyp and ref_bytes bytes of ref (any bytes, NULs
// included; no terminator needed; NULL is allowed when the length is 0). Fills *out, and
// *counts when counts is not NULL. Grows the scorer's buffers when needed. Returns 0, or -1
// with err filled (a text longer than ROUGE_MAX_TEXT_BYTES, or out of memory); *out is then
// untouched. Not thread-safe for one scorer; use one scorer per thread.
int rouge_score(RougeScorer *s, const char *hyp, size_t hyp_bytes, const char *ref,
                size_t ref_bytes, RougeScores *out, RougeCounts *counts, char *err);

// Macro average: zero-initialise ({0}), add each example, read the mean.
typedef struct {
    RougeScores sum;    // running sums of every P, R, F (added in example order)
    int64_t n_examples;
} RougeMean;

void rouge_mean_add(RougeMean *m, const RougeScores *sc);
// The mean of the added examples (sum / n, like the package); all zeros when none.
RougeScores rouge_mean_get(const RougeMean *m);

// Paired bootstrap resampling (Koehn 2004): is system A better than system B on these
// examples, or only on this sample of them? d is (n, k) row-major: for each of n examples,
// the differences A - B of k scores (e.g. the F of, R-L). Resample r (0 <= r <
// n_resamples) draws n examples with replacement, draw j taking example
//   idx = ((cx_rng_u64(seed, r * n + j) >> 32) * n) >> 32   (32 random bits times n)
// and sums d[idx][m] over j in that order, in double. For each score m, out[m] gets:
//   diff   the mean of d[.][m] over the n examples (the observed difference)
//   lo, hi the 95% percentile interval of the resampled means (sum / n): with the R means
//          sorted ascending and c = floor(0.025 * R), lo = mean[c], hi = mean[R - 1 - c]
//   ahead  the fraction of resamples whose sum is > 0 (A ahead of B)
//   tied   the fraction whose sum is exactly 0 (identical systems tie in every resample)
// tests/ref/rouge_ref.py bootstrap re-implements this definition. Time O(n_resamples * n * k);
// memory n_resamples * (k + 1) doubles. Returns 0, or -1 with err filled (n < 1 or n >
// UINT32_MAX, k < 1, n_resamples < 1 or > ROUGE_MAX_RESAMPLES, or out of memory); out is
// then untouched.
#define ROUGE_MAX_RESAMPLES 1000000
#define ROUGE_DEFAULT_RESAMPLES 1000  // the tools' default (ROUGE-1.5.5's -r 1000)
typedef struct {
    double diff, lo, hi, ahead, tied;
} RougeBootstrap;

int rouge_paired_bootstrap(const double *d, int64_t n, int k, int n_resamples, uint64_t seed,
                           RougeBootstrap *out, char *err);

// Minimum Bayes risk choice (Kumar & Byrne 2004; sampled pseudo-references as in Freitag et
// al. 2022): of the n texts (texts[i], bytes[i] bytes each), the one of highest expected
// utility E[i] = the mean, over the references j in [n_fixed, n) other than i, of U(i, j) =
// w[0] F1 + w[1] F2 + w[2] FL, the F of ROUGE-1, -2, -L of text i as the hypothesis against
// text j as the reference (s's mode), plus prior[i] when prior is not NULL (a score of the
// candidate from elsewhere: its agreement with the source, say). Texts [0, n_fixed) are
// candidates only (a beam search's result, say); texts [n_fixed, n) are candidates and
// references (model samples: one that was drawn twice counts twice). The mean over no
// reference is 0. Ties: the lower index. expected (n; may be NULL) receives every E[i],
// prior included. Returns the index chosen, or -1 with err filled (n < 1, n_fixed outside
// [0, n), or rouge_score's error).
int rouge_mbr_pick(RougeScorer *s, const char *const *texts, const size_t *bytes, int n,
                   int n_fixed, const double w[3], const double *prior, double *expected,
                   char *err);

// ---- lower-level pieces (used by rouge_score; public for tests and other callers) ----

// Case folding of one code point as described above; returns cp itself when unmapped.
uint32_t rouge_fold_case(uint32_t cp);
// Whether cp is whitespace (the set above).
int rouge_is_space(uint32_t cp);

// LCS length of the id sequences x (nx) and y (ny), in O(nx * ny) time and one row of
// min(nx, ny) + 1 int32 from the scorer's buffers. Returns the length, or -1 with err filled
// (out of memory, or a negative length).
int64_t rouge_lcs_length(RougeScorer *s, const int32_t *x, int nx, const int32_t *y, int ny,
                         char *err);
// The LCS of x (a reference sentence) and y (a hypothesis sentence) as rouge 0.3.2's
// _recon_lcs picks it: from (nx, ny) backwards, equal elements are taken diagonally;
// otherwise step back in x when T[i-1][j] > T[i][j-1], else in y (T = LCS table).
// Sets mark[v] = 1 for every value v on that LCS (mark must have max(x, y) + 1 entries;
// ids must be >= 0; marks already set stay set). Returns the LCS length, or -1 with err
// (out of memory, negative lengths). Memory: O(sqrt(max) * min) int32 of the scorer.
int64_t rouge_lcs_mark(RougeScorer *s, const int32_t *x, int nx, const int32_t *y, int ny,
                       uint8_t *mark, char *err);

// "standard" / "paper" for a mode; NULL for anything else.
const char *rouge_mode_name(RougeMode mode);
// Parses "standard" or "paper" into *mode: 0, or -1 (unchanged) for anything else.
int rouge_mode_parse(const char *name, RougeMode *mode);

#endif
