#!/usr/bin/python3
# rouge_ref.py: an independent Python reference for io/eval/rouge.c (ROUGE-1/2/L), used by
# tests/test_rouge_ref.sh. Standard library only (Python 3.11), but for the bootstrap
# command, which draws with cx_rng.py (numpy, Debian's python3-numpy).
#
# Two modes, as in io/eval/rouge.h:
#   standard  lowercased whitespace tokens; ROUGE-N with clipped n-gram counts; ROUGE-L from
#             the LCS of the two token sequences; F = 2PR/(P+R) (0 when P+R = 0).
#   paper     the semantics of the PyPI package `rouge` 0.3.2 (github.com/pltrdy/rouge),
#             re-implemented here from its source (rouge/rouge.py, rouge/rouge_score.py):
#             - a text is split on "." into pieces; every piece of length > 0 becomes a
#               sentence " ".join(piece.split()), so a whitespace-only piece becomes the
#               empty sentence, whose only word is "" (str.split(" ") of "");
#             - ROUGE-N: the n-gram SETS of the flattened word list of all sentences
#               (n-grams run across sentence boundaries); P = |H&R|/|H| (0 if |H| = 0),
#               R = |H&R|/|R| (0 if |R| = 0), F = 2*((P*R)/(P+R+1e-8));
#             - ROUGE-L (summary level): for every reference sentence r and hypothesis
#               sentence h, the set of words of the LCS of (r, h) reconstructed by the
#               package's backtrack (from the end: equal words go diagonal, else go up in r
#               when T[i-1][j] > T[i][j-1], else left in h); llcs = size of the union of
#               those sets; m / n = number of DISTINCT words of reference / hypothesis;
#               R = llcs/m, P = llcs/n, beta = P/(R+1e-12),
#               F = (1+beta**2)*R*P / ((R + beta**2*P) + 1e-12).
#             The package raises ValueError for a text without any sentence ("" or "...");
#             here (and in io/eval/rouge.c) such an example scores 0.
# Both modes lowercase first (the published numbers were on lowercased text) unless
# --keep-case: per character, str.lower() for U+0000..U+017F and U+0370..U+052F when it
# gives one character, U+0130 -> "i"; everything else is kept (see fold()).
# Files are read as bytes, split on b"\n" (a "\r" before it is dropped, a last line without
# "\n" counts) and decoded as UTF-8 with surrogateescape, so an invalid byte is an opaque
# non-space character, as in io/eval/rouge.c.
#
# usage:
#   rouge_ref.py score --mode standard|paper --ref REFS --hyp HYPS [--keep-case]
#       prints "line,count,r1_p,r1_r,r1_f,r2_p,r2_r,r2_f,rl_p,rl_r,rl_f" rows (x100, %.6f),
#       then a "mean,N,..." row: the format of `conflux-rouge --format csv --per-example`.
#   rouge_ref.py gen --seed S --n N [--max-words W] [--no-dots] --ref REFS --hyp HYPS
#       writes N random pairs (at most W words before the hypothesis mixing, default 14;
#       --no-dots: no "." at all, so each text is one long sentence) (Cyrillic/Latin/Greek words in random case, punctuation,
#       dots, NBSP/tabs, repeats, empty and whitespace-only lines, invalid UTF-8 bytes).
#   rouge_ref.py bootstrap --mode standard|paper --ref REFS --hyp HYPS --baseline BASE
#                [--resamples R] [--seed S] [--keep-case]
#       the paired bootstrap of io/eval/rouge.h (rouge_paired_bootstrap) on the F
#       differences HYPS - BASE, written from its definition: resample r draws example
#       ((cx_rng_u64(S, r * n + j) >> 32) * n) >> 32 for j = 0..n-1 (cx_rng.py, numpy) and sums the
#       differences in that order; prints "metric diff lo hi ahead tied" per metric
#       (diff, lo, hi x100 with 6 decimals, ahead and tied as fractions with 6).
#   rouge_ref.py fold-table
#       prints "XXXX YYYY" (hex) for every code point that fold() changes.
#   rouge_ref.py space-table
#       prints "XXXX" (hex) for every code point that str.isspace() accepts.
import argparse
import random
import sys


# ---------------------------------------------------------------- text handling

def fold_char(c):
    cp = ord(c)
    if cp == 0x130:
        return "i"
    if cp <= 0x17F or 0x370 <= cp <= 0x52F:
        lo = c.lower()
        if len(lo) == 1:
            return lo
    return c


def fold(text):
    # per character: str.lower() of a whole string applies the final-sigma rule, which
    # io/eval/rouge.c does not
    return "".join(fold_char(c) for c in text)


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for ln in lines:
        if ln.endswith(b"\r"):
            ln = ln[:-1]
        out.append(ln.decode("utf-8", errors="surrogateescape"))
    return out


# ---------------------------------------------------------------- standard mode

def prf_standard(overlap, n_hyp, n_ref):
    p = overlap / n_hyp if n_hyp > 0 else 0.0
    r = overlap / n_ref if n_ref > 0 else 0.0
    f = 2.0 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def ngram_counts(words, n):
    counts = {}
    for i in range(len(words) - n + 1):
        g = tuple(words[i:i + n])
        counts[g] = counts.get(g, 0) + 1
    return counts


def lcs_len(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[len(b)]


def score_standard(hyp, ref):
    h, r = hyp.split(), ref.split()
    out = []
    for n in (1, 2):
        ch, cr = ngram_counts(h, n), ngram_counts(r, n)
        overlap = sum(min(c, cr.get(g, 0)) for g, c in ch.items())
        out.append(prf_standard(overlap, sum(ch.values()), sum(cr.values())))
    out.append(prf_standard(lcs_len(h, r), len(h), len(r)))
    return out


# ---------------------------------------------------------------- paper mode (rouge 0.3.2)

def sentences_paper(text):
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def words_paper(sents):
    words = []
    for s in sents:
        words.extend(s.split(" "))
    return words


def rouge_n_paper(hyp_sents, ref_sents, n):
    if not hyp_sents or not ref_sents:
        return 0.0, 0.0, 0.0   # the package raises ValueError here
    hw, rw = words_paper(hyp_sents), words_paper(ref_sents)
    hs = {tuple(hw[i:i + n]) for i in range(len(hw) - n + 1)}
    rs = {tuple(rw[i:i + n]) for i in range(len(rw) - n + 1)}
    overlap = len(hs & rs)
    p = overlap / len(hs) if len(hs) else 0.0
    r = overlap / len(rs) if len(rs) else 0.0
    f = 2.0 * ((p * r) / (p + r + 1e-8))
    return p, r, f


def lcs_words(x, y):
    """the words of the LCS of x (reference) and y (hypothesis) picked by the package's
    backtrack; iterative, so long sentences do not hit the recursion limit"""
    n, m = len(x), len(y)
    t = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if x[i - 1] == y[j - 1]:
                t[i][j] = t[i - 1][j - 1] + 1
            else:
                t[i][j] = max(t[i - 1][j], t[i][j - 1])
    words = []
    i, j = n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.append(x[i - 1])
            i, j = i - 1, j - 1
        elif t[i - 1][j] > t[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l_paper(hyp_sents, ref_sents):
    if not hyp_sents or not ref_sents:
        return 0.0, 0.0, 0.0   # the package raises ValueError here
    m = len(set(words_paper(ref_sents)))
    n = len(set(words_paper(hyp_sents)))
    union = set()
    for rs in ref_sents:
        for hs in hyp_sents:
            union |= set(lcs_words(rs.split(" "), hs.split(" ")))
    llcs = len(union)
    r_lcs = llcs / m
    p_lcs = llcs / n
    beta = p_lcs / (r_lcs + 1e-12)
    num = (1 + (beta ** 2)) * r_lcs * p_lcs
    denom = r_lcs + ((beta ** 2) * p_lcs)
    f_lcs = num / (denom + 1e-12)
    return p_lcs, r_lcs, f_lcs


def score_paper(hyp, ref):
    hs, rs = sentences_paper(hyp), sentences_paper(ref)
    return [rouge_n_paper(hs, rs, 1), rouge_n_paper(hs, rs, 2), rouge_l_paper(hs, rs)]


# ---------------------------------------------------------------- commands

def cmd_score(a):
    refs, hyps = read_lines(a.ref), read_lines(a.hyp)
    if len(refs) != len(hyps):
        sys.exit("rouge_ref.py: %s has %d lines, %s has %d" % (a.ref, len(refs), a.hyp, len(hyps)))
    fn = score_paper if a.mode == "paper" else score_standard
    print("line,count,r1_p,r1_r,r1_f,r2_p,r2_r,r2_f,rl_p,rl_r,rl_f")
    sums = [0.0] * 9
    for k, (h, r) in enumerate(zip(hyps, refs), 1):
        if not a.keep_case:
            h, r = fold(h), fold(r)
        vals = [v for prf in fn(h, r) for v in prf]
        sums = [s + v for s, v in zip(sums, vals)]
        print("%d,1,%s" % (k, ",".join("%.6f" % (100.0 * v) for v in vals)))
    cnt = max(len(refs), 1)
    print("mean,%d,%s" % (len(refs), ",".join("%.6f" % (100.0 * s / cnt) for s in sums)))


def cmd_bootstrap(a):
    import math
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from cx_rng import cx_rng_u64
    import numpy as np
    refs, hyps, base = read_lines(a.ref), read_lines(a.hyp), read_lines(a.baseline)
    if not (len(refs) == len(hyps) == len(base)) or not refs:
        sys.exit("rouge_ref.py: line counts differ or are 0")
    fn = score_paper if a.mode == "paper" else score_standard
    d = []
    for h, b, r in zip(hyps, base, refs):
        if not a.keep_case:
            h, b, r = fold(h), fold(b), fold(r)
        sh, sb = fn(h, r), fn(b, r)
        d.append([sh[m][2] - sb[m][2] for m in range(3)])
    n, R = len(d), a.resamples
    u = cx_rng_u64(a.seed, np.arange(R * n, dtype=np.uint64))
    sums = []
    for r in range(R):
        s = [0.0, 0.0, 0.0]
        for j in range(n):
            row = d[((int(u[r * n + j]) >> 32) * n) >> 32]
            for m in range(3):
                s[m] += row[m]
        sums.append(s)
    c = math.floor(0.025 * R)
    for m, name in enumerate(["rouge-1", "rouge-2", "rouge-l"]):
        total = 0.0
        for row in d:
            total += row[m]
        means = sorted(s[m] / n for s in sums)
        ahead = sum(1 for s in sums if s[m] > 0) / R
        tied = sum(1 for s in sums if s[m] == 0) / R
        print("%s %.6f %.6f %.6f %.6f %.6f" % (name, 100.0 * total / n, 100.0 * means[c],
                                             100.0 * means[R - 1 - c], ahead, tied))


WORDS = ["пожар", "ПОЖАР", "Москва", "москвы", "в", "В", "на", "севере", "ЁЛКА", "ёлка",
         "Ёж", "нефти", "Канаде", "ЇЖАК", "Ґанок", "Ђорђе", "ЉУБАВ", "Ѣ", "ѣ", "Ѳита", "ӁӂӐ",
         "Ԑԑ", "Ҕ", "Ӏ", "ӏ", "ÀÉÎÕÜ", "àéîõü", "ĀČĞİĽŁŃŒŠŽŸ", "Straße", "STRASSE", "ΑΘΗΝΑ",
         "Σίσυφος", "ΣΊΣΥΦΟΣ", "ϴϷϹϺϽ", "ΆΈΉΊΌΎΏ", "Kelvin", "KELVIN", "İstanbul",
         "istanbul", "60", "60.5", "тысяч", ",", "-", "—", "«РИА»", "риа", "новости", "a",
         "A", "b", "B", "c"]
SEPS = [" ", " ", " ", "  ", "\t", "\u00a0", " . ", ". ", ".", "\u2009", "\u3000", " \x1c "]


def random_text(rng, max_words, no_dots=False):
    if no_dots:   # long sentences: no "." anywhere
        words = [w for w in WORDS if "." not in w]
        seps = [x for x in SEPS if "." not in x]
        n = rng.randint(1, max_words)
        return "".join(rng.choice(words) + (rng.choice(seps) if i + 1 < n else "")
                       for i in range(n))
    roll = rng.random()
    if roll < 0.03:
        return ""
    if roll < 0.05:
        return rng.choice([" ", ".", "..", " . ", "\t", ". ."])
    n = rng.randint(1, max_words)
    parts = []
    for i in range(n):
        w = rng.choice(WORDS)
        if rng.random() < 0.02:
            w += rng.choice(["\udcd0", "\udcff", "\udce2\udc80"])   # invalid UTF-8 bytes
        parts.append(w)
        if i + 1 < n:
            parts.append(rng.choice(SEPS))
    if rng.random() < 0.3:
        parts.append(rng.choice([".", " .", "!", " ,"]))
    return "".join(parts)


def cmd_gen(a):
    rng = random.Random(a.seed)
    refs, hyps = [], []
    for _ in range(a.n):
        r = random_text(rng, a.max_words, a.no_dots)
        if rng.random() < 0.5:   # a hypothesis that shares words with its reference
            ws = r.split(" ")
            rng.shuffle(ws)
            h = " ".join(ws[:rng.randint(0, len(ws))])
            if rng.random() < 0.5:
                h += " " + random_text(rng, a.max_words, a.no_dots)
        else:
            h = random_text(rng, a.max_words, a.no_dots)
        refs.append(r)
        hyps.append(h)
    for path, lines in ((a.ref, refs), (a.hyp, hyps)):
        with open(path, "wb") as f:
            for ln in lines:
                f.write(ln.encode("utf-8", errors="surrogateescape") + b"\n")


def cmd_fold_table(_a):
    for cp in range(0x110000):
        lo = ord(fold_char(chr(cp)))
        if lo != cp:
            print("%04X %04X" % (cp, lo))


def cmd_space_table(_a):
    for cp in range(0x110000):
        if chr(cp).isspace():
            print("%04X" % cp)


def main():
    ap = argparse.ArgumentParser(description="reference ROUGE for io/eval/rouge.c")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--mode", choices=["standard", "paper"], default="standard")
    s.add_argument("--ref", required=True)
    s.add_argument("--hyp", required=True)
    s.add_argument("--keep-case", action="store_true")
    g = sub.add_parser("gen")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--n", type=int, default=300)
    g.add_argument("--max-words", type=int, default=14)
    g.add_argument("--no-dots", action="store_true")
    g.add_argument("--ref", required=True)
    g.add_argument("--hyp", required=True)
    b = sub.add_parser("bootstrap")
    b.add_argument("--mode", choices=["standard", "paper"], default="standard")
    b.add_argument("--ref", required=True)
    b.add_argument("--hyp", required=True)
    b.add_argument("--baseline", required=True)
    b.add_argument("--resamples", type=int, default=1000)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--keep-case", action="store_true")
    sub.add_parser("fold-table")
    sub.add_parser("space-table")
    a = ap.parse_args()
    {"score": cmd_score, "gen": cmd_gen, "bootstrap": cmd_bootstrap, "fold-table": cmd_fold_table,
     "space-table": cmd_space_table}[a.cmd](a)


if __name__ == "__main__":
    main()
