#!/usr/bin/python3
# ops_ref.py: PyTorch golden values for the ops in models/nn.h (used by tests/unit/test_ops.c).
#
# Run from the repository root with Debian's torch (the `python3` first on PATH has none):
#     /usr/bin/python3 tests/ref/ops_ref.py
# It rewrites tests/ref/ops_golden.h, which is committed; CI does not need torch.
#
# Inputs are drawn here from a fixed torch.Generator seed and rounded to float32, so that
# the C float ops see exactly the values torch used; the header holds the inputs, the
# upstream gradients (dout) and the expected outputs and gradients. Every op runs forward
# and backward in float64 (torch autograd; loss = sum(out * dout)). Dropout is not compared
# (torch's RNG differs from ours): its case uses p = 0.
import os
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20240611)


def randn(*shape, scale=1.0, shift=0.0):
    """float64 tensor holding float32-representable values"""
    t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift
    return t.float().double()


def leaf(t):
    return t.clone().requires_grad_(True)


out_lines = []
defines = []


def emit(name, t, ctype="double"):
    vals = t.detach().reshape(-1).tolist()
    # repr() of a Python float is the shortest string that reads back as the same double
    items = [repr(float(v)) if ctype == "double" else str(int(v)) for v in vals]
    per_line = 4 if ctype == "double" else 16
    rows = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    out_lines.append("static const %s golden_%s[%d] = {\n    %s,\n};"
                     % (ctype, name, len(vals), ",\n    ".join(rows)))


def define(name, value):
    defines.append("#define GOLDEN_%s %s" % (name, value))


# ---- embedding: out (N,C) = wte[ids]; dwte scatter-add ----
V, C, N = 7, 5, 6
ids = torch.tensor([3, 0, 6, 3, 2, 3], dtype=torch.int64)
wte = leaf(randn(V, C))
out = F.embedding(ids, wte)
dout = randn(N, C)
out.backward(dout)
define("EMB_V", V); define("EMB_C", C); define("EMB_N", N)
emit("emb_ids", ids, "int32_t"); emit("emb_wte", wte); emit("emb_dout", dout)
emit("emb_out", out); emit("emb_dwte", wte.grad)

# ---- linear with and without bias ----
N, C, OC = 4, 6, 5
x = leaf(randn(N, C)); w = leaf(randn(OC, C, scale=0.5)); b = leaf(randn(OC))
out = F.linear(x, w, b)
dout = randn(N, OC)
out.backward(dout)
define("LIN_N", N); define("LIN_C", C); define("LIN_OC", OC)
emit("lin_inp", x); emit("lin_weight", w); emit("lin_bias", b); emit("lin_dout", dout)
emit("lin_out", out); emit("lin_dinp", x.grad); emit("lin_dweight", w.grad)
emit("lin_dbias", b.grad)
x2 = leaf(x.detach()); w2 = leaf(w.detach())
out = F.linear(x2, w2)
out.backward(dout)
emit("lin_nb_out", out); emit("lin_nb_dinp", x2.grad); emit("lin_nb_dweight", w2.grad)

# ---- layernorm (also the saved mean and rstd) ----
N, C, eps = 4, 10, 1e-5
x = leaf(randn(N, C, scale=2.0, shift=0.5))
w = leaf(randn(C, scale=0.1, shift=1.0)); b = leaf(randn(C, scale=0.1))
out, mean, rstd = torch.native_layer_norm(x, (C,), w, b, eps)
ref = F.layer_norm(x, (C,), w, b, eps)
assert torch.allclose(out, ref, rtol=0, atol=1e-14)
dout = randn(N, C)
out.backward(dout)
define("LN_N", N); define("LN_C", C); define("LN_EPS", repr(eps))
emit("ln_inp", x); emit("ln_weight", w); emit("ln_bias", b); emit("ln_dout", dout)
emit("ln_out", out); emit("ln_mean", mean); emit("ln_rstd", rstd)
emit("ln_dinp", x.grad); emit("ln_dweight", w.grad); emit("ln_dbias", b.grad)

# ---- GELU, tanh approximation ----
n = 40
x = leaf(torch.cat([randn(32, scale=2.5),
                    torch.tensor([0.0, -0.5, 0.5, -3.0, 3.0, -8.0, 8.0, -20.0])]))
out = F.gelu(x, approximate="tanh")
dout = randn(n)
out.backward(dout)
define("GELU_N", n)
emit("gelu_inp", x); emit("gelu_dout", dout); emit("gelu_out", out); emit("gelu_dinp", x.grad)

# ---- dropout with p = 0 (identity; torch's RNG is not ours) ----
n = 12
x = leaf(randn(n))
out = F.dropout(x, p=0.0, training=True)
dout = randn(n)
out.backward(dout)
define("DROP_N", n)
emit("drop_inp", x); emit("drop_dout", dout); emit("drop_out", out); emit("drop_dinp", x.grad)

# ---- attention core with a padding mask ----
B, T, C, NH = 2, 5, 8, 2
D = C // NH
mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64)
q = leaf(randn(B, T, C)); k = leaf(randn(B, T, C)); v = leaf(randn(B, T, C))


def heads(t):
    return t.view(B, T, NH, D).transpose(1, 2)  # (B,NH,T,D)


scores = heads(q) @ heads(k).transpose(-2, -1) / D ** 0.5
scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
att = torch.softmax(scores, dim=-1)  # (B,NH,T,T)
out = (att @ heads(v)).transpose(1, 2).reshape(B, T, C)
dout = randn(B, T, C)
out.backward(dout)
define("ATT_B", B); define("ATT_T", T); define("ATT_C", C); define("ATT_NH", NH)
emit("att_mask", mask, "int32_t"); emit("att_q", q); emit("att_k", k); emit("att_v", v)
emit("att_dout", dout); emit("att_out", out); emit("att_att", att)
emit("att_dq", q.grad); emit("att_dk", k.grad); emit("att_dv", v.grad)

# ---- softmax cross-entropy, sum over selected rows, ignored rows = -100 ----
N, V = 6, 11
logits = leaf(randn(N, V, scale=2.0))
targets = torch.tensor([3, -100, 0, 10, -100, 7], dtype=torch.int64)
loss = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
scale = 0.25  # e.g. 1 / (number of selected rows)
(loss * scale).backward()
define("XENT_N", N); define("XENT_V", V); define("XENT_SCALE", repr(scale))
emit("xent_logits", logits); emit("xent_targets", targets, "int32_t")
emit("xent_probs", torch.softmax(logits, dim=-1)); emit("xent_dlogits", logits.grad)
out_lines.append("static const double golden_xent_loss = %r;" % loss.item())

# ---- residual add ----
n = 10
a = randn(n); b = randn(n)
define("ADD_N", n)
emit("add_a", a); emit("add_b", b); emit("add_out", a + b)

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "ops_golden.h")
with open(path, "w") as f:
    f.write("// ops_golden.h: generated by tests/ref/ops_ref.py, do not edit.\n")
    f.write("// torch %s, float64; inputs are float32-representable.\n" % torch.__version__)
    f.write("#ifndef CONFLUX_OPS_GOLDEN_H\n#define CONFLUX_OPS_GOLDEN_H\n\n")
    f.write("#include <stdint.h>\n\n")
    f.write("\n".join(defines) + "\n\n")
    f.write("\n".join(out_lines) + "\n\n#endif\n")
print("wrote %s" % os.path.relpath(path), file=sys.stderr)
