#!/usr/bin/python3
# vision_ref.py: PyTorch golden values for the ops in models/vision.h and SwAV's head and
# objective in models/swav.h (used by tests/unit/test_vision.c).
#
# Run from the repository root with Debian's torch (the `python3` first on PATH has none):
#     /usr/bin/python3 tests/ref/vision_ref.py
# It rewrites tests/ref/vision_golden.h, which is committed; CI does not need torch.
#
# Inputs come from a fixed torch.Generator seed, rounded to float32 so that the C float ops
# see exactly the values torch used. Every op runs forward and backward in float64 through
# torch.nn.functional (loss = sum(out * dout)); batch norm in training mode also reports the
# running statistics after the step (momentum 0.1, unbiased variance, as torch.nn.BatchNorm2d).
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_torch import sinkhorn  # noqa: E402

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20261204)


def randn(*shape, scale=1.0, shift=0.0):
    """float64 tensor holding float32-representable values"""
    t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift
    return t.float().double()


def leaf(t):
    return t.clone().requires_grad_(True)


out_lines = []
defines = []


def emit(name, t):
    vals = t.detach().reshape(-1).tolist()
    items = [repr(float(v)) for v in vals]
    rows = [", ".join(items[i:i + 4]) for i in range(0, len(items), 4)]
    out_lines.append("static const double golden_%s[%d] = {\n    %s,\n};"
                     % (name, len(vals), ",\n    ".join(rows)))


def define(name, value):
    defines.append("#define GOLDEN_%s %s" % (name, value))


# ---- convolutions: (tag, B, C, H, W, OC, KH, KW, stride, pad, bias) ----
# CV2 has more images than one weight-gradient group (CONV_GROUP = 8) and an uneven last one
CONVS = [("CV1", 2, 3, 7, 6, 4, 3, 3, 1, 1, True),
         ("CV2", 10, 2, 5, 5, 3, 3, 2, 2, 1, True),
         ("CV3", 2, 4, 3, 3, 5, 1, 1, 1, 0, False)]
for tag, B, C, H, W, OC, KH, KW, stride, pad, has_bias in CONVS:
    x = leaf(randn(B, C, H, W))
    w = leaf(randn(OC, C, KH, KW, scale=0.5))
    b = leaf(randn(OC)) if has_bias else None
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    dout = randn(*out.shape)
    out.backward(dout)
    for k, v in (("B", B), ("C", C), ("H", H), ("W", W), ("OC", OC), ("KH", KH), ("KW", KW),
                 ("STRIDE", stride), ("PAD", pad), ("BIAS", int(has_bias)),
                 ("OH", out.shape[2]), ("OW", out.shape[3])):
        define("%s_%s" % (tag, k), v)
    t = tag.lower()
    emit(t + "_inp", x); emit(t + "_weight", w); emit(t + "_dout", dout); emit(t + "_out", out)
    emit(t + "_dinp", x.grad); emit(t + "_dweight", w.grad)
    if has_bias:
        emit(t + "_bias", b); emit(t + "_dbias", b.grad)

# ---- batch norm, training mode, then eval with the updated running statistics ----
B, C, H, W, eps, momentum = 3, 4, 2, 3, 1e-5, 0.1
x = leaf(randn(B, C, H, W, scale=2.0, shift=0.5))
w = leaf(randn(C, scale=0.3, shift=1.0))
b = leaf(randn(C, scale=0.3))
rmean = torch.tensor([0.1 * c for c in range(C)])
rvar = torch.tensor([1.0 + 0.2 * c for c in range(C)])
rmean0, rvar0 = rmean.clone(), rvar.clone()
out = F.batch_norm(x, rmean, rvar, w, b, training=True, momentum=momentum, eps=eps)
dout = randn(*out.shape)
out.backward(dout)
xe = randn(B, C, H, W)
out_eval = F.batch_norm(xe, rmean, rvar, w.detach(), b.detach(), training=False, eps=eps)
define("BN_B", B); define("BN_C", C); define("BN_HW", H * W)
define("BN_EPS", eps); define("BN_MOMENTUM", momentum)
emit("bn_inp", x); emit("bn_weight", w); emit("bn_bias", b); emit("bn_dout", dout)
emit("bn_rmean0", rmean0); emit("bn_rvar0", rvar0)
emit("bn_out", out); emit("bn_rmean", rmean); emit("bn_rvar", rvar)
emit("bn_dinp", x.grad); emit("bn_dweight", w.grad); emit("bn_dbias", b.grad)
emit("bn_eval_inp", xe); emit("bn_eval_out", out_eval)

# ---- ReLU and global average pooling (a small ResNet's head) ----
B, C, H, W = 2, 3, 4, 5
x = leaf(randn(B, C, H, W))
r = F.relu(x)
p = F.adaptive_avg_pool2d(r, 1).flatten(1)
dout = randn(B, C)
p.backward(dout)
define("RP_B", B); define("RP_C", C); define("RP_HW", H * W)
emit("rp_inp", x); emit("rp_relu", r); emit("rp_pool", p); emit("rp_dout", dout)
emit("rp_dinp", x.grad)

# ---- SwAV's head and objective (models/swav.h), as facebookresearch/swav's main_swav.py:
# z (V*B, D) -> normalize -> scores = z_n @ W^T with W the L2-normalised prototypes (K, D);
# codes of the first A crops by sinkhorn (no grad); the swapped-prediction loss.


V, A, B, D, K, temp, eps, iters = 4, 2, 5, 6, 7, 0.1, 0.05, 3
z = leaf(randn(V * B, D))
w = F.normalize(randn(K, D), dim=1).float().double()  # prototypes as stored: normalised
w = leaf(w)
zn = F.normalize(z, dim=1)
scores = zn @ w.t()
q = torch.stack([sinkhorn(scores[a * B:(a + 1) * B].detach(), eps, iters) for a in range(A)])
loss = 0.0
for a in range(A):
    sub = 0.0
    for v in range(V):
        if v == a:
            continue
        x = scores[v * B:(v + 1) * B] / temp
        sub = sub - torch.mean(torch.sum(q[a] * F.log_softmax(x, dim=1), dim=1))
    loss = loss + sub / (V - 1)
loss = loss / A
loss.backward()
define("SW_V", V); define("SW_A", A); define("SW_B", B); define("SW_D", D); define("SW_K", K)
define("SW_TEMP", temp); define("SW_EPS", eps); define("SW_ITERS", iters)
emit("sw_z", z); emit("sw_w", w); emit("sw_zn", zn); emit("sw_scores", scores)
emit("sw_q", q); emit("sw_loss", loss.reshape(1)); emit("sw_dz", z.grad); emit("sw_dw", w.grad)

# ---- io/images/augment.h's resize: crops of a 28 x 28 image in [0, 1] resized bilinearly
# as torch.nn.functional.interpolate(align_corners=False): up, down by 2, and mixed ----
img = (torch.randint(0, 256, (28, 28), generator=gen).double() / 255.0).float().double()
BOXES = [(3, 5, 17, 20, 28), (0, 0, 28, 28, 14), (10, 2, 9, 13, 14), (4, 7, 1, 2, 5)]
define("AUG_N_BOXES", len(BOXES))
emit("aug_img", img)
outs = []
for (top, left, h, w, o) in BOXES:
    crop = img[top:top + h, left:left + w][None, None]
    outs.append(F.interpolate(crop, size=(o, o), mode="bilinear", align_corners=False).reshape(-1))
emit("aug_boxes", torch.tensor([v for b in BOXES for v in b], dtype=torch.float64))
emit("aug_out", torch.cat(outs))

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vision_golden.h")
with open(path, "w") as f:
    f.write("// vision_golden.h: generated by tests/ref/vision_ref.py, do not edit.\n")
    f.write("// torch %s, float64; inputs are float32-representable.\n" % torch.__version__)
    f.write("#ifndef CONFLUX_VISION_GOLDEN_H\n#define CONFLUX_VISION_GOLDEN_H\n\n")
    f.write("\n".join(defines) + "\n\n")
    f.write("\n".join(out_lines) + "\n\n#endif\n")
print("wrote %s" % path, file=sys.stderr)
