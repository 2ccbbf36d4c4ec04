#!/usr/bin/python3
"""encdec_golden.py: writes tests/ref/encdec_tiny.h5, the golden file the C encoder-decoder
(models/encdec.c) is tested against.

Run (from the repository root, with Debian's interpreter, which has torch and h5py):

    /usr/bin/python3 tests/ref/encdec_golden.py [--out X.h5] [--skip-check]

    /usr/bin/python3 tests/ref/encdec_golden.py --copy     # tests/ref/encdec_copy_tiny.h5

CI does NOT need torch: the .h5 files are committed and the C test only reads them.

With --copy: the same for the pointer-generator model (encdec_ref.py, "Copy mechanism"):
the self-check runs gradcheck on the micro config with copy=1, checks that the last layer
run from its submodules equals torch's TransformerDecoderLayer, that out_proj of the
context before out_proj is the attention output, that every row of P sums to 1, the loss
by hand from log P, that a gate forced open gives log_softmax(logits), padding and
causality; the golden file is the tiny config with copy=1 (/golden/logits holds log P),
plus /golden/copy = 1.

What it does:
  1. Checks encdec_ref.py first, in float64 on a micro config (V=13 E=4 H=6 encoder 2 heads,
     decoder 3 heads, I=8/7, 2+2 layers, B=2 Ts=5 Tt=4, label smoothing 0.1):
     torch.autograd.gradcheck of loss_sum with respect to every parameter; an independent
     loop-by-loop forward written from the conflux-named state dict (checks the name
     mapping and that nn.TransformerDecoderLayer is the post-LN layer encdec.h describes);
     the encoder equals albert_ref.AlbertMLM.encode with the same weights; the loss equals
     a by-hand label-smoothed cross-entropy; source padding cannot change the loss;
     changing target token j changes no logits at positions <= j (causality).
     Any failure aborts before a file is written.
  2. Builds the tiny config (V=300 E=16 H=32, encoder 2 heads I=48 L=2 P=16; decoder 2
     layers, 4 heads, I=40, P=10; label smoothing 0.1), weights from torch.manual_seed(4321):
     matrices and embeddings normal(0, 0.2), biases normal(0, 0.1), LayerNorm weights
     uniform(0.5, 1.5), rounded to float32. Batch B=2: sources of 12 and 8 tokens
     ([CLS] ids [SEP], ids uniform in [5, V), then PAD) in Ts=12; targets of 7 and 4 tokens
     (ids in [5, V), the last one [SEP] = EOS, then PAD) in Tt=7.
  3. Computes loss, logits and every gradient in float64 from the float32 weights and
     stores them as float32.

Layout (a valid conflux checkpoint, io/store/ckpt.h, plus /golden):
  /            attrs format="conflux-checkpoint", version=1, model="encdec", step=0,
               samples_seen=0, created (ISO 8601 UTC; honours SOURCE_DATE_EPOCH),
               writer="tests/ref/encdec_golden.py"
  /config      the configuration as INI text ([model] = encoder, [decoder])
  /params/<name>   float32, true shape, chunked + Fletcher32, conflux names and order
  /params/decoder.embed_tokens.weight, /params/lm_head.decoder.weight
                   hard links to albert.embeddings.word_embeddings.weight (tied)
  /golden/dims     int32 (11): V E H NH I L P dec_layers dec_heads dec_I dec_P
  /golden/label_smoothing float32 (1)
  /golden/src, src_mask int32 (B, Ts); /golden/tgt int32 (B, Tt)
  /golden/loss_sum float32 (1), /golden/n_tokens int32 (1)
  /golden/logits   float32 (B, Tt, V)  teacher-forced, every position
  /golden/grads/<name> float32 d(loss_sum)/d(param) for every parameter (the word
                   embedding gradient holds the encoder, decoder-input and output-layer parts)
Note: d/d(encoder attention.key.bias) and d/d(k_proj.bias) of both decoder attentions are
analytically zero (a per-query constant in the scores cancels in the softmax); token type
row 1 and position rows beyond the sequence lengths are zero too.
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
from encdec_ref import BOS, EOS, PAD, ENC_LAYER, EncDecConfig, EncDecRef, gelu_tanh  # noqa: E402

try:
    from torch.func import functional_call  # torch >= 2.0
except ImportError:  # torch 1.13
    from torch.nn.utils.stateless import functional_call

TINY = EncDecConfig(vocab_size=300, embedding_size=16, hidden_size=32, num_heads=2,
                    intermediate_size=48, num_layers=2, max_position=16, dec_layers=2,
                    dec_heads=4, dec_intermediate=40, dec_max_position=10, label_smoothing=0.1)
TINY_B, TINY_TS, TINY_TT, TINY_SRC_LEN, TINY_TGT_LEN = 2, 12, 7, (12, 8), (7, 4)
MICRO = EncDecConfig(vocab_size=13, embedding_size=4, hidden_size=6, num_heads=2,
                     intermediate_size=8, num_layers=2, max_position=8, dec_layers=2, dec_heads=3,
                     dec_intermediate=7, dec_max_position=6, label_smoothing=0.1)
MICRO_B, MICRO_TS, MICRO_TT, MICRO_SRC_LEN, MICRO_TGT_LEN = 2, 5, 4, (5, 3), (4, 2)


def init_golden(model):
    """Deterministic, non-degenerate weights (call after torch.manual_seed)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name.lower() and name.endswith(".weight"):
                p.uniform_(0.5, 1.5)    # every LayerNorm weight (LayerNorm, norm1..3, ...)
            elif p.dim() == 1:
                p.normal_(0.0, 0.1)
            else:
                p.normal_(0.0, 0.2)


def make_batch(c, B, Ts, Tt, src_len, tgt_len):
    src = torch.zeros(B, Ts, dtype=torch.long)
    mask = torch.zeros(B, Ts, dtype=torch.long)
    tgt = torch.zeros(B, Tt, dtype=torch.long)
    for b in range(B):
        n, k = src_len[b], tgt_len[b]
        src[b, :n] = torch.randint(5, c.vocab_size, (n,))
        src[b, 0], src[b, n - 1] = BOS, EOS
        mask[b, :n] = 1
        tgt[b, :k] = torch.randint(5, c.vocab_size, (k,))
        tgt[b, k - 1] = EOS
    return src, mask, tgt


def naive_logits(sd, c, src, mask, tgt):
    """Loop-by-loop forward from the conflux-named state dict (float64): logits (B, Tt, V)."""
    P = lambda n: sd[n].double()

    def ln(x, pre):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + c.layer_norm_eps) * P(pre + ".weight") + P(pre + ".bias")

    def lin(x, pre):
        return x @ P(pre + ".weight").t() + P(pre + ".bias")

    def attention(q, k, v, nh, allowed):
        """q (Tq, H), k, v (Tk, H); allowed(i, j) -> bool."""
        Tq, H = q.shape
        hd = H // nh
        out = torch.zeros_like(q)
        for h in range(nh):
            sl = slice(h * hd, (h + 1) * hd)
            for i in range(Tq):
                s = torch.tensor([float(q[i, sl] @ k[j, sl]) / math.sqrt(hd) if allowed(i, j)
                                  else -math.inf for j in range(k.shape[0])], dtype=torch.float64)
                p = torch.exp(s - s.max())
                out[i, sl] = (p / p.sum()) @ v[:, sl]
        return out

    W = P("albert.embeddings.word_embeddings.weight")
    B, Ts = src.shape
    Tt = tgt.shape[1]
    out = torch.zeros(B, Tt, c.vocab_size, dtype=torch.float64)
    for b in range(B):
        # encoder
        x = W[src[b]] + P("albert.embeddings.position_embeddings.weight")[:Ts] \
            + P("albert.embeddings.token_type_embeddings.weight")[0]
        h = lin(ln(x, "albert.embeddings.LayerNorm"), "albert.encoder.embedding_hidden_mapping_in")
        for _ in range(c.num_layers):
            L = lambda s: ENC_LAYER + s
            ctx = attention(lin(h, L("attention.query")), lin(h, L("attention.key")),
                            lin(h, L("attention.value")), c.num_heads, lambda i, j: mask[b, j] == 1)
            a = ln(h + lin(ctx, L("attention.dense")), L("attention.LayerNorm"))
            h = ln(a + lin(gelu_tanh(lin(a, L("ffn"))), L("ffn_output")), L("full_layer_layer_norm"))
        enc = h
        # decoder
        dec_in = [BOS] + [int(t) for t in tgt[b, :-1]]
        x = W[dec_in] + P("decoder.embed_positions.weight")[:Tt]
        x = lin(ln(x, "decoder.layernorm_embedding"), "decoder.project_in")
        for l in range(c.dec_layers):
            D = lambda s: f"decoder.layers.{l}." + s
            ctx = attention(lin(x, D("self_attn.q_proj")), lin(x, D("self_attn.k_proj")),
                            lin(x, D("self_attn.v_proj")), c.dec_heads, lambda i, j: j <= i)
            a1 = ln(x + lin(ctx, D("self_attn.out_proj")), D("self_attn_layer_norm"))
            ctx = attention(lin(a1, D("encoder_attn.q_proj")), lin(enc, D("encoder_attn.k_proj")),
                            lin(enc, D("encoder_attn.v_proj")), c.dec_heads,
                            lambda i, j: mask[b, j] == 1)
            a2 = ln(a1 + lin(ctx, D("encoder_attn.out_proj")), D("encoder_attn_layer_norm"))
            x = ln(a2 + lin(gelu_tanh(lin(a2, D("fc1"))), D("fc2")), D("final_layer_norm"))
        z = ln(gelu_tanh(lin(x, "lm_head.dense")), "lm_head.LayerNorm")
        out[b] = z @ W.t() + P("lm_head.bias")
    return out


def smoothed_loss_by_hand(logits, tgt, eps):
    lp = torch.log_softmax(logits, -1)
    V = logits.shape[-1]
    total = 0.0
    for b in range(tgt.shape[0]):
        for t in range(tgt.shape[1]):
            y = int(tgt[b, t])
            if y == PAD:
                continue
            total += (1 - eps) * -lp[b, t, y].item() + eps / V * -lp[b, t].sum().item()
    return total


def gradcheck_loss(m, src, mask, tgt, what):
    """torch.autograd.gradcheck of loss_sum with respect to every parameter of the float64
    model m; returns {name: a copy of the parameter}."""
    names = [n for n, _ in m.named_parameters()]
    base = {n: p.detach().clone() for n, p in m.named_parameters()}

    def f(*ps):
        loss, _, _ = functional_call(m, dict(zip(names, ps)), (src, mask, tgt))
        return loss
    inputs = tuple(base[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5), what
    return base


def self_check():
    """Validates encdec_ref.py on the float64 micro config; raises on any failure."""
    c = MICRO
    torch.manual_seed(77)
    m = EncDecRef(c).double()
    init_golden(m)
    m.eval()
    src, mask, tgt = make_batch(c, MICRO_B, MICRO_TS, MICRO_TT, MICRO_SRC_LEN, MICRO_TGT_LEN)
    base = gradcheck_loss(m, src, mask, tgt, "gradcheck failed")

    with torch.no_grad():
        loss, n_tok, logits = m(src, mask, tgt)
        assert n_tok == sum(MICRO_TGT_LEN)
        # independent loop-by-loop forward from the conflux names
        ref = naive_logits(m.hf_state_dict(), c, src, mask, tgt)
        err = (ref - logits).abs().max().item()
        assert err < 1e-10, f"naive forward differs by {err}"
        # label-smoothed loss by hand
        hand = smoothed_loss_by_hand(logits, tgt, c.label_smoothing)
        assert abs(hand - loss.item()) < 1e-10 * max(1.0, abs(hand)), (hand, loss.item())
        # the encoder is ALBERT's
        from albert_ref import AlbertConfig, AlbertMLM
        am = AlbertMLM(AlbertConfig(vocab_size=c.vocab_size, embedding_size=c.embedding_size,
                                    hidden_size=c.hidden_size, num_heads=c.num_heads,
                                    intermediate_size=c.intermediate_size, num_layers=c.num_layers,
                                    max_position=c.max_position)).double()
        asd = am.state_dict()
        hsd = m.hf_state_dict()
        for k in asd:
            if k.startswith("albert."):
                asd[k] = hsd[k]
        am.load_state_dict(asd)
        am.eval()
        err_enc = (am.encode(src, mask) - m.encode(src, mask)).abs().max().item()
        assert err_enc < 1e-12, f"encoder differs from albert_ref by {err_enc}"
        # source padding cannot change the loss
        src2 = src.clone()
        src2[mask == 0] = 7
        l2, _, _ = m(src2, mask, tgt)
        assert abs(l2.item() - loss.item()) < 1e-12, "source padding leaks"
        l3, _, _ = m(src2, torch.ones_like(mask), tgt)
        assert abs(l3.item() - loss.item()) > 1e-6, "the source mask has no effect"
        # causality: target token j feeds decoder position j + 1 only
        for j in range(MICRO_TT - 1):
            tgt2 = tgt.clone()
            tgt2[0, j] = 5 + (int(tgt[0, j]) - 5 + 1) % (c.vocab_size - 5)
            _, _, lg2 = m(src, mask, tgt2)
            assert (lg2[0, :j + 1] - logits[0, :j + 1]).abs().max().item() == 0.0, "not causal"
            assert (lg2[0, j + 1:] - logits[0, j + 1:]).abs().max().item() > 1e-6
    # conflux names and shapes
    hsd = m.hf_state_dict()
    assert tuple(hsd["decoder.layers.1.encoder_attn.k_proj.weight"].shape) == (c.hidden_size,) * 2
    assert tuple(hsd["decoder.layers.0.fc1.weight"].shape) == (c.dec_intermediate, c.hidden_size)
    assert tuple(hsd["lm_head.dense.weight"].shape) == (c.embedding_size, c.hidden_size)
    assert sum(t.numel() for t in hsd.values()) == sum(p.numel() for p in m.parameters())
    print(f"encdec_golden: self-check passed (gradcheck, naive forward max |diff| {err:.1e}, "
          f"encoder == albert_ref ({err_enc:.1e}), smoothed loss by hand, padding, causality)",
          file=sys.stderr)


def self_check_copy():
    """Validates the copy mechanism of encdec_ref.py on the float64 micro config."""
    c = dataclasses.replace(MICRO, copy=1)
    torch.manual_seed(78)
    m = EncDecRef(c).double()
    init_golden(m)
    m.eval()
    src, mask, tgt = make_batch(c, MICRO_B, MICRO_TS, MICRO_TT, MICRO_SRC_LEN, MICRO_TGT_LEN)
    src[0, 2] = src[0, 3]          # a repeated source token: the copy weights add up
    tgt[0, 0] = src[0, 2]          # targets that can be copied
    tgt[1, 0] = src[1, 1]
    base = gradcheck_loss(m, src, mask, tgt, "copy gradcheck failed")
    with torch.no_grad():
        enc = m.encode(src, mask)
        dec_in = m.decoder_input(tgt)
        whole = m.decode(enc, mask, dec_in)
        h, x_emb, att, ctx_pre = m.decode(enc, mask, dec_in, parts=True)
        assert (whole - h).abs().max().item() < 1e-12, "last layer by parts differs"
        layer = m.decoder.layers[-1]
        causal = torch.triu(torch.full((MICRO_TT,) * 2, float("-inf"), dtype=h.dtype), diagonal=1)
        assert att.shape == (MICRO_B, c.dec_heads, MICRO_TT, MICRO_TS)
        assert (att[:, :, :, :][mask[:, None, None, :].expand_as(att) == 0]).abs().max().item() == 0
        loss, n_tok, logp = m(src, mask, tgt)
        assert n_tok == sum(MICRO_TGT_LEN)
        err_sum = (logp.exp().sum(-1) - 1).abs().max().item()
        assert err_sum < 1e-12, f"P does not sum to 1 ({err_sum})"
        eps, V = c.label_smoothing, c.vocab_size
        hand = 0.0
        for b in range(MICRO_B):
            for t in range(MICRO_TT):
                y = int(tgt[b, t])
                if y != PAD:
                    hand += (1 - eps) * -logp[b, t, y].item() - eps / V * logp[b, t].sum().item()
        assert abs(hand - loss.item()) < 1e-10 * max(1.0, abs(hand)), (hand, loss.item())
        # the context before out_proj: out_proj of it is the attention output
        d, pad = m.decoder, mask == 0
        x = d.project_in(d.layernorm_embedding(m.albert.embeddings.word_embeddings(dec_in)
                                               + d.embed_positions.weight[:MICRO_TT]))
        for lay in d.layers[:-1]:
            x = lay(x, enc, tgt_mask=causal, memory_key_padding_mask=pad)
        a1 = layer.norm1(x + layer.self_attn(x, x, x, attn_mask=causal, need_weights=False)[0])
        mha = layer.multihead_attn
        ctx = mha(a1, enc, enc, key_padding_mask=pad, need_weights=False)[0]
        err_ctx = (mha.out_proj(ctx_pre) - ctx).abs().max().item()
        assert err_ctx < 1e-12, f"context before out_proj differs ({err_ctx})"
        # a gate forced open is the plain model
        m.pointer.gate.bias.fill_(60.0)
        _, _, lp_open = m(src, mask, tgt)
        lsm = torch.log_softmax(m.head(h), -1)
        assert (lp_open - lsm).abs().max().item() < 1e-9, "open gate != plain softmax"
        m.pointer.gate.bias.copy_(base["pointer.gate.bias"])
        # source padding cannot change the loss
        src2 = src.clone()
        src2[mask == 0] = 7
        l2, _, _ = m(src2, mask, tgt)
        assert abs(l2.item() - loss.item()) < 1e-12, "source padding leaks (copy)"
        # causality
        for j in range(MICRO_TT - 1):
            tgt2 = tgt.clone()
            tgt2[0, j] = 5 + (int(tgt[0, j]) - 5 + 1) % (c.vocab_size - 5)
            _, _, lp2 = m(src, mask, tgt2)
            assert (lp2[0, :j + 1] - logp[0, :j + 1]).abs().max().item() == 0.0, "not causal (copy)"
    print("encdec_golden: copy self-check passed (gradcheck, last layer by parts, P sums to 1, "
          "loss by hand, open gate = softmax, padding, causality)", file=sys.stderr)


def created_iso():
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    t = (datetime.datetime.fromtimestamp(int(sde), datetime.timezone.utc) if sde
         else datetime.datetime.now(datetime.timezone.utc))
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_golden(path, copy=0):
    import h5py

    c = dataclasses.replace(TINY, copy=copy)
    torch.manual_seed(4321)
    m = EncDecRef(c).double()
    init_golden(m)
    with torch.no_grad():   # the golden values are the float64 result for the float32 weights
        for p in m.parameters():
            p.copy_(p.float().double())
    m.eval()
    src, mask, tgt = make_batch(c, TINY_B, TINY_TS, TINY_TT, TINY_SRC_LEN, TINY_TGT_LEN)
    if copy:  # a repeated source token, and targets found in the source
        src[0, 3] = src[0, 5]
        tgt[0, 1] = src[0, 3]
        tgt[1, 2] = src[1, 4]
    m.zero_grad()
    loss, n_tok, logits = m(src, mask, tgt)
    loss.backward()
    grads = m.hf_grads()
    sd = m.hf_state_dict()
    with torch.no_grad():
        if not copy:
            naive = naive_logits(sd, c, src, mask, tgt)
            assert (naive - logits).abs().max().item() < 1e-10

    f32 = lambda t: t.detach().to(torch.float32).numpy()
    i32 = lambda t: t.to(torch.int32).numpy()
    tmp = path + ".tmp.%d" % os.getpid()
    with h5py.File(tmp, "w") as h:
        h.attrs["format"] = "conflux-checkpoint"
        h.attrs["version"] = np.int32(1)
        h.attrs["model"] = "encdec"
        h.attrs["step"] = np.int64(0)
        h.attrs["samples_seen"] = np.int64(0)
        h.attrs["created"] = created_iso()
        h.attrs["writer"] = "tests/ref/encdec_golden.py"
        h.create_dataset("config", data=c.ini(), dtype=h5py.string_dtype("utf-8"))
        pg = h.create_group("params")
        for name, t in sd.items():
            a = np.ascontiguousarray(f32(t))
            pg.create_dataset(name, data=a, chunks=a.shape, fletcher32=True)
        for alias in ("decoder.embed_tokens.weight", "lm_head.decoder.weight"):
            pg[alias] = pg["albert.embeddings.word_embeddings.weight"]   # hard link
        g = h.create_group("golden")
        g.create_dataset("dims", data=np.array(c.dims(), dtype=np.int32))
        g.create_dataset("label_smoothing", data=np.array([c.label_smoothing], dtype=np.float32))
        if copy:
            g.create_dataset("copy", data=np.array([1], dtype=np.int32))
        g.create_dataset("src", data=i32(src))
        g.create_dataset("src_mask", data=i32(mask))
        g.create_dataset("tgt", data=i32(tgt))
        g.create_dataset("loss_sum", data=np.array([loss.item()], dtype=np.float32))
        g.create_dataset("n_tokens", data=np.array([n_tok], dtype=np.int32))
        g.create_dataset("logits", data=f32(logits))
        gg = g.create_group("grads")
        for name in sd:
            gg.create_dataset(name, data=np.ascontiguousarray(f32(grads[name])))
    os.replace(tmp, path)
    print(f"encdec_golden: wrote {path} ({os.path.getsize(path)} bytes): loss_sum={loss.item():.6f} "
          f"n_tokens={n_tok}", file=sys.stderr)
    for name, t in sd.items():
        print(f"  {name:60s} {str(tuple(t.shape)):10s} max|grad| {grads[name].abs().max().item():.3e}",
              file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="default: tests/ref/encdec_tiny.h5 (encdec_copy_tiny.h5 with --copy)")
    ap.add_argument("--copy", action="store_true", help="the pointer-generator model")
    ap.add_argument("--skip-check", action="store_true", help="skip the float64 self-check")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    out = args.out or os.path.join(here, "encdec_copy_tiny.h5" if args.copy else "encdec_tiny.h5")
    torch.set_num_threads(1)
    if not args.skip_check:
        self_check_copy() if args.copy else self_check()
    write_golden(out, copy=1 if args.copy else 0)


if __name__ == "__main__":
    main()
