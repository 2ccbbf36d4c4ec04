#!/usr/bin/python3
"""beam_ref.py: an independent beam search written from models/beam.h, run on the PyTorch
encoder-decoder; writes tests/ref/beam_golden.h for test_encdec's pruned-beam test.

Run (from the repository root, with Debian's interpreter, which has torch and h5py):

    /usr/bin/python3 tests/ref/beam_ref.py [--out X.h]

CI does NOT need torch: the header is committed.

The scorer is encdec_ref.EncDecRef in float64 with the float32 weights of
tests/ref/encdec_tiny.h5 (the model test_encdec's golden test already checks against
PyTorch); the next-token log-probabilities of a hypothesis come from a teacher-forced full
forward of BOS + its tokens (no cache), log-softmax in float64. The search follows beam.h's
conventions, and nothing else (models/beam.c was not consulted):

  * step t feeds BOS or a hypothesis' last token and scores its token t+1; lengths count
    generated tokens (EOS included);
  * forbidden continuations get -inf and are never selected, the others are NOT
    renormalised: banned tokens; EOS while fewer than min_len tokens were generated; with
    trigram blocking, a token whose trigram (last two tokens + it) occurred earlier;
  * a hypothesis ends with EOS or at max_len tokens; score S / lp(len), lp(len) =
    ((5 + len) / 6)^alpha with alpha at its float32 value (1 when alpha == 0);
  * each step keeps the K best continuations of all live hypotheses by summed
    log-probability S (ties: lower hypothesis index, then lower token id); the ended ones
    move to the finished list, the others form the next live beam (in that order), so a
    step that ends j hypotheses leaves K - j live, and the next step again keeps up to K;
  * stop when nothing is live, or when the best finished score is >= every live
    hypothesis' bound S_live / lp(max_len); the answer is the best finished hypothesis.

Cases use a "tiny vocabulary": all tokens but EOS and 1-4 content tokens are banned, so
the surviving tokens keep their log-probabilities under the 300-way softmax and exhaustive
enumeration is cheap; one case bans only the special tokens and searches all 300; one can
complete nothing. K = 2 or 3 is below the number of allowed continuations at nearly every
step, so the beam prunes. The header holds, per case, the answer and its score, the number
of hypotheses advanced at each step (which pins down the live-beam bookkeeping and the stop
rule), and the exhaustive optimum. The generator asserts, before writing anything:
  * margins: no decision is within MARGIN of a tie (the K-th kept continuation against the
    first dropped one at every step; the best finished score against the largest live bound
    at every stop test; the answer against the runner-up finished hypothesis), so float32
    logits in the C code (scores within ~1e-7 relative of these) cannot flip one;
  * pruning: in at least one case the K-beam answer is not the exhaustive optimum and scores
    at least MARGIN below it (each such case is printed);
  * the cases tell apart the plausible ways of getting beam.h wrong (variants()): each changes
    the answer, or the steps, of at least one case.
"""
import argparse
import collections
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encdec_ref import BOS, EOS, EncDecConfig, EncDecRef  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIAL = (0, 1, 2, 4)    # PAD UNK BOS MASK: never generated
MARGIN = 1e-3             # smallest gap allowed at a decision (see above)


# ---- the scorer ------------------------------------------------------------------------------
def load_model(path):
    """EncDecRef (float64) with the float32 weights of an encdec checkpoint, checked against
    the file's own teacher-forced logits."""
    import h5py
    with h5py.File(path, "r") as h:
        d = [int(x) for x in h["golden/dims"][()]]
        eps = float(h["golden/label_smoothing"][0])
        c = EncDecConfig(vocab_size=d[0], embedding_size=d[1], hidden_size=d[2], num_heads=d[3],
                         intermediate_size=d[4], num_layers=d[5], max_position=d[6],
                         dec_layers=d[7], dec_heads=d[8], dec_intermediate=d[9],
                         dec_max_position=d[10], label_smoothing=eps)
        m = EncDecRef(c).double()
        names = {n for n, _ in m._pairs()}
        m.load_hf_state_dict({n: torch.from_numpy(h["params/" + n][()]).double() for n in names})
        m.eval()
        src = torch.from_numpy(h["golden/src"][()]).long()
        mask = torch.from_numpy(h["golden/src_mask"][()]).long()
        tgt = torch.from_numpy(h["golden/tgt"][()]).long()
        ref = torch.from_numpy(h["golden/logits"][()]).double()
    with torch.no_grad():
        _, _, logits = m(src, mask, tgt)
    err = (logits - ref).abs().max().item()
    assert err < 1e-5, f"the model does not reproduce {path}'s logits ({err})"
    return m


class Scorer:
    """Next-token log-probabilities (float64, V) of hypotheses of one source."""

    def __init__(self, model, src):
        self.m = model
        self.src = torch.tensor([src], dtype=torch.long)
        self.mask = torch.ones_like(self.src)
        with torch.no_grad():
            self.enc = model.encode(self.src, self.mask)
        self.cache = {}

    def __call__(self, toks):
        toks = tuple(toks)
        if toks not in self.cache:
            dec_in = torch.tensor([[BOS, *toks]], dtype=torch.long)
            with torch.no_grad():
                logits = self.m.head(self.m.decode(self.enc, self.mask, dec_in))[0, -1]
                self.cache[toks] = torch.log_softmax(logits, -1).numpy()
        return self.cache[toks]


# ---- beam.h ----------------------------------------------------------------------------------
def f32(x):
    return float(np.float32(x))


def length_penalty(n, alpha):
    a = f32(alpha)
    return 1.0 if a == 0.0 else ((5.0 + n) / 6.0) ** a


def allowed(cfg, toks, v):
    if v in cfg["banned"]:
        return False
    if v == EOS and len(toks) < cfg["min_len"]:
        return False
    n = cfg.get("ngram", 3)         # 3 (beam.h); other sizes only in variants()
    if cfg["block"] and len(toks) >= n - 1:
        gram = tuple(toks[len(toks) - n + 1:]) + (v,)
        if any(tuple(toks[i:i + n]) == gram for i in range(len(toks) - n + 1)):
            return False
    return True


def step_logprobs(scorer, cfg, toks, renormalise=False):
    """[(token, log-prob)] of the allowed continuations of toks."""
    lp = scorer(toks)
    ok = [v for v in range(len(lp)) if allowed(cfg, toks, v)]
    z = np.logaddexp.reduce(lp[ok]) if renormalise and ok else 0.0
    return [(v, float(lp[v] - z)) for v in ok]


Result = collections.namedtuple("Result", "best widths margin")


def beam_search(scorer, cfg, K=None, variant=None):
    """beam.h's beam search. Returns Result(best, widths, margin): best = (score, tokens, S),
    or None when nothing can be completed; widths = the number of live hypotheses advanced
    at each step (what the step function is called with); margin = the smallest gap at a
    decision: K-th kept minus first dropped continuation, best finished minus the largest
    live bound at each stop test, best minus runner-up finished.
    variant (only to show that the cases tell wrong implementations apart):
      'no_stop_lp' bound S_live; 'stop_any' stop when the best finished beats ANY live
      bound; 'no_stop' no early stop; 'stop_first' stop at the first finished hypothesis;
      'renorm' renormalised log-probabilities; 'shrink' the width drops for good by the
      number that ended."""
    K = cfg["K"] if K is None else K
    width = K
    max_len = cfg["max_len"]
    live = [((), 0.0)]                             # (tokens, S), in selection order
    finished = []                                  # (score, tokens, S)
    widths, gaps = [], []
    while live:
        widths.append(len(live))
        cands = []                                 # (S, hypothesis index, token)
        for h, (toks, S) in enumerate(live):
            for v, lp in step_logprobs(scorer, cfg, toks, variant == "renorm"):
                cands.append((S + lp, h, v))
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        if len(cands) > width:
            gaps.append(cands[width - 1][0] - cands[width][0])
        nxt = []
        for S, h, v in cands[:width]:
            toks = live[h][0] + (v,)
            if v == EOS or len(toks) == max_len:
                finished.append((S / length_penalty(len(toks), cfg["alpha"]), toks, S))
            else:
                nxt.append((toks, S))
        if variant == "shrink":
            width = len(nxt)
        live = nxt
        if live and finished and variant != "no_stop":
            best = max(f[0] for f in finished)
            lpmax = 1.0 if variant == "no_stop_lp" else length_penalty(max_len, cfg["alpha"])
            bounds = [S / lpmax for _, S in live]
            gaps.append(abs(best - max(bounds)))
            if variant == "stop_first" or best >= (min if variant == "stop_any" else max)(bounds):
                break
    if not finished:
        return Result(None, widths, min(gaps, default=math.inf))
    finished.sort(key=lambda f: -f[0])
    if len(finished) > 1:
        gaps.append(finished[0][0] - finished[1][0])
    return Result(finished[0], widths, min(gaps, default=math.inf))


def exhaustive(scorer, cfg):
    """Every hypothesis beam.h allows, best first: [(score, tokens, S)]."""
    out = []

    def rec(toks, S):
        for v, lp in step_logprobs(scorer, cfg, toks):
            t2 = toks + (v,)
            if v == EOS or len(t2) == cfg["max_len"]:
                out.append(((S + lp) / length_penalty(len(t2), cfg["alpha"]), t2, S + lp))
            else:
                rec(t2, S + lp)
    rec((), 0.0)
    out.sort(key=lambda f: -f[0])
    return out


# ---- the cases -------------------------------------------------------------------------------
# (K, alpha, min_len, max_len, block_trigrams, source, allowed): allowed = the content tokens
# that, with EOS, are all that is not banned; None = only PAD UNK BOS MASK are banned (all
# 300 tokens searched). Chosen from seeded random sources and token sets for margins well
# above MARGIN, for pruning, and for telling the variants apart (see main()).
CASES = [
    (2, 2.0, 1, 7, 1, [2, 267, 177, 212, 3], [153, 212, 270]),
    (3, 2.0, 1, 7, 1, [2, 143, 177, 49, 164, 175, 3], [50, 82, 169]),
    (2, 0.0, 1, 7, 1, [2, 47, 210, 219, 245, 249, 201, 282, 20, 47, 103, 3], [74, 91, 138, 141]),
    (3, 2.0, 2, 7, 0, [2, 152, 20, 40, 293, 60, 210, 60, 153, 202, 39, 3], [88, 158, 224]),
    (2, 0.6, 3, 6, 0, [2, 291, 243, 236, 265, 102, 99, 267, 248, 100, 3], [100, 113, 128]),
    (3, 0.6, 1, 7, 1, [2, 291, 243, 236, 265, 102, 99, 267, 248, 100, 3], [100, 113, 128]),
    (3, 1.0, 2, 7, 0, [2, 128, 213, 88, 12, 182, 256, 264, 197, 131, 130, 3], [200, 256, 273]),
    (2, 1.0, 2, 6, 1, [2, 143, 177, 49, 164, 175, 3], None),
    # one content token, EOS forbidden before 5 tokens, trigram blocking: the third token
    # repeats the trigram (c, c, c), so nothing can be completed (beam_search returns -1)
    (2, 0.0, 5, 6, 1, [2, 267, 177, 212, 3], [212]),
]

def variants(sc, cfg):
    """Wrong readings of beam.h, run on a case: {name: Result, or None where it does not
    apply}. Each must change the answer or the steps of at least one case."""
    def run(**kw):
        return beam_search(sc, dict(cfg, **kw))
    K, min_len, block = cfg["K"], cfg["min_len"], cfg["block"]
    return {
        "keep K+1": beam_search(sc, cfg, K=K + 1),
        "keep K-1": beam_search(sc, cfg, K=K - 1),
        "stop bound S_live (no lp(max_len))": beam_search(sc, cfg, variant="no_stop_lp"),
        "stop at the first finished": beam_search(sc, cfg, variant="stop_first"),
        "stop when ANY live bound is beaten": beam_search(sc, cfg, variant="stop_any"),
        "no early stop": beam_search(sc, cfg, variant="no_stop"),
        "renormalised log-probabilities": beam_search(sc, cfg, variant="renorm"),
        "width shrinks for good": beam_search(sc, cfg, variant="shrink"),
        "alpha ignored": run(alpha=0.0) if cfg["alpha"] else None,
        "min_len - 1": run(min_len=min_len - 1) if min_len > 0 else None,
        "min_len + 1": run(min_len=min_len + 1) if min_len + 1 < cfg["max_len"] else None,
        "no trigram blocking": run(block=0) if block else None,
        "bigram blocking": run(ngram=2) if block else None,
        "4-gram blocking": run(ngram=4) if block else None,
    }


def make_cfg(case, V):
    K, alpha, min_len, max_len, block, _, allowed_toks = case
    banned = set(SPECIAL) if allowed_toks is None else set(range(V)) - set(allowed_toks) - {EOS}
    return dict(K=K, alpha=alpha, min_len=min_len, max_len=max_len, block=block, banned=banned)


def c_ints(xs, n):
    return "{" + ", ".join(str(int(x)) for x in list(xs) + [0] * (n - len(xs))) + "}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(HERE, "encdec_tiny.h5"))
    ap.add_argument("--out", default=os.path.join(HERE, "beam_golden.h"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    V = model.config.vocab_size
    rows, caught, n_pruned = [], {}, 0
    for i, case in enumerate(CASES):
        K, alpha, min_len, max_len, block, src, allowed_toks = case
        assert max_len <= model.config.dec_max_position and len(src) <= model.config.max_position
        cfg = make_cfg(case, V)
        sc = Scorer(model, src)
        res = beam_search(sc, cfg)
        best, margin = res.best, res.margin
        assert margin >= MARGIN, f"case {i}: a decision is within {margin:.1e} of a tie"
        ex, n_hyp = None, -1
        if allowed_toks is not None:
            hyps = exhaustive(sc, cfg)
            n_hyp = len(hyps)
            ex = hyps[0] if hyps else None
            assert (ex is None) == (best is None)
            if ex is not None and ex[1] != best[1]:
                # pruning lost the optimum, by more than rounding could explain
                assert ex[0] - best[0] >= MARGIN, (i, ex, best)
                n_pruned += 1
        for name, r in variants(sc, cfg).items():
            if r is None:
                continue
            other = r.best
            if (other is None) != (best is None) or (other is not None and other[1] != best[1]):
                caught.setdefault(name, []).append(i)
            elif r.widths != res.widths:
                caught.setdefault(name, []).append(f"{i} (steps only)")
        rows.append((case, res, ex, n_hyp))
        what = "nothing can be completed" if best is None else \
            f"{list(best[1])} score {best[0]:.6f}"
        exs = "" if allowed_toks is None else \
            ("" if ex is None else f"; exhaustive ({n_hyp} hypotheses) {list(ex[1])} {ex[0]:.6f}"
             + (" <- PRUNED AWAY" if ex[1] != best[1] else ""))
        print(f"case {i}: K={K} alpha={alpha} min_len={min_len} max_len={max_len} block={block} "
              f"{'all tokens' if allowed_toks is None else 'tokens EOS+' + str(allowed_toks)}: "
              f"{what} (margin {margin:.1e}, widths {res.widths}){exs}", file=sys.stderr)
    assert n_pruned >= 1, "no case where the K-beam answer differs from the exhaustive optimum"
    for name in variants(Scorer(model, CASES[0][5]), make_cfg(CASES[0], V)):
        print(f"  variant {name!r} changes case(s) {caught.get(name, [])}", file=sys.stderr)
        assert caught.get(name), f"no case tells {name!r} apart from beam.h"

    max_src = max(len(c[5]) for c in CASES)
    max_len = max(c[3] for c in CASES)
    max_allowed = max(len(c[6] or []) for c in CASES)
    out = []
    out.append("// beam_golden.h: generated by tests/ref/beam_ref.py, do not edit.")
    out.append("// beam.h's search in Python over tests/ref/encdec_tiny.h5's model")
    out.append(f"// (float64, torch {torch.__version__}).")
    out.append("#ifndef CONFLUX_BEAM_GOLDEN_H\n#define CONFLUX_BEAM_GOLDEN_H\n")
    out.append("#include <math.h>\n#include <stdint.h>\n")
    out.append(f"#define GOLDEN_BEAM_N_CASES {len(CASES)}")
    out.append(f"#define GOLDEN_BEAM_MAX_SRC {max_src}")
    out.append(f"#define GOLDEN_BEAM_MAX_LEN {max_len}")
    out.append(f"#define GOLDEN_BEAM_MAX_K {max(c[0] for c in CASES)}")
    out.append(f"#define GOLDEN_BEAM_MAX_ALLOWED {max_allowed}\n")
    out.append("typedef struct {\n"
               "    int beam_size, min_len, max_len, block_trigrams;\n"
               "    float alpha;\n"
               "    int n_src;\n"
               "    int32_t src[GOLDEN_BEAM_MAX_SRC];\n"
               "    // 0: only PAD UNK BOS MASK are banned; else every token but EOS and these\n"
               "    int n_allowed;\n"
               "    int32_t allowed[GOLDEN_BEAM_MAX_ALLOWED];\n"
               "    int result;  // beam_search returns 0, or -1: nothing can be completed\n"
               "    int len;\n"
               "    int32_t seq[GOLDEN_BEAM_MAX_LEN];\n"
               "    int n_steps;  // step function calls, and K passed to each\n"
               "    int widths[GOLDEN_BEAM_MAX_LEN];\n"
               "    double score;\n"
               "    double margin;  // smallest gap at a decision (see beam_ref.py)\n"
               "    // exhaustive optimum over n_hypotheses (-1: not enumerated, all 300 tokens)\n"
               "    int n_hypotheses, ex_len;\n"
               "    int32_t ex_seq[GOLDEN_BEAM_MAX_LEN];\n"
               "    double ex_score;\n"
               "} GoldenBeamCase;\n")
    out.append(f"static const GoldenBeamCase golden_beam_cases[{len(CASES)}] = {{")
    for i, (case, res, ex, n_hyp) in enumerate(rows):
        K, alpha, min_len, max_len_c, block, src, allowed_toks = case
        best, margin = res.best, res.margin
        seq = [] if best is None else best[1]
        exseq = [] if ex is None else ex[1]
        out.append(f"    // case {i}" + (": pruned away from the exhaustive optimum"
                                         if ex is not None and ex[1] != best[1] else ""))
        out.append(f"    {{.beam_size = {K}, .min_len = {min_len}, .max_len = {max_len_c}, "
                   f".block_trigrams = {block}, .alpha = {alpha!r}f,")
        out.append(f"     .n_src = {len(src)}, .src = {c_ints(src, max_src)},")
        out.append(f"     .n_allowed = {len(allowed_toks or [])}, "
                   f".allowed = {c_ints(allowed_toks or [], max_allowed)},")
        out.append(f"     .result = {-1 if best is None else 0}, .len = {len(seq)}, "
                   f".seq = {c_ints(seq, max_len)},")
        out.append(f"     .n_steps = {len(res.widths)}, .widths = {c_ints(res.widths, max_len)},")
        out.append(f"     .score = {0.0 if best is None else best[0]!r}, .margin = "
                   f"{'INFINITY' if math.isinf(margin) else format(margin, '.3g')},")
        out.append(f"     .n_hypotheses = {n_hyp}, .ex_len = {len(exseq)}, "
                   f".ex_seq = {c_ints(exseq, max_len)},")
        out.append(f"     .ex_score = {0.0 if ex is None else ex[0]!r}}},")
    out.append("};\n\n#endif")
    text = "\n".join(out) + "\n"
    with open(args.out + ".tmp", "w") as f:
        f.write(text)
    os.replace(args.out + ".tmp", args.out)
    print(f"beam_ref: wrote {args.out} ({len(CASES)} cases, {n_pruned} pruned away from the "
          f"exhaustive optimum)", file=sys.stderr)


if __name__ == "__main__":
    main()
