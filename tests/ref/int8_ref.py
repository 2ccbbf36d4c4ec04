#!/usr/bin/python3
# int8_ref.py: an independent reference for the blockwise absmax int8 codec of models/codec.h
# (CODEC_INT8), used by tests/unit/test_codec.c.
#
# Run from the repository root with Debian's numpy and torch (the `python3` first on PATH
# has neither):
#     /usr/bin/python3 tests/ref/int8_ref.py
# It rewrites tests/ref/int8_golden.h, which is committed; CI does not need Python.
#
# The codec, as documented in models/codec.h and re-implemented here from that text:
#   blocks of 128 consecutive elements (the last may be shorter);
#   scale = float32(absmax(block)) / float32(127)            (IEEE float32 division)
#   if 0 < scale < inf: q = clamp(round_half_away(float32(v / scale)), -127, 127)
#   else:               q = 0
#   encoding = [nb little-endian float32 scales][n int8 values], nb = ceil(n / 128)
#   decoded  = float32(q) * scale                              (IEEE float32 multiply)
# numpy computes it (the rounding in float64, where floor(|r| + 0.5) is exact for a float32
# r); torch computes it a second way (per-block amax on a padded (nb, 128) view, torch.trunc
# and an explicit comparison of the fraction), and the script stops unless both agree bit for
# bit. The vectors are finite (non-finite inputs are tested in C against the documented
# rule); they include a short last block, a zero block, exact halfway cases (a block whose
# absmax is 127, so scale = 1), huge (1e30) and tiny (1e-30) blocks, blocks whose scale is a
# float32 subnormal, and one whose absmax / 127 underflows to 0.
import os
import struct
import sys

import numpy as np
import torch

BLOCK = 127 + 1
f32 = np.float32
rng = np.random.default_rng(20240917)


def ref_numpy(x):
    """x: float32 array -> (encoded bytes, decoded float32 array)"""
    n = len(x)
    nb = (n + BLOCK - 1) // BLOCK
    scales = np.zeros(nb, dtype=f32)
    q = np.zeros(n, dtype=np.int8)
    dec = np.zeros(n, dtype=f32)
    with np.errstate(over="ignore", under="ignore"):
        for b in range(nb):
            blk = x[b * BLOCK:(b + 1) * BLOCK]
            amax = f32(np.max(np.abs(blk)))
            s = f32(amax / f32(127.0))
            scales[b] = s
            if 0.0 < s < np.inf:
                r = (blk / s).astype(f32).astype(np.float64)
                qi = np.sign(r) * np.floor(np.abs(r) + 0.5)
                qi = np.clip(qi, -127, 127).astype(np.int8)
            else:
                qi = np.zeros(len(blk), dtype=np.int8)
            q[b * BLOCK:(b + 1) * BLOCK] = qi
            dec[b * BLOCK:(b + 1) * BLOCK] = qi.astype(f32) * s
    enc = scales.astype("<f4").tobytes() + q.tobytes()
    return enc, dec


def ref_torch(x):
    t = torch.from_numpy(x.copy())
    n = t.numel()
    nb = (n + BLOCK - 1) // BLOCK
    pad = torch.zeros(nb * BLOCK, dtype=torch.float32)
    pad[:n] = t
    blocks = pad.view(nb, BLOCK)
    s = blocks.abs().amax(dim=1) / torch.tensor(127.0, dtype=torch.float32)  # (nb,)
    ok = (s > 0) & torch.isfinite(s)
    safe = torch.where(ok, s, torch.ones_like(s))
    r = blocks / safe[:, None]
    tr = torch.trunc(r)
    frac = r - tr
    qi = tr + (frac >= 0.5).float() - (frac <= -0.5).float()
    qi = qi.clamp(-127, 127)
    qi = torch.where(ok[:, None], qi, torch.zeros_like(qi)).to(torch.int8)
    dec = (qi.float() * s[:, None]).reshape(-1)[:n]
    enc = s.numpy().astype("<f4").tobytes() + qi.reshape(-1)[:n].numpy().tobytes()
    return enc, dec.numpy()


def vec(*parts):
    return np.concatenate([np.asarray(p, dtype=f32) for p in parts]).astype(f32)


def randn(n, scale):
    return (rng.standard_normal(n) * scale).astype(f32)


# exact halfway cases: absmax 127 gives scale 1, so k + 0.5 is a tie
ties = np.array([127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, 0.49999997,
                 -0.49999997, 0.50000006, 3.0, -127.0], dtype=f32)
ties = vec(ties, randn(BLOCK - len(ties), 30.0))
tiny_sub = randn(BLOCK, 1e-38)               # scale around 1e-40: a float32 subnormal
underflow = np.zeros(BLOCK, dtype=f32)        # absmax = 63 * 2^-149: absmax / 127 -> 0
underflow[::3] = f32(63 * 2.0 ** -149)
underflow[1::3] = -f32(17 * 2.0 ** -149)
mixed = randn(BLOCK, 1e-3)
mixed[77] = f32(1e3)                          # one outlier: the rest quantise to 0
cases = [
    ("short", randn(300, 0.01)),              # 2 full blocks + 44
    ("zero_block", vec(randn(BLOCK, 1.0), np.zeros(BLOCK), randn(50, 1e-3))),
    ("ties", ties),
    ("magnitudes", vec(randn(BLOCK, 1e30), randn(BLOCK, 1e-30), tiny_sub, underflow, mixed,
                       randn(7, 3e-5))),
    ("one", vec([-0.75])),
    ("b127", randn(127, 2.0)),
    ("b129", randn(129, 0.5)),
]

for name, x in cases:
    e1, d1 = ref_numpy(x)
    e2, d2 = ref_torch(x)
    if e1 != e2 or d1.tobytes() != d2.tobytes():
        sys.exit("int8_ref.py: numpy and torch disagree on case %s" % name)
    nb = (len(x) + BLOCK - 1) // BLOCK
    assert len(e1) == 4 * nb + len(x)

# sanity of the rule itself on the ties block: scale 1, halfway cases away from zero
e, d = ref_numpy(cases[2][1])
assert struct.unpack("<f", e[:4])[0] == 1.0
assert list(np.frombuffer(e[4:18], dtype=np.int8)) == [127, 1, -1, 2, -2, 3, -3, 127, -127,
                                                      0, 0, 1, 3, -127]


def hexf(v):
    v = float(v)
    if v == 0.0:
        return "-0.0f" if np.signbit(v) else "0.0f"
    m, e = v.hex().split("p")  # C99 hexadecimal literal, exact; trailing zero digits cut
    return m.rstrip("0").rstrip(".") + "p" + e + "f"


lines = []
table = []
for name, x in cases:
    enc, dec = ref_numpy(x)
    n = len(x)
    for arr, ctype, items, per in (
            ("in", "float", [hexf(v) for v in x], 4),
            ("enc", "uint8_t", ["0x%02x" % b for b in enc], 12),
            ("dec", "float", [hexf(v) for v in dec], 4)):
        rows = [", ".join(items[i:i + per]) for i in range(0, len(items), per)]
        lines.append("static const %s golden_int8_%s_%s[%d] = {\n    %s,\n};"
                     % (ctype, name, arr, len(items), ",\n    ".join(rows)))
    table.append('    {"%s", %d, golden_int8_%s_in, golden_int8_%s_enc, golden_int8_%s_dec},'
                 % (name, n, name, name, name))

here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "int8_golden.h")
with open(path, "w") as f:
    f.write("// int8_golden.h: generated by tests/ref/int8_ref.py, do not edit.\n")
    f.write("// numpy %s, torch %s agree bit for bit. Per case: n inputs, the encoding\n"
            "// (4 * ceil(n / 128) + n bytes) and the decoded values.\n"
            % (np.__version__, torch.__version__))
    f.write("#ifndef CONFLUX_INT8_GOLDEN_H\n#define CONFLUX_INT8_GOLDEN_H\n\n")
    f.write("#include <stddef.h>\n#include <stdint.h>\n\n")
    f.write("\n".join(lines) + "\n\n")
    f.write("typedef struct {\n    const char *name;\n    size_t n;\n    const float *in;\n"
            "    const uint8_t *enc;\n    const float *dec;\n} Int8Golden;\n\n")
    f.write("static const Int8Golden golden_int8[] = {\n%s\n};\n\n#endif\n" % "\n".join(table))
print("wrote %s" % os.path.relpath(path), file=sys.stderr)
