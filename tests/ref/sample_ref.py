#!/usr/bin/python3
"""sample_ref.py: beam.h's sampling rule written again in Python, from beam.h's text (models/beam.c
was not consulted); writes tests/ref/sample_golden.h for tests/unit/test_sample.c.

Run from the repository root with Debian's interpreter (numpy):

    /usr/bin/python3 tests/ref/sample_ref.py [--out X.h]

CI does not run this: the header is committed.

The scorer is a toy language model: the logits of step t are row (t, fed token) of a random
float32 table (MAX_LEN, V, V), the fed token being BOS at t = 0 and the hypothesis' last token
after. The rule (beam.h):
  * lp = log_softmax(logits) in float64; forbidden tokens get -inf without renormalising the
    rest: the banned ones, EOS while fewer than min_len tokens were generated, with trigram
    blocking a token that repeats an earlier trigram of the hypothesis;
  * q[w] = exp((lp[w] - max lp) / T) over the allowed tokens, Z their sum; tokens with
    q[w] / Z < epsilon are dropped; if none is left, the most likely token (lower id on ties);
  * sample j's token t uses u = cx_rng_uniform(seed, j * max_len + t): the first kept w in id
    order whose cumulative kept q exceeds u * (kept total), the last kept one if none does;
  * a sample ends with EOS or at max_len tokens; if every token is forbidden it ends
    incomplete, length 0; score = (sum of the untempered lp of its tokens) / ((5 + len) / 6)^alpha.
Before writing, the generator checks margins: no draw has u * kept within 1e-9 (relative) of a
cumulative boundary and no q within 1e-9 of the epsilon cut, so the C code's rounding cannot
change a draw; and that the cases exercise the rule's branches (an epsilon fallback to the most
likely token, samples that cannot complete next to ones that do, EOS refused before min_len).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cx_rng import cx_rng_uniform  # noqa: E402

V = 10
BOS, EOS = 0, 1
MAX_LEN = 8
TABLE_SEED = 20261205
MARGIN = 1e-9

# name, n, temperature, epsilon, min_len, max_len, alpha, trigrams, banned, seed
CASES = [
    ("plain", 8, 1.0, 0.0, 0, 6, 0.9, 0, [BOS], 11),
    ("cooler, epsilon 0.05, min_len 2", 8, 0.7, 0.05, 2, 6, 0.9, 0, [BOS], 12),
    ("hotter, epsilon 0.02, trigrams, banned 3", 8, 1.5, 0.02, 0, 6, 1.5, 1, [BOS, 3], 13),
    ("epsilon 0.3: the most likely token when none reaches it", 8, 0.8, 0.3, 0, 6, 0.0, 0, [BOS], 14),
    ("three tokens, min_len 7, trigrams: some samples cannot complete", 12, 1.0, 0.0, 7, 8, 1.0, 1,
     [w for w in range(V) if w not in (EOS, 5, 6)], 25),
    ("one token, min_len 4, trigrams: none can complete", 4, 1.0, 0.0, 4, 6, 1.0, 1,
     [w for w in range(V) if w not in (EOS, 5)], 16),
    ("max_len 3", 6, 1.0, 0.1, 1, 3, 0.5, 0, [BOS], 17),
]


def table():
    rng = np.random.default_rng(TABLE_SEED)
    return (rng.standard_normal((MAX_LEN, V, V)) * 2.0).astype(np.float32)


def masked_lp(logits, hist, t, min_len, trigrams, banned):
    x = logits.astype(np.float64)
    mx = x.max()
    lp = x - (mx + np.log(np.exp(x - mx).sum()))
    for w in banned:
        lp[w] = -np.inf
    if t < min_len:
        lp[EOS] = -np.inf
    if trigrams and t >= 2:
        for i in range(t - 2):
            if hist[i] == hist[t - 2] and hist[i + 1] == hist[t - 1]:
                lp[hist[i + 2]] = -np.inf
    return lp


def draw(lp, T, eps, u, stats):
    allowed = [w for w in range(V) if lp[w] != -np.inf]
    if not allowed:
        return None, 1.0
    best = max(allowed, key=lambda w: (lp[w], -w))
    q = {w: float(np.exp((lp[w] - lp[best]) / T)) for w in allowed}
    z = sum(q.values())
    margin = min(abs(q[w] / z - eps) for w in allowed) if eps > 0 else 1.0
    kept = [w for w in allowed if q[w] / z >= eps]
    if not kept:
        stats["fallback"] += 1
        return best, margin
    tot = sum(q[w] for w in kept)
    target = u * tot
    cum = 0.0
    choice = None
    for w in kept:
        cum += q[w]
        margin = min(margin, abs(cum - target) / tot)
        if choice is None and cum > target:
            choice = w
    return (kept[-1] if choice is None else choice), margin


def run_case(tab, case, stats):
    name, n, T, eps, min_len, L, alpha, tri, banned, seed = case
    seqs, lens, scores = [], [], []
    margin = 1.0
    for j in range(n):
        hist, raw, fed = [], 0.0, BOS
        done = False
        for t in range(L):
            lp = masked_lp(tab[t, fed], hist, t, min_len, tri, banned)
            if t < min_len and EOS not in banned and lp[EOS] == -np.inf:
                stats["eos_refused"] += 1
            u = float(cx_rng_uniform(seed, j * L + t))
            w, m = draw(lp, T, eps, u, stats)
            margin = min(margin, m)
            if w is None:
                break
            hist.append(w)
            raw += lp[w]
            fed = w
            if w == EOS or t + 1 == L:
                done = True
                break
        if done:
            a = float(np.float32(alpha))
            lpen = 1.0 if a == 0 else ((5.0 + len(hist)) / 6.0) ** a
            seqs.append(hist)
            lens.append(len(hist))
            scores.append(raw / lpen)
        else:
            stats["incomplete"] += 1
            seqs.append([])
            lens.append(0)
            scores.append(-np.inf)
    return seqs, lens, scores, margin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample_golden.h"))
    a = ap.parse_args()
    tab = table()
    out = []
    stats = {"fallback": 0, "incomplete": 0, "eos_refused": 0}
    results = []
    complete_and_not = False
    for case in CASES:
        seqs, lens, scores, margin = run_case(tab, case, stats)
        assert margin > MARGIN, f"case '{case[0]}': a draw within {margin:g} of a boundary"
        if 0 in lens and any(lens):
            complete_and_not = True
        results.append((case, seqs, lens, scores, margin))
    assert stats["fallback"] > 0, "no epsilon fallback"
    assert complete_and_not, "no case with complete and incomplete samples"
    assert stats["eos_refused"] > 0
    assert all(l == 0 for l in results[5][2]), "the 'none can complete' case completed"
    out.append("// sample_golden.h: generated by tests/ref/sample_ref.py, do not edit.")
    out.append("// beam.h's sampling rule in Python over a toy table language model.")
    out.append("#ifndef CONFLUX_SAMPLE_GOLDEN_H\n#define CONFLUX_SAMPLE_GOLDEN_H\n")
    out.append("#include <math.h>\n#include <stdint.h>\n")
    out.append(f"#define SG_V {V}\n#define SG_BOS {BOS}\n#define SG_EOS {EOS}\n#define SG_MAX_LEN {MAX_LEN}")
    out.append(f"#define SG_N_CASES {len(CASES)}\n#define SG_MAX_N 12\n#define SG_MAX_BANNED {V}\n")
    out.append("// logits of step t after fed token a: sg_table[t][a][w]")
    out.append("static const float sg_table[SG_MAX_LEN][SG_V][SG_V] = {")
    for t in range(MAX_LEN):
        out.append("    {")
        for r in range(V):
            out.append("        {" + ", ".join(f"{float(x):.9e}f" for x in tab[t, r]) + "},")
        out.append("    },")
    out.append("};\n")
    out.append("typedef struct {\n    const char *name;\n    int n;\n    float temperature, epsilon;"
               "\n    int min_len, max_len;\n    float alpha;\n    int block_trigrams;\n"
               "    int n_banned;\n    int32_t banned[SG_MAX_BANNED];\n    uint64_t seed;\n"
               "    int n_complete;\n    int len[SG_MAX_N];\n    int32_t seq[SG_MAX_N][SG_MAX_LEN];\n"
               "    double score[SG_MAX_N];\n} SgCase;\n")
    out.append("static const SgCase sg_cases[SG_N_CASES] = {")
    for case, seqs, lens, scores, margin in results:
        name, n, T, eps, min_len, L, alpha, tri, banned, seed = case
        out.append("    {")
        out.append(f"        .name = \"{name}\", .n = {n}, .temperature = {T!r}f, .epsilon = {eps!r}f,")
        out.append(f"        .min_len = {min_len}, .max_len = {L}, .alpha = {alpha!r}f, .block_trigrams = {tri},")
        out.append(f"        .n_banned = {len(banned)}, .banned = {{{', '.join(map(str, banned))}}}, .seed = {seed},")
        out.append(f"        .n_complete = {sum(1 for l in lens if l)},")
        out.append(f"        .len = {{{', '.join(map(str, lens))}}},")
        out.append("        .seq = {" + ", ".join("{" + ", ".join(map(str, s)) + "}" for s in seqs) + "},")
        sc = ", ".join("-INFINITY" if s == -np.inf else f"{s:.17g}" for s in scores)
        out.append(f"        .score = {{{sc}}},")
        out.append("    },")
    out.append("};\n\n#endif")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {a.out}: {len(CASES)} cases, {stats}")


if __name__ == "__main__":
    main()
