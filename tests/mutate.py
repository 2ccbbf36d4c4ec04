#!/usr/bin/env python3
"""Mutation testing of conflux's core: does the test suite notice when the code changes?

Each mutant is the repository with ONE single-token change in one of the files below:
  rel    a comparison flipped at its boundary    (<  <=, >  >=, and == !=)
  arith  a binary operator swapped               (+ -, * /, += -=, *= /=)
  logic  a connective swapped                    (&& ||) or a negation removed (!x -> x)
  const  an integer literal off by one           (N -> N+1)
  del    an expression statement deleted         (x = ...;  f(...);  i++;  -> ;)
Sites are taken from code only (not comments, strings or preprocessor lines), inside
function bodies, and never inside error and log calls (their text is checked elsewhere).
A fixed seed samples each file's quota from all its sites, so the set of mutants is the
same on every run and machine until the file changes.

Each mutant is built in a scratch copy of the repository (make, as `make check` builds),
and the tests that cover its file are run in order until one fails (the mutant is killed)
or all pass (it survived). A mutant whose object code equals the original's once debug
information is stripped (the site is in a branch of #if this machine does not compile, or
the compiler folds it away) changes nothing and is replaced by the next site of its file;
so is one that does not compile. A test that runs past its timeout kills the mutant (an
infinite loop is a detected change).

Prints one line per mutant, then the survivors with their source line and, where
tests/mutants-equivalent.txt explains one, its class and reason, and ends with
  mutation: killed=K total=N score=P% (M mutants run less E equivalent; killed/run = R%)
The score is the usual one: killed over the mutants that can be killed, so a survivor
recorded there as `equivalent:` (no value the program computes or reports can change) is
left out of N; every other survivor counts against it, explained or not.

usage: tests/mutate.py [--build BUILD] [--data DATA] [--work DIR] [--seed S]
                       [--only ID[,ID...]] [--file PATH] [--list] [--keep-going]
Run from the repository root after `make tools tests` (tests/mutate.sh does both).
"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

# file: (sites it gets, tests that cover it, functions to mutate (None: every function))
# Tests: unit/NAME runs BUILD/tests/unit/NAME; mpi/NAME and integration/NAME run the
# script tests/KIND/NAME.sh BUILD DATA.
TARGETS = {
    "models/nn.c": (20, ["unit/test_ops", "unit/test_albert", "unit/test_encdec", "unit/test_train_step"], None),
    "models/albert.c": (14, ["unit/test_albert", "unit/test_encdec", "unit/test_headline", "unit/test_train_step",
                         "mpi/test_mpi_train"], None),
    "models/train.c": (8, ["unit/test_train_step", "unit/test_albert", "mpi/test_mpi_train"], None),
    "models/optim.c": (12, ["unit/test_train_step", "unit/test_ops", "unit/test_albert"], None),
    "mpi/dp.c": (12, ["mpi/test_mpi_dp", "mpi/test_mpi_train"], None),
    "models/codec.c": (12, ["unit/test_codec", "unit/test_diloco", "unit/test_proto"], None),
    "bridge/robust.c": (10, ["unit/test_robust"], None),
    "bridge/planner.c": (6, ["unit/test_planner"], None),
    # the round core: plans, deadlines, fates, diloco rounds (driven by the server and conflux-sim)
    "bridge/round_core.c": (10, ["unit/test_round_core", "integration/test_sim"], None),
    # decoding in known words: the trie, the article's words, the beam mask
    "io/headline/lexicon.c": (10, ["unit/test_lexicon"], None),
    # the bridge's checks of an upload: the round, the share, the statistics, the elements,
    # the norm, the token count
    "bridge/rounds.c": (12, ["integration/test_bridge"],
                        ["br_rounds_on_grad_chunk", "tokens_ok"]),
    "io/eval/rouge.c": (10, ["unit/test_rouge", "integration/test_rouge_ref"], None),
}
SEED = 20261203
# a mutant's test runs at most TIMEOUT_FACTOR times its time on the unmutated tree (at least
# TIMEOUT_MIN s): past that it is taken to hang
TIMEOUT_FACTOR, TIMEOUT_MIN = 4, 30
BASELINE_TIMEOUT = 1800
# statements that report rather than compute: never mutated
REPORT_CALLS = re.compile(r"^\s*(CHECK|CX_CHECK|fprintf|printf|snprintf|br_log|cx_log|perror|"
                          r"bug_fatal|fatal_print_abort|cx_die|log_\w+|TRACE)\s*\(")
EQUIV_FILE = "tests/mutants-equivalent.txt"


# ---- reading C: which characters are code ----------------------------------------------
def code_mask(src):
    """A copy of src with comments, string and character literals and preprocessor lines
    blanked to spaces (newlines kept), so offsets match src."""
    out = list(src)
    i, n = 0, len(src)
    at_line_start = True
    while i < n:
        c = src[i]
        if at_line_start and c == "#" :
            # preprocessor line, with its continuations
            while i < n and src[i] != "\n":
                if src[i] == "\\" and i + 1 < n and src[i + 1] == "\n":
                    out[i] = " "
                    i += 2
                    continue
                out[i] = " "
                i += 1
            continue
        if c == "\n":
            at_line_start = True
            i += 1
            continue
        if c in " \t":
            i += 1
            continue
        at_line_start = False
        if src.startswith("//", i):
            while i < n and src[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if src[k] != "\n":
                    out[k] = " "
            i = j
            continue
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            for k in range(i, min(j + 1, n)):
                if src[k] != "\n":
                    out[k] = " "
            i = j + 1
            continue
        i += 1
    return "".join(out)


def function_spans(code):
    """(name, body_start, body_end) of each function definition: a top-level '{' that
    follows a ')' (so not a struct, enum or initializer), ending at its matching '}'."""
    spans = []
    depth = 0
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c == "{":
            if depth == 0:
                j = i - 1
                while j >= 0 and code[j] in " \t\n":
                    j -= 1
                # allow attributes/qualifiers between ')' and '{' only as whitespace
                if j >= 0 and code[j] == ")":
                    # the name: the identifier before the '(' that matches this ')'
                    d, k = 0, j
                    while k >= 0:
                        if code[k] == ")":
                            d += 1
                        elif code[k] == "(":
                            d -= 1
                            if d == 0:
                                break
                        k -= 1
                    m = re.search(r"(\w+)\s*$", code[:k])
                    name = m.group(1) if m else "?"
                    start = i
                    depth = 1
                    i += 1
                    while i < n and depth > 0:
                        if code[i] == "{":
                            depth += 1
                        elif code[i] == "}":
                            depth -= 1
                        i += 1
                    spans.append((name, start, i))
                    depth = 0
                    continue
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return spans


def statement_heads(code):
    """For each offset, the offset where its statement starts (after the previous ';', '{'
    or '}')."""
    heads = [0] * len(code)
    h = 0
    for i, c in enumerate(code):
        heads[i] = h
        if c in ";{}":
            h = i + 1
    return heads


OPS = re.compile(r"<<=|>>=|<<|>>|->|\+\+|--|<=|>=|==|!=|&&|\|\||\+=|-=|\*=|/=|[-+*/<>!]")
REL = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
ARITH = {"+": "-", "-": "+", "*": "/", "/": "*", "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}
LOGIC = {"&&": "||", "||": "&&"}
INT = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
EXPR_STMT = re.compile(r"^\s*(\+\+|--)?[A-Za-z_]\w*(\s*(\[[^\]]*\]|->\s*\w+|\.\s*\w+))*\s*"
                       r"(=[^=]|\+=|-=|\*=|/=|\|=|&=|\^=|<<=|>>=|\+\+|--|\()")
NOT_STMT = re.compile(r"^\s*(return|break|continue|goto|case|default|if|for|while|do|switch|else)\b")


def sites(path, funcs):
    src = open(path, encoding="utf-8").read()
    code = code_mask(src)
    heads = statement_heads(code)
    spans = [s for s in function_spans(code) if funcs is None or s[0] in funcs]
    line_of = lambda off: src.count("\n", 0, off) + 1
    out = []

    def reporting(off):
        return REPORT_CALLS.match(code[heads[off]:heads[off] + 200]) is not None

    for name, lo, hi in spans:
        body = code[lo:hi]
        for m in OPS.finditer(body):
            op, a, b = m.group(0), lo + m.start(), lo + m.end()
            if reporting(a):
                continue
            before, after = src[a - 1], src[b] if b < len(src) else ""
            spaced = before in " \t\n" and after in " \t\n"
            if op in REL and spaced:
                out.append((a, b, op, REL[op], "rel"))
            elif op in ARITH and spaced:
                out.append((a, b, op, ARITH[op], "arith"))
            elif op in LOGIC:
                out.append((a, b, op, LOGIC[op], "logic"))
            elif op == "!" and src[b] != "=" and (src[b].isalnum() or src[b] in "_("):
                out.append((a, b, op, "", "logic"))
        for m in INT.finditer(body):
            a, b = lo + m.start(), lo + m.end()
            if reporting(a):
                continue
            # not an array size in a declaration, not a shift count's or case label's
            v = int(m.group(1))
            out.append((a, b, m.group(1), str(v + 1), "const"))
        # expression statements that are one whole line
        off = lo + 1
        for line in body[1:].split("\n"):
            s = line.strip()
            if (s.endswith(";") and EXPR_STMT.match(line) and not NOT_STMT.match(line)
                    and s.count("(") == s.count(")") and "{" not in s and "}" not in s):
                a = off + line.index(s[0])
                b = a + len(s)
                if not reporting(a) and src[a:b].strip().endswith(";"):
                    out.append((a, b, src[a:b], ";", "del"))
            off += len(line) + 1
    res = []
    for a, b, old, new, kind in sorted(set(out)):
        ln = line_of(a)
        col = a - (src.rfind("\n", 0, a) + 1) + 1
        res.append({"file": path, "a": a, "b": b, "old": old, "new": new, "kind": kind,
                    "line": ln, "col": col, "id": f"{path}:{ln}:{col}:{kind}"})
    return src, res


def sample(path, quota, funcs, seed):
    src, cands = sites(path, funcs)
    rng = random.Random(f"{seed}:{path}")
    rng.shuffle(cands)
    return src, cands, quota


# ---- building and running --------------------------------------------------------------
def sh(cmd, cwd, timeout, env=None):
    """Runs cmd in its own process group; on timeout the whole group is killed (mpirun and
    its ranks too, not only the script that started them)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace"), time.time() - t0
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return "timeout", out.decode("utf-8", "replace"), time.time() - t0


def test_cmd(test, build, data):
    kind, name = test.split("/")
    if kind == "unit":
        return [os.path.join(build, "tests/unit", name)]
    return ["bash", f"tests/{kind}/{name}.sh", build, data]


def make_targets(tests, build):
    t = set()
    for test in tests:
        kind, name = test.split("/")
        if kind == "unit":
            t.add(f"{build}/tests/unit/{name}")
        else:
            t.update(["tools", "tests"])
    return sorted(t)


def obj_path(build, path):
    return os.path.join(build, path[:-2] + ".o")


def stripped(tree, obj):
    out = obj + ".stripped"
    subprocess.run(["objcopy", "--strip-debug", obj, out], cwd=tree, check=True)
    data = open(os.path.join(tree, out), "rb").read()
    os.unlink(os.path.join(tree, out))
    return data


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/release", help="build folder (relative; default build/release)")
    ap.add_argument("--data", default="build/data", help="data folder the scripts get (default build/data)")
    ap.add_argument("--work", default="build/mutate", help="scratch copy of the repository (default build/mutate)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--only", help="run only these mutant ids (comma-separated, as printed)")
    ap.add_argument("--file", help="run only the mutants of these files (comma-separated)")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--keep-going", action="store_true", help="run every test of a mutant, not only until one fails")
    args = ap.parse_args()

    root = os.getcwd()
    if not os.path.exists("tests/mutate.py"):
        sys.exit("mutate: run from the repository root")
    equiv = {}
    if os.path.exists(EQUIV_FILE):
        for line in open(EQUIV_FILE, encoding="utf-8"):
            if line.strip() and not line.startswith("#"):
                mid, _, why = line.rstrip("\n").partition(" ")
                equiv[mid] = why.strip()
    only = set(args.only.split(",")) if args.only else None
    plan = []
    for path, (quota, tests, funcs) in TARGETS.items():
        if args.file and path not in args.file.split(","):
            continue
        src, cands, q = sample(path, quota, funcs, args.seed)
        if only is not None:
            cands = [c for c in cands if c["id"] in only]
            q = len(cands)
            if not cands:
                continue
        plan.append((path, src, cands, q, tests))
    if args.list:
        for path, src, cands, q, tests in plan:
            print(f"{path}: {len(cands)} sites, {q} sampled, tests {' '.join(tests)}")
            for c in cands[:q]:
                print(f"  {c['id']}  {c['old']!r} -> {c['new']!r}")
        return 0

    # the scratch tree: the repository's files and the current build (timestamps kept)
    work = os.path.abspath(args.work)
    tree = os.path.join(work, "tree")
    if os.path.exists(tree):
        shutil.rmtree(tree)
    os.makedirs(tree)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], stdout=subprocess.PIPE,
                           check=True).stdout.decode().split("\n")
    for f in files:
        if f and os.path.isfile(f):
            os.makedirs(os.path.join(tree, os.path.dirname(f)), exist_ok=True)
            shutil.copy2(f, os.path.join(tree, f))
    os.makedirs(os.path.join(tree, os.path.dirname(args.build)), exist_ok=True)
    shutil.copytree(args.build, os.path.join(tree, args.build), symlinks=True,
                    ignore=shutil.ignore_patterns("test-logs", "mutate"))
    data = os.path.abspath(args.data)
    if not os.path.isabs(args.data):  # the scripts also find it by its usual relative path
        os.makedirs(os.path.dirname(os.path.join(tree, args.data)), exist_ok=True)
        os.symlink(data, os.path.join(tree, args.data))
    env = dict(os.environ)
    env.pop("CI", None)       # no -Werror: a mutant may warn and still be a program
    env.pop("WERROR", None)
    env.pop("CONFLUX_NO_SKIP", None)
    mk = ["make", "-s", f"MODE={os.path.basename(args.build)}", "-j2"]

    # the tests must pass before any mutant is tried
    all_tests = sorted({t for p in plan for t in p[4]})
    rc, out, _ = sh(mk + make_targets(all_tests, args.build), tree, 1800, env)
    if rc != 0:
        sys.exit(f"mutate: the unmutated tree does not build:\n{out[-3000:]}")
    timeout = {}
    for t in all_tests:
        rc, out, dt = sh(test_cmd(t, args.build, data), tree, BASELINE_TIMEOUT, env)
        timeout[t] = max(TIMEOUT_MIN, TIMEOUT_FACTOR * dt)
        if rc != 0:
            sys.exit(f"mutate: {t} fails on the unmutated tree (rc {rc}); fix it first:\n{out[-3000:]}")
        print(f"baseline: {t} passes ({dt:.1f} s)", flush=True)

    t_start = time.time()
    results = []
    n_total = sum(p[3] for p in plan)
    skipped_same = skipped_bad = 0
    for path, src, cands, quota, tests in plan:
        fpath = os.path.join(tree, path)
        obj = obj_path(args.build, path)
        rc, out, _ = sh(mk + [obj], tree, 600, env)
        orig_obj = stripped(tree, obj)
        done = 0
        for c in cands:
            if done >= quota:
                break
            mutated = src[:c["a"]] + c["new"] + src[c["b"]:]
            with open(fpath, "w", encoding="utf-8") as f:
                f.write(mutated)
            try:
                rc, out, _ = sh(mk + [obj], tree, 600, env)
                if rc != 0:
                    skipped_bad += 1
                    continue
                if stripped(tree, obj) == orig_obj:
                    skipped_same += 1
                    continue
                rc, out, _ = sh(mk + make_targets(tests, args.build), tree, 1200, env)
                if rc != 0:
                    skipped_bad += 1
                    continue
                done += 1
                killers, t0 = [], time.time()
                for t in tests:
                    trc, tout, dt = sh(test_cmd(t, args.build, data), tree, timeout[t], env)
                    if trc != 0:
                        killers.append(f"{t}" + (" (timeout)" if trc == "timeout" else ""))
                        if not args.keep_going:
                            break
                r = dict(c, killed=bool(killers), by=killers, secs=time.time() - t0)
                results.append(r)
                old = c["old"] if c["kind"] != "del" else c["old"][:50]
                state = f"KILLED by {killers[0]}" if killers else "SURVIVED"
                print(f"[{len(results)}/{n_total}] {state:44s} {c['id']}  {old!r} -> {c['new']!r}  "
                      f"({r['secs']:.0f} s)", flush=True)
            finally:
                with open(fpath, "w", encoding="utf-8") as f:
                    f.write(src)
        if done < quota:
            print(f"mutate: {path} has only {done} usable sites of the {quota} asked", flush=True)
    # leave the scratch build as the tree is (the next run copies afresh)
    killed = sum(r["killed"] for r in results)
    surv = [r for r in results if not r["killed"]]
    mins = (time.time() - t_start) / 60
    print()
    if surv:
        print("survivors:")
        for r in surv:
            line = src_line = open(r["file"], encoding="utf-8").read().split("\n")[r["line"] - 1]
            print(f"  {r['id']}  {r['old'][:60]!r} -> {r['new']!r}")
            print(f"      {src_line.strip()[:110]}")
            if r["id"] in equiv:
                print(f"      known: {equiv[r['id']]}")
    n = len(results)
    # the mutation score (DeMillo et al.): killed over the mutants that can be killed, i.e.
    # less the survivors recorded as equivalent; the raw share of all mutants run is printed too
    n_eq = sum(1 for r in surv if equiv.get(r["id"], "").startswith("equivalent:"))
    n_known = sum(1 for r in surv if r["id"] in equiv)
    print(f"\nmutants not run: {skipped_same} with unchanged object code, {skipped_bad} not building "
          f"(each replaced by the next site of its file)")
    print(f"time: {mins:.1f} min for {n} mutants on {os.cpu_count()} cores")
    total = n - n_eq
    score = 100.0 * killed / total if total else 0.0
    raw = 100.0 * killed / n if n else 0.0
    print(f"survived: {len(surv)}, of them {n_eq} equivalent and {n_known - n_eq} others explained in "
          f"{EQUIV_FILE}, {len(surv) - n_known} unexplained")
    print(f"mutation: killed={killed} total={total} score={score:.1f}% "
          f"({n} mutants run less {n_eq} equivalent; killed/run = {raw:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
