# resnet_torch.py: the SwAV ResNet of models/resnet.h in plain torch, with torchvision's
# names (conv1, bn1, layerS.B.conv1/bn1/conv2/bn2/downsample.0/.1) and SwAV's head
# (projection_head.0/.1/.3, prototypes), and SwAV's Sinkhorn. A module, imported by
# resnet_ref.py, vision_ref.py (goldens) and swav_bench.py (make bench-swav).
import torch
import torch.nn as nn
import torch.nn.functional as F


@torch.no_grad()
def sinkhorn(out, eps=0.05, iters=3):
    """SwAV's codes (facebookresearch/swav main_swav.py, one process): out (B, K) scores."""
    Q = torch.exp(out / eps).t()
    B, K = Q.shape[1], Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(iters):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    return (Q * B).t()


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Net(nn.Module):
    def __init__(self, widths, blocks, head_hidden, out_dim, prototypes, in_channels=1):
        super().__init__()
        self.n_stages = len(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        c = widths[0]
        for s, (w, nb) in enumerate(zip(widths, blocks)):
            layer = []
            for k in range(nb):
                layer.append(BasicBlock(c, w, 2 if s > 0 and k == 0 else 1))
                c = w
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*layer))
        self.projection_head = nn.Sequential(nn.Linear(c, head_hidden), nn.BatchNorm1d(head_hidden),
                                             nn.ReLU(), nn.Linear(head_hidden, out_dim))
        self.prototypes = nn.Linear(out_dim, prototypes, bias=False)

    def features(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for s in range(self.n_stages):
            x = getattr(self, "layer%d" % (s + 1))(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x):
        f = self.features(x)
        return f, self.prototypes(F.normalize(self.projection_head(f), dim=1))
