"""encdec_ref.py: plain-PyTorch reference of conflux's encoder-decoder (models/encdec.h).

Written independently of the C code. The encoder is the ALBERT encoder (embeddings with
token type 0, LayerNorm, E -> H mapping, one shared post-LN layer applied num_layers times,
GELU-tanh FFN); the decoder layers are torch.nn.TransformerDecoderLayer (post-LN,
batch_first, activation GELU-tanh), so the decoder math comes from torch itself:

    x0  = project_in(LN_emb(word_embeddings[dec_in] + embed_positions[:Tt]))
          dec_in = BOS ([CLS] = 2) followed by the target shifted right;
          word_embeddings is the encoder's table (tied)
    per layer (TransformerDecoderLayer, norm_first=False):
          a1  = norm1(x + self_attn(x, x, x, causal mask))
          a2  = norm2(a1 + multihead_attn(a1, enc, enc, source padding mask))
          out = norm3(a2 + linear2(gelu_tanh(linear1(a2))))
    logits = LN_head(gelu_tanh(lm_head.dense(h))) @ word_embeddings^T + lm_head.bias
    loss_sum = CrossEntropyLoss(ignore_index=PAD=0, label_smoothing=eps, reduction="sum")
               over logits (B*Tt, V) and the target (B*Tt)

hf_state_dict() gives the Hugging-Face-style names conflux uses (linear weights (out, in)),
in conflux's arena order; torch's packed in_proj_weight (3H, H) is split into q_proj,
k_proj, v_proj. The mapping (decoder layer l):

    self_attn.in_proj_{weight,bias}[0:H|H:2H|2H:3H] -> decoder.layers.l.self_attn.{q,k,v}_proj.*
    self_attn.out_proj.*                            -> decoder.layers.l.self_attn.out_proj.*
    multihead_attn.in_proj_* / out_proj.*           -> decoder.layers.l.encoder_attn.{q,k,v,out}_proj.*
    norm1 / norm2 / norm3                           -> self_attn_layer_norm / encoder_attn_layer_norm /
                                                       final_layer_norm
    linear1 / linear2                               -> fc1 / fc2

hf_grads() maps the .grad tensors the same way. No dependency beyond torch.

Copy mechanism (config copy=1, pointer-generator, See et al. 2017): the last decoder layer
is run step by step from its torch submodules so that its cross-attention probabilities
(need_weights, per head) and its context before out_proj can be read:

    a[b,t,s] = mean over heads of the last layer's cross-attention probabilities
    g        = sigmoid(pointer.gate([h_t; c_t; x_t]))    nn.Linear(2H + E, 1)
               h_t the decoder output, c_t the heads' concatenated outputs (a_h @ V_h),
               x_t = layernorm_embedding(word_embeddings[dec_in] + embed_positions)
    P        = g softmax(logits) + (1 - g) scatter_add over the source ids of a
    loss_sum = sum over non-PAD targets of (1-eps)(-log P[y]) + (eps/V) sum_v -log P[v]

and forward returns log P in place of the logits.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4
ENC_LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0."
MASK_NEG = -1e9


@dataclass
class EncDecConfig:
    vocab_size: int = 300
    embedding_size: int = 16
    hidden_size: int = 32
    num_heads: int = 2
    intermediate_size: int = 48
    num_layers: int = 2
    max_position: int = 16
    dec_layers: int = 2
    dec_heads: int = 2
    dec_intermediate: int = 40
    dec_max_position: int = 10
    label_smoothing: float = 0.1
    layer_norm_eps: float = 1e-12
    copy: int = 0

    def dims(self):
        """The int32 vector conflux's test reads (/golden/dims)."""
        return [self.vocab_size, self.embedding_size, self.hidden_size, self.num_heads,
                self.intermediate_size, self.num_layers, self.max_position, self.dec_layers,
                self.dec_heads, self.dec_intermediate, self.dec_max_position]

    def ini(self):
        return ("[model]\n"
                f"vocab_size = {self.vocab_size}\n"
                f"embedding_size = {self.embedding_size}\n"
                f"hidden_size = {self.hidden_size}\n"
                f"num_heads = {self.num_heads}\n"
                f"intermediate_size = {self.intermediate_size}\n"
                f"num_layers = {self.num_layers}\n"
                f"max_position = {self.max_position}\n"
                "dropout = 0\n"
                "[decoder]\n"
                f"num_layers = {self.dec_layers}\n"
                f"num_heads = {self.dec_heads}\n"
                f"intermediate_size = {self.dec_intermediate}\n"
                f"max_position = {self.dec_max_position}\n"
                "dropout = 0\n"
                f"label_smoothing = {self.label_smoothing:g}\n"
                f"copy = {self.copy}\n")


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _ln(n, eps):
    return nn.LayerNorm(n, eps=eps)


# ---- encoder (ALBERT names) ---------------------------------------------------------------
class _Emb(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.embedding_size)
        self.position_embeddings = nn.Embedding(c.max_position, c.embedding_size)
        self.token_type_embeddings = nn.Embedding(2, c.embedding_size)
        self.LayerNorm = _ln(c.embedding_size, c.layer_norm_eps)


class _Att(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c.hidden_size
        self.query, self.key, self.value, self.dense = (nn.Linear(h, h) for _ in range(4))
        self.LayerNorm = _ln(h, c.layer_norm_eps)


class _Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = _Att(c)
        self.ffn = nn.Linear(c.hidden_size, c.intermediate_size)
        self.ffn_output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.full_layer_layer_norm = _ln(c.hidden_size, c.layer_norm_eps)


class _Group(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.albert_layers = nn.ModuleList([_Layer(c)])


class _Enc(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embedding_hidden_mapping_in = nn.Linear(c.embedding_size, c.hidden_size)
        self.albert_layer_groups = nn.ModuleList([_Group(c)])


class _Albert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = _Emb(c)
        self.encoder = _Enc(c)


# ---- decoder -------------------------------------------------------------------------------
class _Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_positions = nn.Embedding(c.dec_max_position, c.embedding_size)
        self.layernorm_embedding = _ln(c.embedding_size, c.layer_norm_eps)
        self.project_in = nn.Linear(c.embedding_size, c.hidden_size)
        self.layers = nn.ModuleList([
            nn.TransformerDecoderLayer(c.hidden_size, c.dec_heads, c.dec_intermediate, dropout=0.0,
                                       activation=gelu_tanh, layer_norm_eps=c.layer_norm_eps,
                                       batch_first=True, norm_first=False)
            for _ in range(c.dec_layers)])


class _LMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.embedding_size)
        self.LayerNorm = _ln(c.embedding_size, c.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))


# torch name inside a TransformerDecoderLayer -> conflux name (None: packed in_proj, split)
_LAYER_MAP = [
    ("self_attn", "self_attn"), ("multihead_attn", "encoder_attn"),
]
_LAYER_SIMPLE = [
    ("norm1", "self_attn_layer_norm"), ("norm2", "encoder_attn_layer_norm"),
    ("linear1", "fc1"), ("linear2", "fc2"), ("norm3", "final_layer_norm"),
]


class _Pointer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate = nn.Linear(2 * c.hidden_size + c.embedding_size, 1)


class EncDecRef(nn.Module):
    def __init__(self, c: EncDecConfig):
        super().__init__()
        assert c.hidden_size % c.num_heads == 0 and c.hidden_size % c.dec_heads == 0
        self.config = c
        self.albert = _Albert(c)
        self.decoder = _Decoder(c)
        self.lm_head = _LMHead(c)
        if c.copy:
            self.pointer = _Pointer(c)

    # ---- names ---------------------------------------------------------------------------
    def _pairs(self):
        """[(conflux name, getter of the tensor from a torch-named dict)] in arena order."""
        c = self.config
        H = c.hidden_size
        sd_names = [n for n, _ in self.named_parameters()]
        out = []
        # encoder: ALBERT order (as albert_ref / albert.c)
        enc = [n for n in sd_names if n.startswith("albert.")]
        order = ["albert.embeddings.word_embeddings.weight",
                 "albert.embeddings.position_embeddings.weight",
                 "albert.embeddings.token_type_embeddings.weight",
                 "albert.embeddings.LayerNorm.weight", "albert.embeddings.LayerNorm.bias",
                 "albert.encoder.embedding_hidden_mapping_in.weight",
                 "albert.encoder.embedding_hidden_mapping_in.bias"]
        for sub in ("query", "key", "value", "dense"):
            order += [ENC_LAYER + f"attention.{sub}.weight", ENC_LAYER + f"attention.{sub}.bias"]
        order += [ENC_LAYER + "attention.LayerNorm.weight", ENC_LAYER + "attention.LayerNorm.bias",
                  ENC_LAYER + "ffn.weight", ENC_LAYER + "ffn.bias",
                  ENC_LAYER + "ffn_output.weight", ENC_LAYER + "ffn_output.bias",
                  ENC_LAYER + "full_layer_layer_norm.weight", ENC_LAYER + "full_layer_layer_norm.bias"]
        assert set(enc) == set(order) and len(enc) == len(order)
        for n in order:
            out.append((n, lambda d, n=n: d[n]))
        for n in ("decoder.embed_positions.weight", "decoder.layernorm_embedding.weight",
                  "decoder.layernorm_embedding.bias", "decoder.project_in.weight",
                  "decoder.project_in.bias"):
            out.append((n, lambda d, n=n: d[n]))
        for l in range(c.dec_layers):
            tp = f"decoder.layers.{l}."
            for tname, cname in _LAYER_MAP:
                for i, pr in enumerate("qkv"):
                    for kind in ("weight", "bias"):
                        out.append((f"{tp}{cname}.{pr}_proj.{kind}",
                                    lambda d, k=f"{tp}{tname}.in_proj_{kind}", i=i: d[k][i * H:(i + 1) * H]))
                for kind in ("weight", "bias"):
                    out.append((f"{tp}{cname}.out_proj.{kind}",
                                lambda d, k=f"{tp}{tname}.out_proj.{kind}": d[k]))
                ln_t, ln_c = _LAYER_SIMPLE[0] if tname == "self_attn" else _LAYER_SIMPLE[1]
                for kind in ("weight", "bias"):
                    out.append((f"{tp}{ln_c}.{kind}", lambda d, k=f"{tp}{ln_t}.{kind}": d[k]))
            for ln_t, ln_c in _LAYER_SIMPLE[2:]:
                for kind in ("weight", "bias"):
                    out.append((f"{tp}{ln_c}.{kind}", lambda d, k=f"{tp}{ln_t}.{kind}": d[k]))
        for n in ("lm_head.dense.weight", "lm_head.dense.bias", "lm_head.LayerNorm.weight",
                  "lm_head.LayerNorm.bias", "lm_head.bias"):
            out.append((n, lambda d, n=n: d[n]))
        if c.copy:
            for n in ("pointer.gate.weight", "pointer.gate.bias"):
                out.append((n, lambda d, n=n: d[n]))
        return out

    def hf_state_dict(self):
        """{conflux name: tensor} in conflux's arena order (views of the parameters)."""
        d = dict(self.named_parameters())
        return {n: get(d).detach() for n, get in self._pairs()}

    def hf_grads(self):
        """{conflux name: gradient} (zeros where a parameter has no .grad)."""
        d = {n: (p.grad if p.grad is not None else torch.zeros_like(p))
             for n, p in self.named_parameters()}
        return {n: get(d).detach().clone() for n, get in self._pairs()}

    def load_hf_state_dict(self, sd):
        """Copies {conflux name: tensor} into the parameters (every name required)."""
        d = dict(self.named_parameters())
        pairs = self._pairs()
        assert set(sd) == {n for n, _ in pairs}, set(sd) ^ {n for n, _ in pairs}
        with torch.no_grad():
            for n, get in pairs:
                get(d).copy_(sd[n].to(get(d).dtype))

    # ---- forward -------------------------------------------------------------------------
    def encode(self, src, src_mask):
        """ALBERT encoder hidden states (B, Ts, H)."""
        c = self.config
        emb = self.albert.embeddings
        B, T = src.shape
        x = emb.word_embeddings(src) + emb.position_embeddings.weight[:T] + emb.token_type_embeddings.weight[0]
        h = self.albert.encoder.embedding_hidden_mapping_in(emb.LayerNorm(x))
        layer = self.albert.encoder.albert_layer_groups[0].albert_layers[0]
        at = layer.attention
        nh, hd = c.num_heads, c.hidden_size // c.num_heads
        bias = ((1.0 - src_mask.to(h.dtype)) * MASK_NEG)[:, None, None, :]

        def split(t):
            return t.view(B, T, nh, hd).transpose(1, 2)

        for _ in range(c.num_layers):
            s = split(at.query(h)) @ split(at.key(h)).transpose(-1, -2) / math.sqrt(hd) + bias
            ctx = (torch.softmax(s, -1) @ split(at.value(h))).transpose(1, 2).reshape(B, T, -1)
            a = at.LayerNorm(h + at.dense(ctx))
            h = layer.full_layer_layer_norm(a + layer.ffn_output(gelu_tanh(layer.ffn(a))))
        return h

    def decode(self, enc, src_mask, dec_in, parts=False):
        """Decoder hidden states (B, Tt, H) for decoder inputs dec_in (B, Tt). With parts,
        (hidden, x_emb (B,Tt,E), att (B,NH,Tt,Ts), ctx (B,Tt,H)): the layernormed input
        embeddings and the last layer's cross-attention probabilities and context before
        out_proj, that layer run from its submodules (as TransformerDecoderLayer does)."""
        c = self.config
        Tt = dec_in.shape[1]
        assert Tt <= c.dec_max_position
        d = self.decoder
        x = self.albert.embeddings.word_embeddings(dec_in) + d.embed_positions.weight[:Tt]
        x_emb = d.layernorm_embedding(x)
        x = d.project_in(x_emb)
        causal = torch.triu(torch.full((Tt, Tt), float("-inf"), dtype=x.dtype), diagonal=1)
        pad = src_mask == 0
        n_whole = len(d.layers) - 1 if parts else len(d.layers)
        for layer in d.layers[:n_whole]:
            x = layer(x, enc, tgt_mask=causal, memory_key_padding_mask=pad)
        if not parts:
            return x
        layer = d.layers[-1]
        a1 = layer.norm1(x + layer.self_attn(x, x, x, attn_mask=causal, need_weights=False)[0])
        mha = layer.multihead_attn
        ctx, att = mha(a1, enc, enc, key_padding_mask=pad, need_weights=True,
                       average_attn_weights=False)
        a2 = layer.norm2(a1 + ctx)
        out = layer.norm3(a2 + layer.linear2(layer.activation(layer.linear1(a2))))
        H, nh = c.hidden_size, c.dec_heads
        hd = H // nh
        v = enc @ mha.in_proj_weight[2 * H:].t() + mha.in_proj_bias[2 * H:]    # (B, Ts, H)
        B, Ts = enc.shape[:2]
        ctx_pre = (att @ v.view(B, Ts, nh, hd).transpose(1, 2)).transpose(1, 2).reshape(B, Tt, H)
        return out, x_emb, att, ctx_pre

    def copy_log_probs(self, src, logits, h, x_emb, att, ctx_pre):
        """log P (B, Tt, V) of the pointer-generator mixture."""
        g = torch.sigmoid(self.pointer.gate(torch.cat([h, ctx_pre, x_emb], dim=-1)))  # (B,Tt,1)
        a = att.mean(dim=1)                                                          # (B,Tt,Ts)
        B, Tt, V = logits.shape
        C = torch.zeros_like(logits).scatter_add(2, src[:, None, :].expand(B, Tt, -1).long(), a)
        return torch.log(g * torch.softmax(logits, -1) + (1 - g) * C)

    def head(self, h):
        z = self.lm_head.LayerNorm(gelu_tanh(self.lm_head.dense(h)))
        return z @ self.albert.embeddings.word_embeddings.weight.t() + self.lm_head.bias

    @staticmethod
    def decoder_input(tgt):
        """BOS followed by the target shifted right."""
        bos = torch.full_like(tgt[:, :1], BOS)
        return torch.cat([bos, tgt[:, :-1]], dim=1)

    def forward(self, src, src_mask, tgt):
        """Returns (loss_sum, n_tokens, logits (B, Tt, V)) for right-padded targets tgt; with
        copy, log P of the mixture in place of the logits."""
        enc = self.encode(src, src_mask)
        if self.config.copy:
            h, x_emb, att, ctx_pre = self.decode(enc, src_mask, self.decoder_input(tgt), parts=True)
            logp = self.copy_log_probs(src, self.head(h), h, x_emb, att, ctx_pre)
            eps, V = self.config.label_smoothing, logp.shape[-1]
            sel = tgt != PAD
            nll = -logp.gather(2, tgt[..., None].long())[..., 0]
            per = (1 - eps) * nll - eps / V * logp.sum(-1)
            return per[sel].sum(), int(sel.sum()), logp
        logits = self.head(self.decode(enc, src_mask, self.decoder_input(tgt)))
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1).long(), ignore_index=PAD,
                               label_smoothing=self.config.label_smoothing, reduction="sum")
        return loss, int((tgt != PAD).sum()), logits
