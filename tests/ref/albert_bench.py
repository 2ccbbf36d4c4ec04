#!/usr/bin/python3
"""albert_bench.py: PyTorch side of the ALBERT training-throughput benchmark (make bench).

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tests/ref/albert_bench.py \
        --threads 2 --warmup 3 --steps 10 --gather-masked 1

Model: albert_ref.AlbertMLM with L=4 H=256 E=128 NH=4 I=1024 V=8192 P=512, fp32,
dropout 0.0 (not ALBERT's 0.1: the C side runs without dropout too), Hugging Face init.
Batch: B=4 sequences of T=256 random ids in [5, V), no padding (attention mask all 1),
15% of positions (rounded, chosen at random per sequence) carry a random label, the rest
-100. Optimizer: torch.optim.AdamW(lr=1e-4, weight_decay=0.01, betas (0.9, 0.999),
eps 1e-8); biases and LayerNorm weights are excluded from weight decay, as in the C
trainer (TensorSpec.no_decay). A timed step is zero_grad, forward (loss = sum of the
selected tokens' cross-entropy / count), backward, optimizer step.

--gather-masked 1 runs the MLM head only on labelled rows (15% of the tokens).
--threads N calls torch.set_num_threads(N) and openblas_set_num_threads(N). Set
OMP_WAIT_POLICY=PASSIVE in the environment (spinning OpenMP threads fight OpenBLAS's
threads for the cores; PyTorch runs ~2x slower without it on 2 cores). OPENBLAS_CORETYPE
is left as the environment has it and reported on stderr; quote it with every figure.

stderr: torch version, parallel info, the BLAS library actually loaded, its OpenBLAS
config/core/threads, per-step times. stdout: ONE line after the timed steps,
    pytorch_tok_s=X step_ms=Y
with tokens = B*T per step and Y the median step time in milliseconds.
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from albert_ref import AlbertConfig, AlbertMLM  # noqa: E402

BENCH = AlbertConfig(vocab_size=8192, embedding_size=128, hidden_size=256, num_heads=4,
                     intermediate_size=1024, num_layers=4, max_position=512, dropout=0.0)
B, T, MASK_FRAC = 4, 256, 0.15


def loaded_blas():
    """Path of the BLAS shared objects mapped into this process."""
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if ("blas" in p or "mkl" in p) and p.startswith("/") and p not in libs:
                libs.append(p)
    return libs


def openblas_handle(libs):
    for p in libs:
        try:
            h = ctypes.CDLL(p)
            h.openblas_get_config
            return h
        except (OSError, AttributeError):
            continue
    return None


def make_batches(n, gen):
    out = []
    k = round(MASK_FRAC * T)
    for _ in range(n):
        ids = torch.randint(5, BENCH.vocab_size, (B, T), generator=gen)
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b in range(B):
            pos = torch.randperm(T, generator=gen)[:k]
            labels[b, pos] = torch.randint(5, BENCH.vocab_size, (k,), generator=gen)
        out.append((ids, torch.ones(B, T, dtype=torch.long), labels))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gather-masked", type=int, choices=(0, 1), default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--threads and --steps must be >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    libs = loaded_blas()
    ob = openblas_handle(libs)
    if ob is not None:
        ob.openblas_set_num_threads(args.threads)
    err = sys.stderr
    print(f"albert_bench: torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}", file=err)
    print(torch.__config__.parallel_info().rstrip(), file=err)
    print("BLAS loaded: " + (", ".join(libs) if libs else "(none found)"), file=err)
    if ob is not None:
        ob.openblas_get_config.restype = ctypes.c_char_p
        ob.openblas_get_corename.restype = ctypes.c_char_p
        print(f"OpenBLAS: {ob.openblas_get_config().decode()}; core {ob.openblas_get_corename().decode()}; "
              f"threads {ob.openblas_get_num_threads()}; parallel {ob.openblas_get_parallel()} "
              "(0 sequential, 1 pthreads, 2 OpenMP)", file=err)

    torch.manual_seed(args.seed)
    model = AlbertMLM(BENCH)
    model.init_hf()
    model.train()
    nparams = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = make_batches(4, gen)
    print(f"config: L={BENCH.num_layers} H={BENCH.hidden_size} E={BENCH.embedding_size} "
          f"NH={BENCH.num_heads} I={BENCH.intermediate_size} V={BENCH.vocab_size} T={T} B={B} "
          f"P={BENCH.max_position} params={nparams} dropout=0.0 fp32 "
          f"gather_masked={args.gather_masked} AdamW(lr=1e-4, wd=0.01)", file=err)

    times = []
    for i in range(args.warmup + args.steps):
        ids, mask, labels = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_sum, n, _ = model(ids, mask, labels, gather_masked=bool(args.gather_masked))
        loss = loss_sum / n
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        tag = "warmup" if i < args.warmup else "step"
        print(f"  {tag} {i:3d}: {dt * 1e3:8.1f} ms  loss {loss.item():.4f}", file=err)
        if i >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    print(f"pytorch_tok_s={B * T / med:.1f} step_ms={med * 1e3:.1f}")


if __name__ == "__main__":
    main()
