# check_lead_pairs.py PAIRS.h5 TOKENIZER_DIR NEWS.json[.gz] MAX_TGT: every pair of `prepare --target
# lead` is (the rest of an article, its first sentence): decoded with the byte-level BPE
# vocabulary (GPT-2's byte <-> unicode table), the article's body (whitespace made single
# spaces) starts with the target; a target shorter than MAX_TGT tokens is the whole first
# sentence (it ends with a terminator) and the source is the text right after it; a target
# cut at MAX_TGT tokens is the sentence's start, and the source follows the sentence's end.
# A cut may split a character's bytes: its U+FFFD is left out.
import gzip, json, sys, h5py
pairs, tok, news, max_tgt = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
vocab = json.load(open(tok + "/vocab.json", encoding="utf-8"))
inv = {i: s for s, i in vocab.items()}
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_of = {chr(c): b for b, c in zip(bs, cs)}
def decode(ids):
    return bytes(byte_of[ch] for i in ids for ch in inv[int(i)]).decode("utf-8", "replace")
op = gzip.open if news.endswith(".gz") else open
bodies = [" ".join(json.loads(l)["text"].replace("\xad", "").split()) for l in op(news, "rt", encoding="utf-8") if l.strip()]
f = h5py.File(pairs, "r")
so, st, to, tt = f["src_offsets"][()], f["src_tokens"][()], f["tgt_offsets"][()], f["tgt_tokens"][()]
npairs, a, bad = len(so) - 1, 0, 0
END = ".!?…»\"')]“”"
for i in range(npairs):
    cut = to[i + 1] - to[i] >= max_tgt
    tgt = decode(tt[to[i]:to[i + 1]]).strip().rstrip("\ufffd")
    src = decode(st[so[i]:so[i + 1]]).strip().rstrip("\ufffd")
    while a < len(bodies) and not bodies[a].startswith(tgt):
        a += 1  # articles of one sentence have no pair
    if a == len(bodies) or not tgt or not src:
        print(f"pair {i}: target {tgt[:60]!r} starts no article after the previous pair's"); bad += 1; break
    body = bodies[a]
    at = body.find(src, len(tgt))
    whole = len(tgt) if not cut else at
    ok = at >= len(tgt) and body[:at].rstrip()[-1:] in END and (cut or body[len(tgt):at].strip() == "")
    ok = ok and (cut or tgt[-1] in END)
    if not ok:
        print(f"pair {i} (cut: {cut}): target {tgt[:60]!r} / source {src[:60]!r} is not (rest, first sentence) of article {a}"); bad += 1
    a += 1
print(f"{npairs} lead pairs of {len(bodies)} articles checked, {bad} bad")
sys.exit(1 if bad or npairs < len(bodies) // 2 else 0)
