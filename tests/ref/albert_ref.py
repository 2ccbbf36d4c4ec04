"""albert_ref.py: plain-PyTorch reference of the ALBERT masked-LM model that conflux trains.

It is numerically Hugging Face's AlbertForMaskedLM restricted to what conflux uses:
token_type_ids all 0, hidden_act "gelu_new" (GELU, tanh approximation), post-LayerNorm,
layer_norm_eps 1e-12, one layer group holding one layer that is applied num_layers times,
decoder tied to the word embeddings, decoder bias == predictions.bias.

With AlbertConfig(sop=True) it is Hugging Face's AlbertForPreTraining instead: the same MLM
part plus sentence-order prediction (SOP): pooled = tanh(albert.pooler(h[:, 0, :])),
sop_logits = sop_classifier.classifier(pooled) (2 classes; no SOP dropout), with real
token_type_ids. forward_pretraining() returns the summed MLM and SOP cross-entropies; the
objective conflux differentiates is loss_sum + sop_scale * sop_sum (pretraining_objective()).

state_dict() keys are exactly the Hugging Face names (linear weights are (out, in)):

    albert.embeddings.word_embeddings.weight                (V, E)
    albert.embeddings.position_embeddings.weight            (P, E)
    albert.embeddings.token_type_embeddings.weight          (2, E)
    albert.embeddings.LayerNorm.weight / .bias              (E)
    albert.encoder.embedding_hidden_mapping_in.weight       (H, E)   .bias (H)
    albert.encoder.albert_layer_groups.0.albert_layers.0.
        attention.{query,key,value,dense}.weight            (H, H)   .bias (H)
        attention.LayerNorm.weight / .bias                  (H)
        ffn.weight (I, H) .bias (I); ffn_output.weight (H, I) .bias (H)
        full_layer_layer_norm.weight / .bias                (H)
    predictions.bias                                        (V)
    predictions.dense.weight (E, H) .bias (E)
    predictions.LayerNorm.weight / .bias                    (E)
  only with sop=True (Hugging Face's AlbertForPreTraining order):
    albert.pooler.weight (H, H) .bias (H)                   (after albert.encoder.*)
    sop_classifier.classifier.weight (2, H) .bias (2)       (last)

hf_state_dict() additionally holds the tied aliases predictions.decoder.weight (the word
embeddings) and predictions.decoder.bias (predictions.bias), as Hugging Face's own
state_dict does; load_state_dict_any() accepts either form.

No dependency beyond torch. Used by albert_golden.py and albert_bench.py.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYER_PREFIX = "albert.encoder.albert_layer_groups.0.albert_layers.0."
ALIASES = {
    "predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
    "predictions.decoder.bias": "predictions.bias",
}
MASK_NEG = -1e9          # additive bias on padded keys (exp underflows to exactly 0 in fp32/fp64)
IGNORE_INDEX = -100


@dataclass
class AlbertConfig:
    vocab_size: int = 30000
    embedding_size: int = 128
    hidden_size: int = 768
    num_heads: int = 12
    intermediate_size: int = 3072
    num_layers: int = 12
    max_position: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.0          # hidden and attention-probability dropout (same value)
    layer_norm_eps: float = 1e-12
    sop: bool = False             # sentence-order prediction head (pooler + 2-way classifier)

    def ini(self):
        """The [model] section as conflux's INI text."""
        sop = "sop = 1\n" if self.sop else ""
        return ("[model]\n"
                f"vocab_size = {self.vocab_size}\n"
                f"embedding_size = {self.embedding_size}\n"
                f"hidden_size = {self.hidden_size}\n"
                f"num_heads = {self.num_heads}\n"
                f"intermediate_size = {self.intermediate_size}\n"
                f"num_layers = {self.num_layers}\n"
                f"max_position = {self.max_position}\n"
                f"dropout = {self.dropout:g}\n"
                + sop)


def gelu_new(x):
    """GELU, tanh approximation (HF "gelu_new")."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class _Embeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.embedding_size)
        self.position_embeddings = nn.Embedding(c.max_position, c.embedding_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.embedding_size)
        self.LayerNorm = nn.LayerNorm(c.embedding_size, eps=c.layer_norm_eps)


class _Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c.hidden_size
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.dense = nn.Linear(h, h)
        self.LayerNorm = nn.LayerNorm(h, eps=c.layer_norm_eps)


class _Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = _Attention(c)
        self.ffn = nn.Linear(c.hidden_size, c.intermediate_size)
        self.ffn_output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.full_layer_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class _LayerGroup(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.albert_layers = nn.ModuleList([_Layer(c)])


class _Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embedding_hidden_mapping_in = nn.Linear(c.embedding_size, c.hidden_size)
        self.albert_layer_groups = nn.ModuleList([_LayerGroup(c)])


class _Albert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        if c.sop:
            self.pooler = nn.Linear(c.hidden_size, c.hidden_size)   # HF AlbertModel.pooler


class _SOPHead(nn.Module):
    """HF AlbertSOPHead (its dropout omitted: conflux has none there)."""

    def __init__(self, c):
        super().__init__()
        self.classifier = nn.Linear(c.hidden_size, 2)


class _Predictions(nn.Module):
    """MLM head. The decoder is not a module: its weight is the word embeddings and its
    bias is self.bias, so neither appears twice in state_dict()."""

    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.dense = nn.Linear(c.hidden_size, c.embedding_size)
        self.LayerNorm = nn.LayerNorm(c.embedding_size, eps=c.layer_norm_eps)


class AlbertMLM(nn.Module):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        assert config.hidden_size % config.num_heads == 0
        self.config = config
        self.albert = _Albert(config)
        self.predictions = _Predictions(config)
        if config.sop:
            self.sop_classifier = _SOPHead(config)

    # ---- weights -------------------------------------------------------------------
    def init_hf(self, std=0.02):
        """Hugging Face's initialisation (normal(0, std) matrices, zero biases, unit LN)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("LayerNorm.weight") or name.endswith("layer_norm.weight"):
                    p.fill_(1.0)
                elif p.dim() == 1:
                    p.zero_()
                else:
                    p.normal_(0.0, std)

    def hf_state_dict(self):
        """state_dict() plus the tied aliases, as Hugging Face's AlbertForMaskedLM has it."""
        sd = self.state_dict()
        for alias, target in ALIASES.items():
            sd[alias] = sd[target]
        return sd

    def load_state_dict_any(self, sd):
        """Loads a state_dict with or without the alias keys (aliases must equal targets)."""
        sd = dict(sd)
        for alias, target in ALIASES.items():
            if alias in sd:
                a = sd.pop(alias)
                if target in sd:
                    assert torch.equal(a.to(sd[target].dtype), sd[target]), alias + " differs from " + target
                else:
                    sd[target] = a
        return self.load_state_dict(sd)

    # ---- forward -------------------------------------------------------------------
    def encode(self, ids, attention_mask=None, token_type_ids=None, dropout_masks=None):
        """Hidden states (B, T, H) after the L shared layers. token_type_ids (B, T): segment
        ids (None = all 0, which adds token_type_embeddings row 0 to every position).

        dropout_masks: None, or given dropout masks instead of torch's dropout (whatever
        self.training and config.dropout say): a dict of scale factors (0 = dropped, 1/(1-p)
        = kept) multiplied in at Hugging Face's three dropout sites, as conflux applies them
        (cx_rng.albert_dropout_masks draws conflux's): "emb" (B, T, E) on LayerNorm(embeddings),
        "att" a list of L (B, NH, T, T) on the attention probabilities of application l,
        "out" a list of L (B, T, H) on attention.dense's output. The FFN output gets none
        (the drop(f) below is only for torch's own dropout; HF's AlbertLayer has no dropout
        there)."""
        c = self.config
        emb = self.albert.embeddings
        B, T = ids.shape
        assert T <= c.max_position
        drop = lambda x: F.dropout(x, c.dropout, self.training) if c.dropout > 0 else x
        dm = None
        if dropout_masks is not None:
            dm = {k: (torch.as_tensor(v) if k == "emb" else [torch.as_tensor(x) for x in v])
                  for k, v in dropout_masks.items()}
            assert tuple(dm["emb"].shape) == (B, T, c.embedding_size)
            assert len(dm["att"]) == c.num_layers and len(dm["out"]) == c.num_layers
        site = lambda x, m: x * m.to(x.dtype)
        if token_type_ids is None:
            tt = emb.token_type_embeddings.weight[0]
        else:
            assert token_type_ids.shape == ids.shape
            tt = emb.token_type_embeddings(token_type_ids.long())
        x = emb.word_embeddings(ids) + emb.position_embeddings.weight[:T].unsqueeze(0) + tt
        x = emb.LayerNorm(x)
        x = drop(x) if dm is None else site(x, dm["emb"])
        h = self.albert.encoder.embedding_hidden_mapping_in(x)

        nh = c.num_heads
        hd = c.hidden_size // nh
        if attention_mask is None:
            mask_bias = None
        else:
            mask_bias = (1.0 - attention_mask.to(h.dtype)) * MASK_NEG   # (B, T)
            mask_bias = mask_bias[:, None, None, :]                       # (B, 1, 1, T) on keys
        layer = self.albert.encoder.albert_layer_groups[0].albert_layers[0]
        att = layer.attention
        scale = 1.0 / math.sqrt(hd)

        def heads(t):
            return t.view(B, T, nh, hd).transpose(1, 2)                  # (B, nh, T, hd)

        for l in range(c.num_layers):
            q, k, v = heads(att.query(h)), heads(att.key(h)), heads(att.value(h))
            s = torch.matmul(q, k.transpose(-1, -2)) * scale
            if mask_bias is not None:
                s = s + mask_bias
            p = torch.softmax(s, dim=-1)
            p = drop(p) if dm is None else site(p, dm["att"][l])
            ctx = torch.matmul(p, v).transpose(1, 2).reshape(B, T, c.hidden_size)
            o = att.dense(ctx)
            a = att.LayerNorm(h + (drop(o) if dm is None else site(o, dm["out"][l])))
            f = layer.ffn_output(gelu_new(layer.ffn(a)))
            h = layer.full_layer_layer_norm((drop(f) if dm is None else f) + a)
        return h

    def head(self, h):
        """MLM logits for hidden rows h (..., H) -> (..., V)."""
        pr = self.predictions
        z = pr.LayerNorm(gelu_new(pr.dense(h)))
        return F.linear(z, self.albert.embeddings.word_embeddings.weight, pr.bias)

    def sop_head(self, h):
        """SOP logits (B, 2) from hidden states h (B, T, H): classifier(tanh(pooler(h[:, 0])))."""
        assert self.config.sop, "model built without sop"
        pooled = torch.tanh(self.albert.pooler(h[:, 0, :]))
        return self.sop_classifier.classifier(pooled)

    def _mlm_loss(self, h, labels, gather_masked):
        """(loss_sum, n_selected, logits) of the MLM head on hidden states h."""
        if gather_masked:
            assert labels is not None, "gather_masked needs labels"
            sel = (labels != IGNORE_INDEX).reshape(-1)
            logits = self.head(h.reshape(-1, h.shape[-1])[sel])
            targets = labels.reshape(-1)[sel]
        else:
            logits = self.head(h)
            if labels is None:
                return None, 0, logits
            sel = (labels != IGNORE_INDEX).reshape(-1)
            targets = labels.reshape(-1)
        n_sel = int(sel.sum())
        flat = logits.reshape(-1, logits.shape[-1])
        loss_sum = F.cross_entropy(flat, targets.long(), ignore_index=IGNORE_INDEX, reduction="sum")
        return loss_sum, n_sel, logits

    def forward_pretraining(self, ids, attention_mask=None, labels=None, token_type_ids=None,
                            sop_labels=None, gather_masked=False, return_logits=False):
        """MLM + sentence-order prediction (HF AlbertForPreTraining; needs config.sop).

        Returns (loss_sum, n_selected, sop_sum), and with return_logits=True also
        (logits, sop_logits): loss_sum and n_selected as in forward(); sop_sum is the SOP
        cross-entropy summed over the sequences whose sop_label (B) is >= 0 (0 = segments in
        order, 1 = swapped; a negative label ignores the sequence), a 0-dim tensor, None
        without sop_labels. sop_logits is (B, 2).
        """
        h = self.encode(ids, attention_mask, token_type_ids)
        loss_sum, n_sel, logits = self._mlm_loss(h, labels, gather_masked)
        sop_logits = self.sop_head(h)
        sop_sum = None
        if sop_labels is not None:
            keep = sop_labels >= 0
            sop_sum = F.cross_entropy(sop_logits[keep], sop_labels[keep].long(), reduction="sum")
        if return_logits:
            return loss_sum, n_sel, sop_sum, logits, sop_logits
        return loss_sum, n_sel, sop_sum

    def pretraining_objective(self, ids, attention_mask, labels, token_type_ids, sop_labels,
                              sop_scale, gather_masked=False):
        """loss_sum + sop_scale * sop_sum: the quantity whose gradient conflux computes."""
        loss_sum, _, sop_sum = self.forward_pretraining(ids, attention_mask, labels, token_type_ids,
                                                        sop_labels, gather_masked)
        return loss_sum + sop_scale * sop_sum

    def forward(self, ids, attention_mask=None, labels=None, gather_masked=False,
                dropout_masks=None):
        """Returns (loss_sum, n_selected, logits).

        loss_sum: cross-entropy summed over positions whose label != -100 (0-dim tensor;
                  None without labels); n_selected: how many such positions (int).
        logits:   (B, T, V), or with gather_masked=True only the selected rows (n_sel, V),
                  in row-major (b, t) order; the loss is the same either way.
        dropout_masks: see encode().
        """
        h = self.encode(ids, attention_mask, dropout_masks=dropout_masks)
        return self._mlm_loss(h, labels, gather_masked)
