#!/usr/bin/python3
# optim_step_ref.py: PyTorch golden values for whole optimizer steps of the training loop
# (trainer_step in models/train.h with AdamW, LAMB and LARS from models/optim.h; used by
# tests/unit/test_train_step.c), and the cosine learning-rate schedule.
#
# Run from the repository root with Debian's torch (the `python3` first on PATH has none):
#     /usr/bin/python3 tests/ref/optim_step_ref.py
# It rewrites tests/ref/optim_step_golden.h, which is committed; CI does not need torch.
#
# The model is synthetic: a few tensors (two weight matrices, one embedding-like matrix
# decayed; biases and LayerNorm tensors not decayed) and, for every sample of the data
# stream, a fixed gradient contribution (float32, one per parameter) and a number of loss
# tokens. A step of global batch G over samples [s0, s0 + G) is, by the definition in
# models/train.h:
#   g = (sum of the samples' contributions, added in sample order in float32) / (sum of
#       their tokens)
#   torch.nn.utils.clip_grad_norm_(params, CLIP) (the norm over every tensor)
#   AdamW: torch.optim.AdamW with two parameter groups (decay: WD, no decay: 0), both
#          with the learning rate of conflux's schedule for that step
#   LAMB:  You et al. 2020 (arXiv:1904.00962), Algorithm 2 with phi = identity, written
#          out below: Adam moments with bias correction, r = m_hat / (sqrt(v_hat) + eps),
#          u = r + wd * w, trust = ||w|| / ||u|| per tensor (1 when either norm is 0),
#          w -= lr * trust * u. conflux's documented variant (optim.h): no_decay tensors
#          get wd = 0 and trust = 1 (BERT's exclude_from_layer_adaptation).
#   LARS:  apex's LARC (clip off, as SwAV trains) written out below around
#          torch.optim.SGD(momentum=BETA1): per tensor, when ||w|| and ||g|| are non-zero,
#          g = (g + wd * w) * TRUST * ||w|| / (||g|| + wd * ||w|| + EPS); no_decay tensors
#          get wd = 0 (every tensor is adapted); then SGD's momentum buffer and step.
# The schedule (optim.h, SCHED_LINEAR): linear warm-up lr * (step + 1) / WARMUP for
# step < WARMUP, then linear from LR at step WARMUP to END_LR at step TOTAL.
#
# Each step's contributions are scaled so that the averaged gradient has a chosen global
# norm: above CLIP in steps 0 and 2 (clipping active), below in steps 1 and 3.
# The header holds the layout, the initial parameters, the contributions and tokens, and
# for every step and both optimizers the pre-clip norm, the learning rate, and the
# parameters and both moments after the step (tensors packed one after another).
import math
import os
import sys

import numpy as np
import torch

# (name, shape, no_decay)
TENSORS = [
    ("embed.weight", (5, 8), 0),       # 40 elements: two 16-wide blocks and a tail
    ("dense.weight", (4, 6), 0),
    ("dense.bias", (4,), 1),
    ("LayerNorm.weight", (4,), 1),
    ("LayerNorm.bias", (4,), 1),
    ("out.weight", (3, 4), 0),
    ("out.bias", (3,), 1),
]
STEPS, G, MICRO = 4, 7, 3              # micro-batches of 3, 3, 1
NORMS = [3.0, 0.4, 2.5, 0.6]           # global norm of each step's averaged gradient
f32 = lambda x: float(np.float32(x))   # a value as the C code holds it (float)
LR, END_LR, WARMUP, TOTAL = f32(0.01), f32(0.001), 2, 4
BETA1, BETA2, EPS, WD, CLIP = f32(0.9), f32(0.999), f32(1e-6), f32(0.1), f32(1.0)
TRUST = f32(0.02)
# the cosine schedule's check: warm-up to COS_LR over COS_WARMUP steps, then down to COS_END
COS_LR, COS_END, COS_WARMUP, COS_TOTAL = f32(0.3), f32(0.01), 3, 10

gen = torch.Generator().manual_seed(20250220)
sizes = [int(np.prod(s)) for _, s, _ in TENSORS]
NP = sum(sizes)
S = STEPS * G

out_lines, defines = [], []


def emit(name, t, ctype="float"):
    vals = t.detach().reshape(-1).tolist()
    items = [str(int(v)) if ctype == "int" else repr(float(v)) for v in vals]
    rows = [", ".join(items[i:i + 4]) for i in range(0, len(items), 4)]
    out_lines.append("static const %s golden_%s[%d] = {\n    %s,\n};"
                     % (ctype, name, len(vals), ",\n    ".join(rows)))


def define(name, value):
    defines.append("#define GOLDEN_%s %s" % (name, value))


def lr_at(step):
    """conflux's SCHED_LINEAR learning rate for 0-based step (optim.h), as a float."""
    if WARMUP > 0 and step < WARMUP:
        return f32(LR * (step + 1) / WARMUP)
    frac = min(1.0, (step - WARMUP) / (TOTAL - WARMUP))
    return f32((LR - END_LR) * (1.0 - frac) + END_LR)


# ---- data: initial parameters, per-sample contributions and tokens ----
w0 = []
for name, shape, nd in TENSORS:
    if name == "LayerNorm.weight":
        w0.append(1.0 + 0.1 * torch.randn(shape, generator=gen))
    else:  # biases too are non-zero, so that decaying them would show
        w0.append(0.5 * torch.randn(shape, generator=gen))
tokens = torch.randint(1, 9, (S,), generator=gen, dtype=torch.int64)
contrib = torch.randn(S, NP, generator=gen, dtype=torch.float32)
contrib *= torch.rand(S, NP, generator=gen) * 2.0 + 0.1    # varied magnitudes
for k in range(STEPS):
    sl = slice(k * G, (k + 1) * G)
    avg = contrib[sl].double().sum(0) / tokens[sl].sum().double()
    contrib[sl] *= NORMS[k] / float(avg.norm())


def split(flat):
    out, o = [], 0
    for (_, shape, _), n in zip(TENSORS, sizes):
        out.append(flat[o:o + n].reshape(shape))
        o += n
    return out


def step_grads(k):
    """The averaged gradient of step k: float32 sum in sample order, / total tokens."""
    acc = torch.zeros(NP, dtype=torch.float32)
    for s in range(k * G, (k + 1) * G):
        acc = acc + contrib[s]
    return split(acc / float(tokens[k * G:(k + 1) * G].sum()))


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


# ---- AdamW: torch.optim.AdamW, two groups ----
params = [torch.nn.Parameter(w.clone()) for w in w0]
decay = [p for p, (_, _, nd) in zip(params, TENSORS) if not nd]
no_decay = [p for p, (_, _, nd) in zip(params, TENSORS) if nd]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=LR, betas=(BETA1, BETA2), eps=EPS)
res = {"adamw": ([], [], [], [], []), "lamb": ([], [], [], [], []), "lars": ([], [], [], [], [])}
for k in range(STEPS):
    for p, g in zip(params, step_grads(k)):
        p.grad = g.clone()
    gn = float(torch.nn.utils.clip_grad_norm_(params, CLIP))
    assert (gn > CLIP) == (NORMS[k] > CLIP), (k, gn)
    for grp in opt.param_groups:
        grp["lr"] = lr_at(k)
    opt.step()
    P, M, V, N, L = res["adamw"]
    P.append(flat(params))
    M.append(flat([opt.state[p]["exp_avg"] for p in params]))
    V.append(flat([opt.state[p]["exp_avg_sq"] for p in params]))
    N.append(gn)
    L.append(lr_at(k))

# ---- LAMB from the paper's definition (float32 tensors; norms in float64) ----
w = [x.clone() for x in w0]
m = [torch.zeros_like(x) for x in w0]
v = [torch.zeros_like(x) for x in w0]
for k in range(STEPS):
    g = step_grads(k)
    gn = float(torch.sqrt(sum((x.double() ** 2).sum() for x in g)))
    if gn > CLIP:  # clip_grad_norm_'s coefficient
        g = [x * f32(CLIP / (gn + 1e-6)) for x in g]
    t, lr = k + 1, lr_at(k)
    for i, (_, _, nd) in enumerate(TENSORS):
        m[i] = BETA1 * m[i] + (1 - BETA1) * g[i]
        v[i] = BETA2 * v[i] + (1 - BETA2) * g[i] * g[i]
        m_hat = m[i] / (1 - BETA1 ** t)
        v_hat = v[i] / (1 - BETA2 ** t)
        wd = 0.0 if nd else WD
        u = m_hat / (torch.sqrt(v_hat) + EPS) + wd * w[i]
        wn, un = float(w[i].double().norm()), float(u.double().norm())
        trust = 1.0 if nd or wn == 0 or un == 0 else wn / un
        w[i] = w[i] - lr * trust * u
    P, M, V, N, L = res["lamb"]
    P.append(flat(w))
    M.append(flat(m))
    V.append(flat(v))
    N.append(gn)
    L.append(lr)

# ---- LARS: LARC (apex, clip off) around torch.optim.SGD ----
params = [torch.nn.Parameter(w.clone()) for w in w0]
opt = torch.optim.SGD(params, lr=LR, momentum=BETA1, weight_decay=0.0)
for k in range(STEPS):
    for p, g in zip(params, step_grads(k)):
        p.grad = g.clone()
    gn = float(torch.nn.utils.clip_grad_norm_(params, CLIP))
    with torch.no_grad():
        for p, (_, _, nd) in zip(params, TENSORS):
            wd = 0.0 if nd else WD
            param_norm, grad_norm = torch.norm(p.data), torch.norm(p.grad.data)
            if param_norm != 0 and grad_norm != 0:
                adaptive_lr = TRUST * param_norm / (grad_norm + param_norm * wd + EPS)
                p.grad.data += wd * p.data
                p.grad.data *= adaptive_lr
    for grp in opt.param_groups:
        grp["lr"] = lr_at(k)
    opt.step()
    P, M, V, N, L = res["lars"]
    P.append(flat(params))
    M.append(flat([opt.state[p]["momentum_buffer"] for p in params]))
    V.append(torch.zeros(NP))
    N.append(gn)
    L.append(lr_at(k))


def cosine_lr(step):
    """SCHED_COSINE (optim.h): linear warm-up, then a half cosine from COS_LR to COS_END."""
    if step < COS_WARMUP:
        return f32(COS_LR * (step + 1) / COS_WARMUP)
    frac = min(1.0, (step - COS_WARMUP) / (COS_TOTAL - COS_WARMUP))
    return f32(COS_END + (COS_LR - COS_END) * 0.5 * (1.0 + math.cos(math.pi * frac)))


# ---- the header ----
define("OS_NT", len(TENSORS))
define("OS_NP", NP)
define("OS_STEPS", STEPS)
define("OS_G", G)
define("OS_MICRO", MICRO)
define("OS_LR", repr(LR) + "f")
define("OS_END_LR", repr(END_LR) + "f")
define("OS_WARMUP", WARMUP)
define("OS_TOTAL", TOTAL)
define("OS_BETA1", repr(BETA1) + "f")
define("OS_BETA2", repr(BETA2) + "f")
define("OS_EPS", repr(EPS) + "f")
define("OS_WD", repr(WD) + "f")
define("OS_CLIP", repr(CLIP) + "f")
define("OS_TRUST", repr(TRUST) + "f")
define("OS_COS_LR", repr(COS_LR) + "f")
define("OS_COS_END", repr(COS_END) + "f")
define("OS_COS_WARMUP", COS_WARMUP)
define("OS_COS_TOTAL", COS_TOTAL)
out_lines.append("static const struct { const char *name; int ndim; long d0, d1; int no_decay; } "
                 "golden_os_tensors[%d] = {\n%s\n};" % (len(TENSORS), "\n".join(
                     '    {"%s", %d, %d, %d, %d},' % (n, len(s), s[0], s[1] if len(s) > 1 else 0, nd)
                     for n, s, nd in TENSORS)))
emit("os_w0", flat(w0))
emit("os_tokens", tokens, "int")
emit("os_contrib", contrib)
emit("os_cosine_lr", torch.tensor([cosine_lr(k) for k in range(COS_TOTAL + 2)],
                                  dtype=torch.float64), "float")
for kind in ("adamw", "lamb", "lars"):
    P, M, V, N, L = res[kind]
    emit("os_%s_params" % kind, torch.stack(P))
    emit("os_%s_m" % kind, torch.stack(M))
    emit("os_%s_v" % kind, torch.stack(V))
    emit("os_%s_gnorm" % kind, torch.tensor(N, dtype=torch.float64), "double")
    emit("os_%s_lr" % kind, torch.tensor(L, dtype=torch.float64), "float")

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim_step_golden.h")
with open(path, "w") as f:
    f.write("// optim_step_golden.h: generated by tests/ref/optim_step_ref.py, do not edit.\n")
    f.write("// torch %s: float32 on the CPU; AdamW is torch.optim.AdamW, LAMB the paper's "
            "formula, LARS apex's LARC around torch.optim.SGD.\n" % torch.__version__)
    f.write("#ifndef CONFLUX_OPTIM_STEP_GOLDEN_H\n#define CONFLUX_OPTIM_STEP_GOLDEN_H\n\n")
    f.write("\n".join(defines) + "\n\n")
    f.write("\n".join(out_lines) + "\n\n#endif\n")
print("wrote %s: norms %s" % (path, ", ".join("%.3f" % x for x in res["adamw"][3])), file=sys.stderr)
