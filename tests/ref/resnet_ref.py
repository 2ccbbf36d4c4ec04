#!/usr/bin/python3
# resnet_ref.py: PyTorch golden values for the SwAV ResNet of models/resnet.h (used by
# tests/unit/test_resnet.c).
#
# Run from the repository root with Debian's torch (the `python3` first on PATH has none):
#     /usr/bin/python3 tests/ref/resnet_ref.py
# It rewrites tests/ref/resnet_golden.h, which is committed; CI does not need torch.
#
# The module (resnet_torch.py) has torchvision's names and SwAV's head: here a tiny model,
# 1 input channel, stages of 4 and 6 channels with 1 and 2 blocks (an identity block, a
# stride-2 block with a downsample, a block without one), head 5 -> 3, 7 prototypes, on 3
# images of 9 x 8. float64; the parameters are drawn here (float32-representable) and
# written to the header with the input, an upstream gradient dscores, and, after one
# training-mode forward and backward of loss = sum(scores * dscores): features, scores,
# every parameter's gradient, the running statistics; then an eval-mode forward's scores.
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_torch import Net, sinkhorn  # noqa: E402

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20261205)
WIDTHS, BLOCKS, HH, D, K = [4, 6], [1, 2], 5, 3, 7
B, H, W = 3, 9, 8


net = Net(WIDTHS, BLOCKS, HH, D, K)
with torch.no_grad():
    for name, p in net.named_parameters():
        shift = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0  # BN weights near 1
        p.copy_((torch.randn(p.shape, generator=gen) * 0.5 + shift).float().double())
    for name, bf in net.named_buffers():
        if name.endswith("running_mean"):
            bf.copy_((torch.randn(bf.shape, generator=gen) * 0.1).float().double())
        elif name.endswith("running_var"):
            bf.copy_((1.0 + torch.rand(bf.shape, generator=gen)).float().double())
names = [n for n, _ in net.named_parameters()]
bnames = [n for n, _ in net.named_buffers() if not n.endswith("num_batches_tracked")]
p0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
b0 = torch.cat([dict(net.named_buffers())[n].detach().reshape(-1) for n in bnames])
x = (torch.rand(B, 1, H, W, generator=gen) * 2 - 0.5).float().double()
net.train()
feat, scores = net(x)
dscores = torch.randn(scores.shape, generator=gen).float().double()
(scores * dscores).sum().backward()
grads = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
b1 = torch.cat([dict(net.named_buffers())[n].detach().reshape(-1) for n in bnames])
net.eval()
with torch.no_grad():
    _, scores_eval = net(x)

lines, defines = [], []


def emit(name, t):
    vals = t.detach().reshape(-1).tolist()
    rows = [", ".join(repr(float(v)) for v in vals[i:i + 4]) for i in range(0, len(vals), 4)]
    lines.append("static const double golden_%s[%d] = {\n    %s,\n};" % (name, len(vals), ",\n    ".join(rows)))


def table(name, ns, tensors):
    rows, off = [], 0
    for n, t in zip(ns, tensors):
        rows.append('    {"%s", %d, %d},' % (n, off, t.numel()))
        off += t.numel()
    lines.append("static const struct { const char *name; int offset, n; } golden_%s[%d] = {\n%s\n};"
                 % (name, len(ns), "\n".join(rows)))


for k, v in (("B", B), ("H", H), ("W", W), ("HH", HH), ("D", D), ("K", K), ("N_PARAMS", len(names)),
             ("N_BUFS", len(bnames))):
    defines.append("#define GOLDEN_RN_%s %d" % (k, v))
defines.append("#define GOLDEN_RN_WIDTHS {%s}" % ", ".join(map(str, WIDTHS)))
defines.append("#define GOLDEN_RN_BLOCKS {%s}" % ", ".join(map(str, BLOCKS)))
table("rn_params", names, list(net.parameters()))
table("rn_bufs", bnames, [dict(net.named_buffers())[n] for n in bnames])
emit("rn_p0", p0); emit("rn_b0", b0); emit("rn_x", x); emit("rn_dscores", dscores)
emit("rn_feat", feat); emit("rn_scores", scores); emit("rn_grads", grads); emit("rn_b1", b1)
emit("rn_scores_eval", scores_eval)
# ---- one SwAV step (models/swav.h swav_step_run): the net above with its initial parameters
# and statistics, 2 global views (9 x 8) and 2 small ones (5 x 4) of each of the 3 images,
# view-major; each resolution one forward (global first), codes by Sinkhorn per global view
# over the 3 images, SwAV's loss (temperature 0.1), its backward ----


net2 = Net(WIDTHS, BLOCKS, HH, D, K)
with torch.no_grad():
    o = 0
    for p in net2.parameters():
        p.copy_(p0[o:o + p.numel()].reshape(p.shape))
        o += p.numel()
    o = 0
    for n in bnames:
        bf = dict(net2.named_buffers())[n]
        bf.copy_(b0[o:o + bf.numel()].reshape(bf.shape))
        o += bf.numel()
net2.train()
vg = (torch.rand(2 * B, 1, H, W, generator=gen) * 2 - 0.5).float().double()
vs = (torch.rand(2 * B, 1, 5, 4, generator=gen) * 2 - 0.5).float().double()
_, sg = net2(vg)
_, ss = net2(vs)
sc = torch.cat([sg, ss])  # (V * B, K), view-major
V, A = 4, 2
q = [sinkhorn(sc[a * B:(a + 1) * B].detach()) for a in range(A)]
loss = 0.0
for a in range(A):
    sub = 0.0
    for v in range(V):
        if v != a:
            sub = sub - torch.mean(torch.sum(q[a] * F.log_softmax(sc[v * B:(v + 1) * B] / 0.1, dim=1), dim=1))
    loss = loss + sub / (V - 1)
loss = loss / A
loss.backward()
emit("sw_views_g", vg); emit("sw_views_s", vs); emit("sw_loss", loss.reshape(1))
emit("sw_grads", torch.cat([p.grad.reshape(-1) for p in net2.parameters()]))
emit("sw_b1", torch.cat([dict(net2.named_buffers())[n].detach().reshape(-1) for n in bnames]))

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet_golden.h")
with open(path, "w") as f:
    f.write("// resnet_golden.h: generated by tests/ref/resnet_ref.py, do not edit.\n")
    f.write("// torch %s, float64; parameters and inputs are float32-representable.\n" % torch.__version__)
    f.write("#ifndef CONFLUX_RESNET_GOLDEN_H\n#define CONFLUX_RESNET_GOLDEN_H\n\n")
    f.write("\n".join(defines) + "\n\n" + "\n".join(lines) + "\n\n#endif\n")
print("wrote %s: %d parameters in %d tensors" % (path, p0.numel(), len(names)), file=sys.stderr)
