#!/usr/bin/python3
"""albert_golden.py: writes the golden files the C ALBERT is tested against.

tests/ref/albert_tiny.h5 (masked LM) or, with --sop, tests/ref/albert_tiny_sop.h5 (masked LM
plus sentence-order prediction).

Run (from the repository root, with Debian's interpreter, which has torch and h5py):

    /usr/bin/python3 tests/ref/albert_golden.py            # -> tests/ref/albert_tiny.h5
    /usr/bin/python3 tests/ref/albert_golden.py --sop      # -> tests/ref/albert_tiny_sop.h5
    /usr/bin/python3 tests/ref/albert_golden.py --out X.h5 [--sop]

One file per run: without --sop the MLM golden (albert_tiny.h5), with --sop the MLM + SOP
golden (albert_tiny_sop.h5). Both runs do the whole self-check (MLM and SOP).

CI does NOT need torch: the .h5 file is committed and the C tests only read it.

What it does:
  1. Checks albert_ref.py first, in float64 on a micro config: torch.autograd.gradcheck of
     loss_sum with respect to every parameter (full head and gather_masked head), an
     independent loop-by-loop forward, and that padded tokens cannot change the loss.
     The SOP part is checked likewise on the micro config with sop=1: gradcheck of
     loss_sum + sop_scale * sop_sum (token types 0 and 1, pooler and classifier included),
     the naive forward with token types and the SOP head, a by-hand SOP cross-entropy,
     all-zero token types == no token types == forward(), and padding invariance.
     Any failure aborts before a file is written.
  2. Builds the tiny config (V=67 E=8 H=12 NH=3 I=20 L=2 P=16, batch B=3 T=10, dropout 0),
     weights from torch.manual_seed(1234): matrices and embeddings normal(0, 0.2), biases
     normal(0, 0.1), LayerNorm weights uniform(0.5, 1.5) (never 0 or 1, so every gradient
     is non-trivial; rows that no input can reach, i.e. token_type row 1 and position rows
     >= T, necessarily get zero gradient). ids uniform in [5, V); sequence lengths 10, 7, 5
     (padding at the end, pad id 0, attention_mask 0); labels -100 except round(30%) of the
     non-pad positions of each sequence (at least one; 3+2+2 = 7 here), which get random
     targets in [5, V).
     Note: d(loss)/d(attention.key.bias) is analytically zero (softmax is invariant to a
     per-query constant q.b_k), so that golden gradient is rounding noise (~1e-17): compare
     it with an absolute tolerance.
  3. Rounds the weights to float32, computes forward and backward in float64 from them,
     and stores float32.

Layout (a valid conflux checkpoint, io/store/ckpt.h, plus /golden):
  /            attrs format="conflux-checkpoint", version=1 (int32), model="albert",
               step=0 (int64), samples_seen=0 (int64), created (ISO 8601 UTC; honours
               SOURCE_DATE_EPOCH), writer="tests/ref/albert_golden.py"
  /config      scalar variable-length UTF-8 string: the [model] INI section
  /params/<name>          float32, true shape, chunked + Fletcher32 like ckpt_save writes
  /params/predictions.decoder.weight, /params/predictions.decoder.bias
                          HDF5 hard links to the tied tensors (no extra data), as in
                          io/store/ckpt.h; --no-aliases leaves them out
  /golden/input_ids, attention_mask, labels   int32 (B, T)
  /golden/loss_sum float32 (1), /golden/loss_mean float32 (1), /golden/n_selected int32 (1)
  /golden/logits   float32 (B, T, V)  (full head, every position, pads included)
  /golden/grads/<name>    float32 d(loss_sum)/d(param), for every real parameter; the word
                          embedding gradient includes the tied decoder's contribution

--sop (albert_tiny_sop.h5): the same tiny config plus sop = 1 (the /config text ends with
"sop = 1"), so /params and /golden/grads also hold albert.pooler.weight (H,H), .bias (H),
sop_classifier.classifier.weight (2,H), .bias (2) (initialised like the rest: normal(0, 0.2)
and normal(0, 0.1)). Weights again from torch.manual_seed(1234) (the extra tensors shift
the draws, so they differ from albert_tiny.h5), same batch shape and lengths, plus:
  /golden/token_type_ids  int32 (B, T): 0 up to a split point in [2, n-1] (not the same for
                          every sequence), 1 from there to the sequence end n; pads 0
                          (every sequence has type-1 tokens)
  /golden/sop_labels      int32 (B): 0 (in order) or 1 (swapped), both present
  /golden/sop_scale       float32 (1): 1.35 = 0.15 * (T - 1)
  /golden/sop_sum         float32 (1): SOP cross-entropy summed over the B sequences
  /golden/sop_logits      float32 (B, 2)
  /golden/grads/<name>    float32 d(loss_sum + sop_scale * sop_sum)/d(param), sop_scale taken
                          as its float32 value; token_type_embeddings row 1 is non-zero now
loss_sum, loss_mean, n_selected and logits are the MLM part, as in albert_tiny.h5.

--dropout P (albert_tiny_dropout.h5): the MLM golden of the same model and batch with
model.dropout = P in /config (the C test uses 0.1) and dropout on: PyTorch multiplies in the
masks conflux's counter-based RNG draws for seed DROPOUT_SEED and first sample index
DROPOUT_SAMPLE0 (cx_rng.py, a numpy reimplementation of models/rng.h, and the sites of
models/albert.c: embeddings, attention probabilities, attention output), so loss_sum and
grads/<name> are those of a conflux training step. Additionally:
  /golden/dropout_seed    int32 (1): the seed albert_step gets
  /golden/sample_index0   int32 (1): the batch's AlbertBatch.sample_index0
logits are without dropout (what albert_predict computes). Checked before writing: all-ones
masks give the dropout-free loss, the drawn masks change it, about 1 - P of the elements
are kept, and layers draw different masks.
"""
import argparse
import dataclasses
import datetime
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from albert_ref import ALIASES, LAYER_PREFIX, AlbertConfig, AlbertMLM, gelu_new  # noqa: E402
import cx_rng  # noqa: E402

try:
    from torch.func import functional_call  # torch >= 2.0
except ImportError:  # torch 1.13
    from torch.nn.utils.stateless import functional_call

TINY = AlbertConfig(vocab_size=67, embedding_size=8, hidden_size=12, num_heads=3,
                    intermediate_size=20, num_layers=2, max_position=16, dropout=0.0)
TINY_B, TINY_T, TINY_LENGTHS = 3, 10, (10, 7, 5)
MICRO = AlbertConfig(vocab_size=11, embedding_size=4, hidden_size=6, num_heads=2,
                     intermediate_size=8, num_layers=2, max_position=8, dropout=0.0)
MICRO_B, MICRO_T, MICRO_LENGTHS = 2, 5, (5, 3)
TINY_SOP = dataclasses.replace(TINY, sop=True)
MICRO_SOP = dataclasses.replace(MICRO, sop=True)
SOP_NAMES = ("albert.pooler.weight", "albert.pooler.bias",
             "sop_classifier.classifier.weight", "sop_classifier.classifier.bias")


def init_golden(model):
    """Deterministic, non-degenerate weights (call after torch.manual_seed)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight"):
                p.uniform_(0.5, 1.5)
            elif p.dim() == 1:
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.2)


def make_batch(c, B, T, lengths, frac=0.3):
    ids = torch.randint(5, c.vocab_size, (B, T))
    mask = torch.zeros(B, T, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0
        k = max(1, round(frac * n))
        pos = torch.randperm(n)[:k]
        labels[b, pos] = torch.randint(5, c.vocab_size, (k,))
    return ids, mask, labels


def make_sop_inputs(B, T, lengths):
    """token_type_ids (B, T): 0 before a random split in [2, n-1], 1 from it up to the
    sequence length n, 0 on pads (splits not all equal); sop_labels (B) in {0, 1} with
    both values present."""
    assert min(lengths) >= 3
    while True:   # redraw until the splits are not all equal (a per-sequence bug would hide)
        splits = [int(torch.randint(2, n, (1,))) for n in lengths]
        if B == 1 or len(set(splits)) > 1:
            break
    types = torch.zeros(B, T, dtype=torch.long)
    for b, (n, split) in enumerate(zip(lengths, splits)):
        types[b, split:n] = 1
    sop_labels = torch.randint(0, 2, (B,))
    if B > 1 and bool((sop_labels == sop_labels[0]).all()):
        sop_labels[-1] = 1 - sop_labels[-1]
    return types, sop_labels


def sop_scale_for(T):
    """0.15 * (T - 1) (the expected masked tokens per sequence), as the float32 value C uses."""
    return float(np.float32(0.15 * (T - 1)))


def naive_forward(sd, c, ids, mask, types=None, sop=False):
    """Independent loop-by-loop forward from the state dict (float64), for cross-checking.
    Returns the MLM logits (B, T, V); with sop=True, (logits, sop_logits (B, 2))."""
    P = lambda n: sd[n].double()
    L = lambda n: sd[LAYER_PREFIX + n].double()

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + c.layer_norm_eps) * w + b

    def lin(x, pre):
        return x @ pre("weight").t() + pre("bias")

    B, T = ids.shape
    hd = c.hidden_size // c.num_heads
    W = P("albert.embeddings.word_embeddings.weight")
    out = torch.zeros(B, T, c.vocab_size, dtype=torch.float64)
    sop_out = torch.zeros(B, 2, dtype=torch.float64)
    for b in range(B):
        TT = P("albert.embeddings.token_type_embeddings.weight")
        x = W[ids[b]] + P("albert.embeddings.position_embeddings.weight")[:T] \
            + (TT[0] if types is None else torch.stack([TT[int(t)] for t in types[b]]))
        x = ln(x, P("albert.embeddings.LayerNorm.weight"), P("albert.embeddings.LayerNorm.bias"))
        h = lin(x, lambda s: P("albert.encoder.embedding_hidden_mapping_in." + s))
        for _ in range(c.num_layers):
            q = lin(h, lambda s: L("attention.query." + s))
            k = lin(h, lambda s: L("attention.key." + s))
            v = lin(h, lambda s: L("attention.value." + s))
            ctx = torch.zeros_like(h)
            for hh in range(c.num_heads):
                sl = slice(hh * hd, (hh + 1) * hd)
                for i in range(T):
                    s = torch.tensor([float(q[i, sl] @ k[j, sl]) / math.sqrt(hd) for j in range(T)],
                                     dtype=torch.float64)
                    s[mask[b] == 0] = -math.inf
                    p = torch.exp(s - s.max())
                    p = p / p.sum()
                    ctx[i, sl] = p @ v[:, sl]
            a = ln(h + lin(ctx, lambda s: L("attention.dense." + s)),
                   L("attention.LayerNorm.weight"), L("attention.LayerNorm.bias"))
            f = lin(gelu_new(lin(a, lambda s: L("ffn." + s))), lambda s: L("ffn_output." + s))
            h = ln(f + a, L("full_layer_layer_norm.weight"), L("full_layer_layer_norm.bias"))
        z = gelu_new(lin(h, lambda s: P("predictions.dense." + s)))
        z = ln(z, P("predictions.LayerNorm.weight"), P("predictions.LayerNorm.bias"))
        out[b] = z @ W.t() + P("predictions.bias")
        if sop:
            pooled = torch.tanh(lin(h[0], lambda s: P("albert.pooler." + s)))
            sop_out[b] = lin(pooled, lambda s: P("sop_classifier.classifier." + s))
    return (out, sop_out) if sop else out


def self_check():
    """Validates albert_ref.py on the float64 micro config; raises on any failure."""
    torch.manual_seed(99)
    m = AlbertMLM(MICRO).double()
    init_golden(m)
    m.eval()
    ids, mask, labels = make_batch(MICRO, MICRO_B, MICRO_T, MICRO_LENGTHS, frac=0.5)
    names = [n for n, _ in m.named_parameters()]
    assert names == list(m.state_dict().keys()), "parameters and state_dict disagree"
    base = {n: p.detach().clone() for n, p in m.named_parameters()}

    for gather in (False, True):
        def f(*ps):
            loss, _, _ = functional_call(m, dict(zip(names, ps)), (ids, mask, labels),
                                         {"gather_masked": gather})
            return loss
        inputs = tuple(base[n].clone().requires_grad_(True) for n in names)
        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5), \
            f"gradcheck failed (gather_masked={gather})"

    # the full and gathered heads give the same loss and the same gradients
    res = []
    for gather in (False, True):
        m.zero_grad()
        loss, n, logits = m(ids, mask, labels, gather_masked=gather)
        loss.backward()
        res.append((loss.item(), n, {k: p.grad.clone() for k, p in m.named_parameters()}, logits))
    assert res[0][1] == res[1][1] == int((labels != -100).sum())
    assert abs(res[0][0] - res[1][0]) < 1e-12
    for k in names:
        assert torch.allclose(res[0][2][k], res[1][2][k], atol=1e-12, rtol=1e-10), k
    sel = (labels != -100).reshape(-1)
    assert torch.allclose(res[0][3].reshape(-1, MICRO.vocab_size)[sel], res[1][3], atol=1e-12)

    # independent loop-by-loop forward agrees
    ref = naive_forward(m.state_dict(), MICRO, ids, mask)
    with torch.no_grad():
        _, _, logits = m(ids, mask, labels)
    err = (ref - logits).abs().max().item()
    assert err < 1e-10, f"naive forward differs by {err}"

    # padded tokens cannot affect the loss (they are masked keys and carry no label)
    ids2 = ids.clone()
    ids2[mask == 0] = 3
    with torch.no_grad():
        l1, _, _ = m(ids, mask, labels)
        l2, _, _ = m(ids2, mask, labels)
    assert abs(l1.item() - l2.item()) < 1e-12, "padding leaks into the loss"
    # ...but they would without the mask
    with torch.no_grad():
        l3, _, _ = m(ids2, torch.ones_like(mask), labels)
    assert abs(l1.item() - l3.item()) > 1e-6
    print("albert_golden: self-check passed (gradcheck full + gathered head, naive forward "
          f"max |diff| {err:.1e}, padding invariance)", file=sys.stderr)


def self_check_sop():
    """Validates the SOP part of albert_ref.py on the float64 micro config; raises on failure."""
    assert "sop" not in MICRO.ini() and MICRO_SOP.ini().endswith("\nsop = 1\n")
    assert not any(n in AlbertMLM(MICRO).state_dict() for n in SOP_NAMES), "sop=0 has SOP params"
    torch.manual_seed(98)
    m = AlbertMLM(MICRO_SOP).double()
    init_golden(m)
    m.eval()
    ids, mask, labels = make_batch(MICRO_SOP, MICRO_B, MICRO_T, MICRO_LENGTHS, frac=0.5)
    types, sop_labels = make_sop_inputs(MICRO_B, MICRO_T, MICRO_LENGTHS)
    scale = sop_scale_for(MICRO_T)
    names = [n for n, _ in m.named_parameters()]
    assert names == list(m.state_dict().keys()), "parameters and state_dict disagree"
    # Hugging Face AlbertForPreTraining order: pooler after the encoder, SOP head last
    mlm_names = list(AlbertMLM(MICRO).state_dict().keys())
    i = mlm_names.index("predictions.bias")
    assert names == mlm_names[:i] + list(SOP_NAMES[:2]) + mlm_names[i:] + list(SOP_NAMES[2:]), names
    assert tuple(m.state_dict()["sop_classifier.classifier.weight"].shape) == (2, MICRO.hidden_size)
    assert int(types.sum()) > 0 and set(sop_labels.tolist()) == {0, 1}
    base = {n: p.detach().clone() for n, p in m.named_parameters()}

    wrap = _Objective(m)
    for gather in (False, True):
        def f(*ps):
            return functional_call(wrap, {"m." + n: p for n, p in zip(names, ps)},
                                   (ids, mask, labels, types, sop_labels, scale, gather))
        inputs = tuple(base[n].clone().requires_grad_(True) for n in names)
        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5), \
            f"SOP gradcheck failed (gather_masked={gather})"

    # every SOP-specific gradient is non-zero, token type row 1 included
    m.zero_grad()
    m.pretraining_objective(ids, mask, labels, types, sop_labels, scale).backward()
    gr = {k: p.grad.clone() for k, p in m.named_parameters()}
    for k in SOP_NAMES:
        assert gr[k].abs().min().item() > 0, k + " has a zero gradient entry"
    assert gr["albert.embeddings.token_type_embeddings.weight"][1].abs().min().item() > 0

    with torch.no_grad():
        loss, n, sop_sum, logits, sop_logits = m.forward_pretraining(
            ids, mask, labels, types, sop_labels, return_logits=True)
        # by-hand SOP cross-entropy
        lp = torch.log_softmax(sop_logits, dim=-1)
        hand = -sum(lp[b, int(sop_labels[b])] for b in range(MICRO_B))
        assert abs(hand.item() - sop_sum.item()) < 1e-12
        assert n == int((labels != -100).sum())
        # independent loop-by-loop forward with token types and SOP head
        ref, ref_sop = naive_forward(m.state_dict(), MICRO_SOP, ids, mask, types, sop=True)
        err = max((ref - logits).abs().max().item(), (ref_sop - sop_logits).abs().max().item())
        assert err < 1e-10, f"naive SOP forward differs by {err}"
        # token types all 0 == no token types == the MLM-only forward()
        l0, _, s0 = m.forward_pretraining(ids, mask, labels, torch.zeros_like(types), sop_labels)
        l1, _, s1 = m.forward_pretraining(ids, mask, labels, None, sop_labels)
        l2, _, _ = m(ids, mask, labels)
        assert abs(l0.item() - l1.item()) < 1e-12 and abs(s0.item() - s1.item()) < 1e-12
        assert abs(l0.item() - l2.item()) < 1e-12
        assert abs(l0.item() - loss.item()) > 1e-6 and abs(s0.item() - sop_sum.item()) > 1e-6, \
            "token types have no effect"
        # padded tokens (ids and types) cannot affect either loss
        ids2, types2 = ids.clone(), types.clone()
        ids2[mask == 0] = 3
        types2[mask == 0] = 1
        l3, _, s3 = m.forward_pretraining(ids2, mask, labels, types2, sop_labels)
        assert abs(l3.item() - loss.item()) < 1e-12 and abs(s3.item() - sop_sum.item()) < 1e-12, \
            "padding leaks into the SOP objective"
    print("albert_golden: SOP self-check passed (gradcheck full + gathered head, naive forward "
          f"max |diff| {err:.1e}, by-hand SOP loss, padding invariance)", file=sys.stderr)


class _Objective(torch.nn.Module):
    """forward() = m.pretraining_objective(), so that functional_call can reach it."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids, mask, labels, types, sop_labels, scale, gather):
        return self.m.pretraining_objective(ids, mask, labels, types, sop_labels, scale, gather)


def created_iso():
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    t = (datetime.datetime.fromtimestamp(int(sde), datetime.timezone.utc) if sde
         else datetime.datetime.now(datetime.timezone.utc))
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --dropout: the dropout run's seed and the global index of the batch's first sample
# (non-zero, so that the masks' counter offsets are exercised)
DROPOUT_SEED, DROPOUT_SAMPLE0 = 424242, 5


def dropout_masks_for(cfg, B, T):
    """conflux's masks for the golden batch (cx_rng.py), after a few sanity checks."""
    masks = cx_rng.albert_dropout_masks(cfg, B, T, DROPOUT_SEED, DROPOUT_SAMPLE0, cfg.dropout)
    flat = np.concatenate([masks["emb"].ravel()] + [x.ravel() for x in masks["att"] + masks["out"]])
    kept = float((flat > 0).mean())
    assert abs(kept - (1.0 - cfg.dropout)) < 0.02, kept
    # the sites and layers draw different masks
    assert not np.array_equal(masks["att"][0], masks["att"][1])
    assert not np.array_equal(masks["out"][0], masks["out"][1])
    return masks


def write_golden(path, aliases=True, sop=False, dropout=0.0):
    import h5py

    cfg = TINY_SOP if sop else TINY
    if dropout > 0:
        assert not sop
        cfg = dataclasses.replace(cfg, dropout=dropout)
    torch.manual_seed(1234)
    m = AlbertMLM(cfg)
    m = m.double()
    init_golden(m)
    with torch.no_grad():   # round to float32 first: the golden values are exactly the
        for p in m.parameters():   # float64 result for the float32 weights that are stored
            p.copy_(p.float().double())
    m.eval()
    ids, mask, labels = make_batch(cfg, TINY_B, TINY_T, TINY_LENGTHS, frac=0.3)

    masks = dropout_masks_for(cfg, TINY_B, TINY_T) if dropout > 0 else None
    if not sop:
        loss, n_sel, logits = m(ids, mask, labels, dropout_masks=masks)
        m.zero_grad()
        loss.backward()
        grads = {k: p.grad.detach().clone() for k, p in m.named_parameters()}
        # cross-check the tiny model too: gathered head and naive forward
        m.zero_grad()
        loss_g, n_g, _ = m(ids, mask, labels, gather_masked=True, dropout_masks=masks)
        loss_g.backward()
        assert n_g == n_sel and abs(loss_g.item() - loss.item()) < 1e-10
        for k, p in m.named_parameters():
            assert torch.allclose(p.grad, grads[k], atol=1e-12, rtol=1e-9), k
        if masks is not None:
            # all-ones masks are the model without dropout; the drawn ones change the loss
            ones = {"emb": np.ones_like(masks["emb"]), "att": [np.ones_like(x) for x in masks["att"]],
                    "out": [np.ones_like(x) for x in masks["out"]]}
            loss0, _, logits = m(ids, mask, labels)      # stored logits: without dropout
            assert abs(m(ids, mask, labels, dropout_masks=ones)[0].item() - loss0.item()) < 1e-12
            assert abs(loss0.item() - loss.item()) > 1e-3 * abs(loss0.item())
        naive = naive_forward(m.state_dict(), TINY, ids, mask)
        assert (naive - logits.detach()).abs().max().item() < 1e-10
    else:
        types, sop_labels = make_sop_inputs(TINY_B, TINY_T, TINY_LENGTHS)
        sop_scale = sop_scale_for(TINY_T)
        loss, n_sel, sop_sum, logits, sop_logits = m.forward_pretraining(
            ids, mask, labels, types, sop_labels, return_logits=True)
        m.zero_grad()
        (loss + sop_scale * sop_sum).backward()
        grads = {k: p.grad.detach().clone() for k, p in m.named_parameters()}
        # cross-checks: gathered head, naive forward, every SOP gradient entry non-zero
        m.zero_grad()
        m.pretraining_objective(ids, mask, labels, types, sop_labels, sop_scale,
                                gather_masked=True).backward()
        for k, p in m.named_parameters():
            assert torch.allclose(p.grad, grads[k], atol=1e-12, rtol=1e-9), k
        naive, naive_sop = naive_forward(m.state_dict(), cfg, ids, mask, types, sop=True)
        assert (naive - logits.detach()).abs().max().item() < 1e-10
        assert (naive_sop - sop_logits.detach()).abs().max().item() < 1e-10
        for k in SOP_NAMES:
            assert grads[k].abs().min().item() > 0, k
        assert grads["albert.embeddings.token_type_embeddings.weight"][1].abs().min().item() > 0
        assert set(sop_labels.tolist()) == {0, 1}

    sd = m.state_dict()
    f32 = lambda t: t.detach().to(torch.float32).numpy()
    tmp = path + ".tmp.%d" % os.getpid()
    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = "conflux-checkpoint"
        h.attrs["version"] = np.int32(1)
        h.attrs["model"] = "albert"
        h.attrs["step"] = np.int64(0)
        h.attrs["samples_seen"] = np.int64(0)
        h.attrs["created"] = created_iso()
        h.attrs["writer"] = "tests/ref/albert_golden.py"
        h.create_dataset("config", data=cfg.ini(), dtype=h5py.string_dtype("utf-8"))
        pg = h.create_group("params")
        for name, t in sd.items():
            a = f32(t)
            pg.create_dataset(name, data=a, chunks=a.shape, fletcher32=True)
        if aliases:
            for alias, target in ALIASES.items():
                pg[alias] = pg[target]          # hard link
        g = h.create_group("golden")
        i32 = lambda t: t.to(torch.int32).numpy()
        g.create_dataset("input_ids", data=i32(ids))
        g.create_dataset("attention_mask", data=i32(mask))
        g.create_dataset("labels", data=i32(labels))
        g.create_dataset("loss_sum", data=np.array([loss.item()], dtype=np.float32))
        g.create_dataset("loss_mean", data=np.array([loss.item() / n_sel], dtype=np.float32))
        g.create_dataset("n_selected", data=np.array([n_sel], dtype=np.int32))
        g.create_dataset("logits", data=f32(logits))
        if masks is not None:
            g.create_dataset("dropout_seed", data=np.array([DROPOUT_SEED], dtype=np.int32))
            g.create_dataset("sample_index0", data=np.array([DROPOUT_SAMPLE0], dtype=np.int32))
        if sop:
            g.create_dataset("token_type_ids", data=i32(types))
            g.create_dataset("sop_labels", data=i32(sop_labels))
            g.create_dataset("sop_scale", data=np.array([sop_scale], dtype=np.float32))
            g.create_dataset("sop_sum", data=np.array([sop_sum.item()], dtype=np.float32))
            g.create_dataset("sop_logits", data=f32(sop_logits))
        gg = g.create_group("grads")
        for name in sd:
            gg.create_dataset(name, data=f32(grads[name]))
    os.replace(tmp, path)

    print(f"albert_golden: wrote {path} ({os.path.getsize(path)} bytes): loss_sum={loss.item():.6f} "
          f"n_selected={n_sel} loss_mean={loss.item() / n_sel:.6f}"
          + (f" sop_sum={sop_sum.item():.6f} sop_scale={sop_scale:.8g} "
             f"sop_labels={sop_labels.tolist()}" if sop else ""), file=sys.stderr)
    for name, t in sd.items():
        gn = grads[name].abs().max().item()
        print(f"  {name:72s} {str(tuple(t.shape)):10s} max|grad| {gn:.3e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None,
                    help="output file (default tests/ref/albert_tiny.h5; with --sop "
                         "tests/ref/albert_tiny_sop.h5)")
    ap.add_argument("--sop", action="store_true",
                    help="write the MLM + sentence-order prediction golden (sop = 1) instead")
    ap.add_argument("--no-aliases", action="store_true",
                    help="do not add the predictions.decoder.* hard links under /params")
    ap.add_argument("--dropout", type=float, default=0.0,
                    help="write albert_tiny_dropout.h5 instead: the MLM golden with this dropout "
                         "rate and conflux's masks (cx_rng.py; seed and first sample index in "
                         "/golden/dropout_seed, /golden/sample_index0)")
    ap.add_argument("--skip-check", action="store_true", help="skip the float64 self-check")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.out is None:
        args.out = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "albert_tiny_sop.h5" if args.sop else
                                "albert_tiny_dropout.h5" if args.dropout > 0 else "albert_tiny.h5")
    if args.sop and args.dropout > 0:
        ap.error("--dropout writes the MLM golden only")
    if not args.skip_check:
        self_check()
        self_check_sop()
    write_golden(args.out, aliases=not args.no_aliases, sop=args.sop, dropout=args.dropout)


if __name__ == "__main__":
    main()
