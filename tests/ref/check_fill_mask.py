#!/usr/bin/python3
"""check_fill_mask.py CHECKPOINT.h5 < fill-mask.jsonl

End-to-end check of the checkpoint contract: builds a PyTorch state_dict from a conflux
checkpoint with h5py and a dict comprehension, loads it strictly into the reference
AlbertMLM (tests/ref/albert_ref.py, Hugging Face names), runs the input_ids that
conflux-fill-mask reported, and checks that conflux's top-k tokens and probabilities equal
PyTorch's (|dp| <= 1e-4). Exits 0 on agreement, 1 otherwise. Needs /usr/bin/python3 with
torch and h5py.
"""
import configparser
import json
import os
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from albert_ref import AlbertConfig, AlbertMLM  # noqa: E402


def main():
    path = sys.argv[1]
    with h5py.File(path, "r") as f:
        state_dict = {k: torch.from_numpy(v[()]) for k, v in f["params"].items()}
        ini = f["config"][()]
        ini = ini.decode() if isinstance(ini, bytes) else ini
    cp = configparser.ConfigParser()
    cp.read_string(ini)
    m = cp["model"]
    cfg = AlbertConfig(vocab_size=int(m["vocab_size"]), embedding_size=int(m["embedding_size"]),
                       hidden_size=int(m["hidden_size"]), num_heads=int(m["num_heads"]),
                       intermediate_size=int(m["intermediate_size"]),
                       num_layers=int(m["num_layers"]), max_position=int(m["max_position"]),
                       dropout=0.0, layer_norm_eps=float(m["layer_norm_eps"]))
    model = AlbertMLM(cfg)
    model.load_state_dict_any(state_dict)  # strict: every name and shape must match
    model.eval()
    worst = 0.0
    n = 0
    for line in sys.stdin:
        o = json.loads(line)
        ids = torch.tensor([o["input_ids"]])
        with torch.no_grad():
            _, _, logits = model(ids, torch.ones_like(ids))
        probs = torch.softmax(logits[0, o["position"]].double(), dim=-1)
        top = torch.topk(probs, len(o["top"]))
        for t, (p, i) in zip(o["top"], zip(top.values.tolist(), top.indices.tolist())):
            worst = max(worst, abs(t["prob"] - probs[t["token_id"]].item()))
            if abs(t["prob"] - p) > 1e-4:
                print(f"position {o['position']}: conflux {t}, torch top prob {p} (id {i})")
                return 1
        n += 1
    print(f"{n} masked positions: conflux top-k equals PyTorch's (max |dp| {worst:.2e})")
    return 0 if n > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
