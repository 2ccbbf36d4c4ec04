#!/usr/bin/python3
# swav_bench.py: the PyTorch side of make bench-swav: the same network (resnet_torch.py with
# conflux-swav's defaults), the same step (256 images in micro-batches of 64, 2 global views
# of 28 x 28 and 4 small ones of 14 x 14 of random normal pixels, Sinkhorn over each
# micro-batch's global views, SwAV's loss, backward, LARC + SGD), float32 on the CPU.
# Prints "pytorch_img_s=... step_ms=...". Run with OMP_WAIT_POLICY=PASSIVE.
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet_torch import Net, sinkhorn  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--steps", type=int, default=5)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
G, MB, NG, NS = 256, 64, 2, 4
net = Net([32, 64, 128], [1, 1, 1], 256, 64, 100)
opt = torch.optim.SGD(net.parameters(), lr=0.6, momentum=0.9)
vg = torch.randn(NG * MB, 1, 28, 28)
vs = torch.randn(NS * MB, 1, 14, 14)




def micro_step():
    _, sg = net(vg)
    _, ss = net(vs)
    sc = torch.cat([sg, ss])
    V = NG + NS
    loss = 0.0
    for a_ in range(NG):
        q = sinkhorn(sc[a_ * MB:(a_ + 1) * MB].detach())
        sub = 0.0
        for v in range(V):
            if v != a_:
                sub = sub - torch.mean(torch.sum(q * F.log_softmax(sc[v * MB:(v + 1) * MB] / 0.1, dim=1), dim=1))
        loss = loss + sub / (V - 1)
    (loss / NG).backward()


def lars_step():
    with torch.no_grad():
        for p in net.parameters():
            pn, gn = torch.norm(p), torch.norm(p.grad)
            if pn != 0 and gn != 0:
                alr = 0.001 * pn / (gn + pn * 1e-6 + 1e-8)
                p.grad += 1e-6 * p
                p.grad *= alr
    opt.step()


for k in range(a.warmup + a.steps):
    if k == a.warmup:
        t0 = time.perf_counter()
    opt.zero_grad()
    for _ in range(G // MB):
        micro_step()
    lars_step()
dt = time.perf_counter() - t0
print("pytorch_img_s=%.1f step_ms=%.1f" % (G * a.steps / dt, 1e3 * dt / a.steps))
