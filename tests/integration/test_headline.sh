#!/usr/bin/env bash
# Integration tests of conflux-headline (about 30 s on 2 cores):
#  - pairs + prepare on Debian's Russian package descriptions; a tiny model initialised
#    from a conflux-train ALBERT checkpoint (encoder and lm_head equal to it) is fine-tuned
#    and its validation loss falls by more than 1 nat;
#  - resume is bit for bit; 2 MPI ranks give the loss of 1 rank; denoising (mBART) pretraining
#    on the token shards lowers its validation loss and seeds a fine-tuning run (--init);
#  - generate (stdin, news files) and evaluate on the real RIA/Lenta/ODS samples of
#    ../shared/data/news (SKIPPED when absent): the first-sentence baseline reproduces the
#    known figures of these samples, the model's rows are printed, and its paired bootstrap
#    against the first sentence equals conflux-rouge --baseline's on the same headlines;
#  - bad input gives clear errors and the right exit codes.
# Third-party news text is only read from ../shared/data; nothing of it is written here
# except into the temporary directory.
# usage: tests/integration/test_headline.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
B=$BUILD/bin/conflux-headline
NEWS=${NEWS_DIR:-../shared/data/news}
TOK=$DATA/tokenizer
source tests/lib.sh
for f in "$TOK/vocab.json" "$DATA/debtrans/Translation-ru" "$DATA/shards/train.h5" "$DATA/shards/valid.h5"; do
    [ -e "$f" ] || skip "$f is missing (run 'make shards' first)"
done
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# expect CODE PATTERN CMD...: the command exits with CODE and its stderr matches PATTERN
expect() {
    local code=$1 pat=$2; shift 2
    "$@" >"$W/out" 2>"$W/err"
    local rc=$?
    if [ "$rc" = "$code" ] && grep -q -- "$pat" "$W/err"; then
        ok "exit $code: $(grep -m1 -- "$pat" "$W/err" | cut -c1-150)"
    else
        bad "expected exit $code and /$pat/ from: $* (got $rc: $(head -c 300 "$W/err"))"
    fi
}
# the last "valid step N: loss X" line's loss, or the first with "first"
vloss() { grep '^valid step' "$1" | { [ "${2:-}" = first ] && head -1 || tail -1; } | sed 's/.*loss \([0-9.]*\).*/\1/'; }

# --- data: pairs from the package descriptions, tokenized (lowercased, as the RIA dump)
"$B" pairs --out "$W/pairs" "debtrans:$DATA/debtrans/Translation-ru" 2>"$W/pairs.log" || bad "pairs failed"
n=$(wc -l <"$W/pairs/train.tsv")
[ "$n" -gt 2000 ] && ok "pairs: $n training pairs ($(tail -1 "$W/pairs.log"))" || bad "pairs: only $n pairs"
"$B" pairs --out "$W/pairs2" "debtrans:$DATA/debtrans/Translation-ru" 2>/dev/null &&
    cmp -s "$W/pairs/train.tsv" "$W/pairs2/train.tsv" && cmp -s "$W/pairs/valid.tsv" "$W/pairs2/valid.tsv" &&
    ok "pairs: the same output on a second run" || bad "pairs output differs between runs"
P=(prepare -q --tokenizer "$TOK" --lowercase --max-src 62 --max-tgt 24)
"$B" "${P[@]}" --limit 2000 --out "$W/train.h5" "$W/pairs/train.tsv" || bad "prepare train failed"
"$B" "${P[@]}" --limit 128 --out "$W/valid.h5" "$W/pairs/valid.tsv" || bad "prepare valid failed"
"$B" "${P[@]}" --limit 128 --out "$W/valid2.h5" "$W/pairs/valid.tsv" && h5diff -q "$W/valid.h5" "$W/valid2.h5" &&
    ok "prepare: the same pair shard from the same input (h5diff)" || bad "prepare output differs between runs"

# --- a tiny ALBERT (conflux-train) to initialise the encoder from
"$BUILD/bin/conflux-train" "${TINY_MODEL[@]}" --set train.steps=2 --set train.eval_every=0 \
    --set run.dir="$W/albert" -q || bad "tiny ALBERT run failed"
TINY=(--train "$W/train.h5" --valid "$W/valid.h5" --set data.tokenizer="$TOK"
      --set data.src_len=64 --set data.tgt_len=24 --set decoder.max_position=32
      --set decoder.num_layers=1 --set decoder.num_heads=2 --set decoder.intermediate_size=128
      --set generate.max_len=20 --set train.global_batch=16 --set train.micro_batch=16
      --set optim.lr=1e-3 --set optim.warmup_steps=10 --set optim_decoder.lr=3e-3
      --set optim_decoder.warmup_steps=10 --set train.eval_samples=128 --set train.threads=1)

# --- the encoder and lm_head come from the ALBERT checkpoint (a 1e-9 learning rate moves nothing)
"$B" train --init-encoder "$W/albert/latest.h5" "${TINY[@]}" --steps 1 --set optim.lr=1e-9 \
    --set optim_decoder.lr=1e-9 --run-dir "$W/init" -q || bad "init run failed"
A=$W/albert/latest.h5; E=$W/init/latest.h5
if h5diff -d 1e-6 "$A" "$E" /params/albert.encoder.embedding_hidden_mapping_in.weight /params/albert.encoder.embedding_hidden_mapping_in.weight >/dev/null &&
   h5diff -d 1e-6 "$A" "$E" /params/albert.embeddings.word_embeddings.weight /params/albert.embeddings.word_embeddings.weight >/dev/null &&
   h5diff -d 1e-6 "$A" "$E" /params/predictions.dense.weight /params/lm_head.dense.weight >/dev/null &&
   h5diff -d 1e-6 "$A" "$E" /params/predictions.bias /params/lm_head.bias >/dev/null; then
    ok "--init-encoder: encoder and lm_head equal the ALBERT checkpoint's"
else
    bad "--init-encoder did not copy the ALBERT weights"
fi

# --- fine-tuning lowers the validation loss
"$B" train --init-encoder "$W/albert/latest.h5" "${TINY[@]}" --steps 150 --set train.eval_every=50 \
    --set train.log_every=50 --run-dir "$W/run" 2>"$W/train.log" || { bad "training failed"; cat "$W/train.log"; }
v0=$(vloss "$W/train.log" first); v1=$(vloss "$W/train.log")
if awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(a - b > 1.0) }'; then
    ok "fine-tuning: validation loss $v0 -> $v1 in 150 steps"
else
    bad "fine-tuning: validation loss $v0 -> $v1 (expected a drop of more than 1 nat)"
fi
grep -q '^step 150/150 | loss .* | lr .*/.* | grad .* samples/s .* tok/s | ETA' "$W/train.log" &&
    ok "progress lines show step, loss, both learning rates, throughput and ETA" || bad "progress line format"
[ -f "$W/run/finished" ] && [ -f "$W/run/run.json" ] && [ "$(wc -l <"$W/run/metrics.csv")" = 151 ] &&
    ok "run directory: run.json, metrics.csv (150 rows), finished" || bad "run directory incomplete"
h5dump -a /model "$W/run/latest.h5" 2>/dev/null | grep -q '"encdec"' && ok "checkpoint model attribute is encdec" ||
    bad "checkpoint has no model=encdec"

# --- resume bit for bit (dropout on)
R=("${TINY[@]}" --init-encoder "$W/albert/latest.h5" --set train.eval_every=0 -q)
"$B" train "${R[@]}" --steps 8 --run-dir "$W/straight" || bad "straight run failed"
"$B" train "${R[@]}" --steps 8 --set train.checkpoint_every=4 --run-dir "$W/first" || bad "first run failed"
# (paths never come from a checkpoint: the data is named again)
"$B" train --resume "$W/first/checkpoint-000004.h5" "${TINY[@]:0:6}" --run-dir "$W/resumed" -q || bad "resume failed"
if h5diff -q "$W/straight/checkpoint-000008.h5" "$W/resumed/checkpoint-000008.h5" /params /params &&
   h5diff -q "$W/straight/checkpoint-000008.h5" "$W/resumed/checkpoint-000008.h5" /optim /optim; then
    ok "resume at step 4 equals the straight run at step 8 bit for bit"
else
    bad "resumed parameters differ from the straight run"
fi

# --- two MPI ranks average through mpi/dp.h and reach one rank's parameters (dropout off):
# 14 steps, past the 10 warm-up steps, every parameter (encoder, decoder, both optimizer
# groups' updates) within 1e-5, the tolerance of the ALBERT ranks test (summation order)
if command -v mpirun >/dev/null; then
    M=("${TINY[@]}" --init-encoder "$W/albert/latest.h5" --set train.eval_every=0 --set model.dropout=0
       --set decoder.dropout=0 --set train.micro_batch=8 --steps 14 -q)
    "$B" train "${M[@]}" --run-dir "$W/mpi1" || bad "1-rank run failed"
    mpirun --allow-run-as-root --oversubscribe -np 2 "$B" train "${M[@]}" --run-dir "$W/mpi2" \
        >"$W/mpi.log" 2>&1 || { bad "mpirun -np 2 failed"; tail -5 "$W/mpi.log"; }
    if grep -q '"ranks": *2' "$W/mpi2/run.json" 2>/dev/null && [ -f "$W/mpi2/finished" ]; then
        l1=$(awk -F, 'NR==15 {print $4}' "$W/mpi1/metrics.csv"); l2=$(awk -F, 'NR==15 {print $4}' "$W/mpi2/metrics.csv")
        if awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-4 * a) }'; then
            ok "2 MPI ranks: step-14 loss $l2 equals 1 rank's $l1"
        else
            bad "2 MPI ranks: step-14 loss $l2, 1 rank $l1"
        fi
        compare "$W/mpi1/checkpoint-000014.h5" "$W/mpi2/checkpoint-000014.h5" 1e-5 \
            && ok "2 MPI ranks: every encoder-decoder parameter after 14 steps within 1e-5 of 1 rank's" \
            || bad "2 MPI ranks: parameters differ from 1 rank's"
    else
        bad "the 2-rank run did not run on 2 ranks (run.json: $(cat "$W/mpi2/run.json" 2>/dev/null | head -c 200))"
    fi
else
    skip_check "MPI part (no mpirun)"
fi

# --- mBART denoising pretraining on the token shards, then fine-tuning from it
D=(--objective denoise --train "$DATA/shards/valid.h5" --valid "$DATA/shards/valid.h5"
   --set data.tokenizer="$TOK" --set model.hidden_size=64 --set model.num_heads=2
   --set model.embedding_size=32 --set model.intermediate_size=128 --set model.num_layers=2
   --set data.src_len=48 --set data.tgt_len=48 --set decoder.max_position=64 --set decoder.num_layers=1
   --set decoder.num_heads=2 --set decoder.intermediate_size=128 --set generate.max_len=20
   --set train.global_batch=16 --set train.micro_batch=16 --set optim.lr=2e-3
   --set optim.separate_decoder=0 --set optim.warmup_steps=10 --set train.eval_samples=64
   --set train.threads=1)
"$B" train "${D[@]}" --steps 100 --set train.eval_every=100 --run-dir "$W/mbart" 2>"$W/mbart.log" ||
    { bad "denoising run failed"; tail -5 "$W/mbart.log"; }
v0=$(vloss "$W/mbart.log" first); v1=$(vloss "$W/mbart.log")
awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(a - b > 1.0) }' && ok "denoising: validation loss $v0 -> $v1 in 100 steps" ||
    bad "denoising: validation loss $v0 -> $v1"
"$B" train --init "$W/mbart/latest.h5" "${TINY[@]}" --set data.src_len=48 --steps 2 --run-dir "$W/ft" -q &&
    [ -f "$W/ft/finished" ] && ok "fine-tuning starts from the denoising checkpoint (--init)" || bad "--init from the denoising run failed"

# --- generate
CK=$W/run/latest.h5
echo "Программа для просмотра и печати документов в формате PDF с поддержкой закладок и поиска." |
    "$B" generate --checkpoint "$CK" >"$W/gen.txt" 2>"$W/gen.err"
if [ "$(wc -l <"$W/gen.txt")" = 1 ] && [ -s "$W/gen.txt" ]; then ok "generate from stdin: $(cat "$W/gen.txt")"; else bad "generate from stdin: $(cat "$W/gen.err")"; fi
printf 'первая статья о библиотеке\n\nвторая статья об утилите для сети\n' |
    "$B" generate --checkpoint "$CK" --beam 1 --max-len 8 --min-len 2 --no-block-trigrams --stats >"$W/gen2.txt" 2>"$W/gen2.err"
[ "$(wc -l <"$W/gen2.txt")" = 2 ] && grep -q 'headlines/s' "$W/gen2.err" && ok "greedy generate: 2 headlines (blank line skipped), --stats" ||
    bad "greedy generate: $(cat "$W/gen2.err")"

# --- an ensemble (the fine-tuned run and the one started from the denoising checkpoint, whose
# src_len differs) and decoding in known words
ART="Программа для просмотра и печати документов в формате PDF с поддержкой закладок и поиска."
echo "$ART" | "$B" generate --checkpoint "$CK" --checkpoint "$W/ft/latest.h5" >"$W/ens.txt" 2>"$W/ens.err"
[ "$(wc -l <"$W/ens.txt")" = 1 ] && [ -s "$W/ens.txt" ] && ok "ensemble of 2 generates: $(cat "$W/ens.txt")" ||
    bad "ensemble generate: $(cat "$W/ens.err")"
printf 'утилита для сети\nбиблиотека печати, документов и файлов\n' >"$W/lexicon.txt"
printf '%s\nпервая статья о библиотеке\nвторая статья об утилите для сети\n' "$ART" |
    "$B" generate --checkpoint "$CK" --lexicon "$W/lexicon.txt" --no-repeat-words 3 --max-len 16 >"$W/lex.txt" 2>"$W/lex.err"
if [ "$(wc -l <"$W/lex.txt")" = 3 ] && /usr/bin/python3 - "$W/lexicon.txt" "$W/lex.txt" "$ART" \
    'первая статья о библиотеке' 'вторая статья об утилите для сети' <<'PY'
import re, sys
words = lambda s: re.findall(r'[^\W\d_]+', s.lower())
lex = set(words(open(sys.argv[1]).read()))
for line, art in zip(open(sys.argv[2]), sys.argv[3:]):
    ws = words(line)
    bad = [w for w in ws if w not in lex and w not in set(words(art))]
    long = [w for w in ws if len(w) >= 3]
    if bad or len(long) != len(set(long)):
        sys.exit("not known or repeated: %s in '%s'" % (bad or long, line.strip()))
PY
then ok "--lexicon: 3 headlines in words of the lexicon or their article, none of 3+ letters twice: $(paste -sd'|' "$W/lex.txt")"
else bad "--lexicon: $(cat "$W/lex.txt" "$W/lex.err")"; fi
# the samples of minimum Bayes risk under the same rule, drawn and masked on a pool of one
# thread and of two (beam_sample masks a step's rows on the pool's threads, each with its
# own scratch in the rule): every sample in known words, none repeated, and the same
# candidates both ways
for t in 1 2; do
    printf '%s\nпервая статья о библиотеке\nвторая статья об утилите для сети\n' "$ART" |
        "$B" generate --checkpoint "$CK" --lexicon "$W/lexicon.txt" --no-repeat-words 3 --max-len 16 \
            --mbr 32 --mbr-temperature 1.5 --threads $t --mbr-candidates "$W/lexc$t.tsv" >/dev/null 2>"$W/lexc$t.err"
done
msg="different candidates"
if cmp -s "$W/lexc1.tsv" "$W/lexc2.tsv" && msg=$(/usr/bin/python3 - "$W/lexicon.txt" "$W/lexc2.tsv" "$ART" \
    'первая статья о библиотеке' 'вторая статья об утилите для сети' <<'PY'
import re, sys
words = lambda s: re.findall(r'[^\W\d_]+', s.lower())
lex = set(words(open(sys.argv[1]).read()))
arts = sys.argv[3:]
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[2])][1:]
distinct = set()
for r in rows:
    ws = words(r[6])
    bad = [w for w in ws if w not in lex and w not in set(words(arts[int(r[0])]))]
    long = [w for w in ws if len(w) >= 3]
    if bad or len(long) != len(set(long)):
        sys.exit("not known or repeated: %s in '%s'" % (bad or long, r[6]))
    distinct.add(r[6])
if len(rows) < 20 or len(distinct) < 6:
    sys.exit("%d candidates, %d distinct" % (len(rows), len(distinct)))
print("%d candidates, %d distinct" % (len(rows), len(distinct)))
PY
); then ok "--lexicon under --mbr 32, 1 and 2 threads: the same candidates, all in known words ($msg)"
else bad "--lexicon under --mbr on 2 threads: $msg $(cmp "$W/lexc1.tsv" "$W/lexc2.tsv") $(cat "$W/lexc2.err")"; fi
# --mbr-article and --mbr-candidates: every candidate's article term must be W times its
# ROUGE-2 precision against its article and its expected utility the mean ROUGE-2 F against
# the other samples plus that term, both from tests/ref/rouge_ref.py; the headline written is
# the candidate of the highest utility (the first of equals). Each article gets its beam
# headline appended past --src-len (the encoder reads the same 6 tokens), so some candidates
# find their bigrams in it: the check needs article terms other than 0.
printf '%s\n' "$ART" 'первая статья о библиотеке печати и о её новых функциях' \
    'вторая статья об утилите для сети, которая проверяет соединения' \
    'третья статья о редакторе текста с подсветкой синтаксиса и поиском' >"$W/art_x.txt"
MA=(--src-len 8 --max-len 12 --min-len 4 --format text)
"$B" generate --checkpoint "$CK" "${MA[@]}" "$W/art_x.txt" >"$W/art_beam.txt" 2>&1
paste -d' ' "$W/art_x.txt" "$W/art_beam.txt" >"$W/art_a.txt"
"$B" generate --checkpoint "$CK" "${MA[@]}" --mbr 8 --mbr-temperature 2 --mbr-utility r2 --mbr-article 0.5 \
    --mbr-candidates "$W/cands.tsv" --stats "$W/art_a.txt" >"$W/art_mbr.txt" 2>"$W/art_mbr.err"
if grep -q "minimum Bayes risk over 8 samples + 0.5 x R-2 P against the article: " "$W/art_mbr.err" &&
    msg=$(/usr/bin/python3 - tests/ref "$W/art_a.txt" "$W/cands.tsv" "$W/art_mbr.txt" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from rouge_ref import fold, score_standard
arts = open(sys.argv[2], encoding="utf-8").read().splitlines()
lines = open(sys.argv[3], encoding="utf-8").read().splitlines()
outs = open(sys.argv[4], encoding="utf-8").read().splitlines()
assert lines[0] == "article\tcandidate\tkind\texpected\tarticle_term\tchosen\ttext", lines[0]
by = {}
for ln in lines[1:]:
    a, i, kind, e, t, ch, text = ln.split("\t")
    by.setdefault(int(a), []).append((int(i), kind, float(e), float(t), int(ch), text))
assert sorted(by) == list(range(len(arts))) and len(outs) == len(arts), (sorted(by), len(outs))
terms = set()
for a, cands in by.items():
    texts = [c[5] for c in cands]
    assert [c[0] for c in cands] == list(range(len(cands))) and cands[0][1] == "beam"
    for i, kind, e, t, ch, text in cands:
        term = 0.5 * score_standard(fold(text), fold(arts[a]))[1][0]
        f2 = [score_standard(fold(text), fold(texts[j]))[1][2] for j in range(1, len(texts)) if j != i]
        want = (sum(f2) / len(f2) if f2 else 0.0) + term
        assert abs(t - term) < 1e-12 and abs(e - want) < 1e-12, (a, i, text, t, term, e, want)
        terms.add(round(term, 6))
    best = max(range(len(cands)), key=lambda i: (cands[i][2], -i))
    assert [c[4] for c in cands] == [int(i == best) for i in range(len(cands))], (a, best)
    assert outs[a] == texts[best], (a, outs[a], texts[best])
assert terms - {0.0}, "every article term is 0: the check proves nothing"
print("%d candidates of %d articles, article terms %s" % (len(lines) - 1, len(arts), sorted(terms)))
PY
    ); then ok "--mbr-article 0.5, --mbr-candidates: utilities, article terms and choices as tests/ref/rouge_ref.py computes them ($msg)"
else bad "--mbr-article / --mbr-candidates: $msg $(cat "$W/art_mbr.err")"; fi
# Without --format, generate reads a FILE by its name: *.csv as a news dump (a Lenta-layout
# CSV whose texts span lines: 2 articles), plain text otherwise, stdin always plain text
# (there every line of the CSV is an article: 5).
printf '%s\n' 'url,title,text,topic' 'u1,Первый,"первая статья о библиотеке печати' 'и о её новых функциях",t' \
    'u2,Второй,"вторая статья об утилите для сети,' 'которая проверяет соединения",t' >"$W/two.csv"
cp "$W/two.csv" "$W/two.txt"
n_csv=$("$B" generate --checkpoint "$CK" --max-len 6 "$W/two.csv" 2>/dev/null | wc -l)
n_txt=$("$B" generate --checkpoint "$CK" --max-len 6 "$W/two.txt" 2>/dev/null | wc -l)
n_in=$("$B" generate --checkpoint "$CK" --max-len 6 <"$W/two.csv" 2>/dev/null | wc -l)
n_ft=$("$B" generate --checkpoint "$CK" --max-len 6 --format text "$W/two.csv" 2>/dev/null | wc -l)
[ "$n_csv/$n_txt/$n_in/$n_ft" = 2/5/5/5 ] && ok "generate without --format: x.csv is a news dump (2 headlines), x.txt, stdin and --format text are lines (5)" ||
    bad "generate's format by name: x.csv $n_csv, x.txt $n_txt, stdin $n_in, --format text $n_ft headlines (want 2/5/5/5)"
# *.json is a RIA dump and *.tsv pairs: a record without a body is skipped (1 headline),
# where as lines of text both are articles (2)
printf '%s\n' '{"title": "Первый", "text": "первая статья о библиотеке печати"}' '{"title": "Второй", "text": ""}' >"$W/two.json"
printf 'Первый\tпервая статья о библиотеке печати\nВторой\t\n' >"$W/two.tsv"
counts=""
for f in two.json two.tsv; do
    for fmt in "" "--format text"; do
        counts+="$("$B" generate --checkpoint "$CK" --max-len 6 $fmt "$W/$f" 2>/dev/null | wc -l)/"
    done
done
[ "$counts" = 1/2/1/2/ ] && ok "generate without --format: x.json and x.tsv skip a record without a body (1 headline each, 2 as text)" ||
    bad "generate's format by name: x.json, x.json as text, x.tsv, x.tsv as text gave $counts headlines (want 1/2/1/2/)"
expect 2 "conflux-headline: error: --mbr-article must be in \[0, 100\] (got '-1')" "$B" generate --checkpoint "$CK" --mbr 4 --mbr-article -1
expect 1 "conflux-headline: error: --mbr-candidates needs --mbr N" "$B" generate --checkpoint "$CK" --mbr-candidates "$W/c.tsv"
expect 1 "conflux-headline: error: cannot write $W/no/c.tsv: No such file or directory" "$B" generate --checkpoint "$CK" --mbr 4 --mbr-candidates "$W/no/c.tsv"
expect 1 "conflux-headline: error: --no-repeat-words needs --lexicon FILE" "$B" generate --checkpoint "$CK" --no-repeat-words 3
expect 1 "conflux-headline: error: cannot read lexicon $W/nolex.txt" "$B" generate --checkpoint "$CK" --lexicon "$W/nolex.txt"
expect 2 "at most 8 --checkpoint" "$B" generate $(for i in 1 2 3 4 5 6 7 8 9; do echo --checkpoint "$CK"; done)

# --- the real news samples
if [ -f "$NEWS/ria_20.json" ]; then
    "$B" generate --checkpoint "$CK" --format ria "$NEWS/ria_20.json" >"$W/ria_gen.txt" 2>"$W/ria_gen.err"
    [ "$(wc -l <"$W/ria_gen.txt")" = 20 ] && ok "generate --format ria: 20 headlines" || bad "generate --format ria: $(cat "$W/ria_gen.err")"
    "$B" prepare -q --tokenizer "$TOK" --lowercase --out "$W/ria.h5" "$NEWS/ria_20.json" && ok "prepare reads the RIA sample" || bad "prepare on the RIA sample failed"
    # minimum Bayes risk decoding. With epsilon 0.99 every draw is the most likely token, so
    # all samples are the greedy headline, which then wins unless the beam's is the same: the
    # output equals greedy search's (and differs from beam search's somewhere, or the check
    # would prove nothing; --alpha 5 sends beam search to long headlines). This model writes
    # one headline whatever the article, so the draws' dependence on --seed and on the
    # article is left to test_encdec and test_sample.
    R=(--format ria --max-len 12 --alpha 5)
    "$B" generate --checkpoint "$CK" "${R[@]}" --beam 1 "$NEWS/ria_20.json" >"$W/greedy.txt" 2>&1
    "$B" generate --checkpoint "$CK" "${R[@]}" "$NEWS/ria_20.json" >"$W/beam.txt" 2>&1
    "$B" generate --checkpoint "$CK" "${R[@]}" --mbr 6 --mbr-epsilon 0.99 --stats "$NEWS/ria_20.json" >"$W/mbr_eps.txt" 2>"$W/mbr_eps.err"
    if cmp -s "$W/mbr_eps.txt" "$W/greedy.txt" && ! cmp -s "$W/greedy.txt" "$W/beam.txt" &&
        grep -q "minimum Bayes risk over 6 samples: [1-9][0-9]* of 20 headlines from the samples" "$W/mbr_eps.err"; then
        ok "--mbr 6 --mbr-epsilon 0.99 gives greedy search's headlines ($(diff "$W/greedy.txt" "$W/beam.txt" | grep -c '^<') of 20 differ from beam search's)"
    else bad "--mbr with epsilon 0.99 is not greedy search: $(diff "$W/mbr_eps.txt" "$W/greedy.txt" | head -4) $(cat "$W/mbr_eps.err")"; fi
    "$B" evaluate --checkpoint "$CK" --max-len 12 --mbr 4 --mbr-utility r2 --bootstrap 0 "$NEWS/ria_20.json" >"$W/ev_mbr.txt" 2>&1
    grep -q '^minimum Bayes risk: 4 samples (temperature 1, epsilon 0.02), utility 0.00 R-1 + 1.00 R-2 + 0.00 R-L F; [0-9]* of 20 headlines' "$W/ev_mbr.txt" &&
        grep -q '^model (beam 4, MBR 4) .* paper' "$W/ev_mbr.txt" && ok "evaluate --mbr 4 --mbr-utility r2: $(grep '^minimum' "$W/ev_mbr.txt")" ||
        bad "evaluate --mbr: $(tail -5 "$W/ev_mbr.txt")"
    "$B" evaluate "$NEWS/ria_20.json" >"$W/ev_base.txt" 2>&1
    # docs/headline.md's figures; test_baseline_ref checks them against an independent reference
    grep -q 'headline-eval: n=20 lead_paper=33.85/16.74/21.87 lead_standard=32.40/15.44/26.19' "$W/ev_base.txt" &&
        ok "RIA first-sentence baseline (dateline skipped): $(tail -1 "$W/ev_base.txt")" || bad "RIA baseline: $(tail -3 "$W/ev_base.txt")"
    "$B" evaluate --dateline keep "$NEWS/ria_20.json" 2>&1 | tail -1 | grep -q 'lead_paper=33.85' &&
        bad "--dateline keep changed nothing" || ok "--dateline keep scores the dateline instead"
    "$B" evaluate --checkpoint "$CK" --beam 4 --hyps-out "$W/ev_hyps.tsv" "$NEWS/ria_20.json" >"$W/ev.txt" 2>&1
    grep -q '^model (beam 4) .* paper' "$W/ev.txt" && grep -q 'headline-eval: n=20 model_paper=' "$W/ev.txt" &&
        ok "evaluate RIA with the model: $(tail -1 "$W/ev.txt")" || bad "evaluate RIA: $(tail -5 "$W/ev.txt")"
    # the paired bootstrap against the first sentence: the rows of conflux-rouge --baseline on
    # the same headlines (--hyps-out: reference, model, first sentence), which draws the same
    # resamples (seed 1, 1000)
    cut -f1 "$W/ev_hyps.tsv" >"$W/bs_ref.txt"
    cut -f2 "$W/ev_hyps.tsv" >"$W/bs_model.txt"
    cut -f3 "$W/ev_hyps.tsv" >"$W/bs_lead.txt"
    bs_ok=1
    for mode in paper standard; do
        "$BUILD/bin/conflux-rouge" --ref "$W/bs_ref.txt" --hyp "$W/bs_model.txt" --baseline "$W/bs_lead.txt" --mode $mode \
            2>/dev/null | awk '/^R-[12L] +[-+]/ {print $1, $2, $3, $4, $5}' >"$W/bs_rouge.txt"
        awk -v m=$mode '$1 == m && $2 ~ /^R-/ && $3 ~ /^[-+]/ {print $2, $3, $4, $5, $6}' "$W/ev.txt" >"$W/bs_eval.txt"
        if [ "$(wc -l <"$W/bs_eval.txt")" != 3 ] || ! cmp -s "$W/bs_rouge.txt" "$W/bs_eval.txt"; then
            bs_ok=0; echo "    $mode:"; paste "$W/bs_eval.txt" "$W/bs_rouge.txt"
        fi
    done
    if [ $bs_ok = 1 ] && grep -q '^model - first sentence, F: paired bootstrap, 1000 resamples of the 20 articles' "$W/ev.txt"; then
        ok "evaluate's paired bootstrap = conflux-rouge --baseline's: $(grep '^paper .*R-2' "$W/ev.txt")"
    else bad "evaluate's bootstrap: $(grep -A7 'paired bootstrap' "$W/ev.txt")"; fi
    "$B" evaluate --checkpoint "$CK" --bootstrap 0 --limit 2 "$NEWS/ria_20.json" >"$W/ev_nobs.txt" 2>&1
    grep -q 'headline-eval: n=2 ' "$W/ev_nobs.txt" && ! grep -q 'paired bootstrap' "$W/ev_nobs.txt" &&
        ok "evaluate --bootstrap 0: no comparison" || bad "--bootstrap 0: $(cat "$W/ev_nobs.txt")"
    "$B" evaluate --checkpoint "$CK" --checkpoint "$W/ft/latest.h5" --limit 3 "$NEWS/ria_20.json" >"$W/ev_ens.txt" 2>&1
    grep -q '^ensemble of 2 (beam 4) .* paper' "$W/ev_ens.txt" && grep -q 'headline-eval: n=3 model_paper=' "$W/ev_ens.txt" &&
        ok "evaluate an ensemble of 2: $(tail -1 "$W/ev_ens.txt")" || bad "evaluate ensemble: $(tail -5 "$W/ev_ens.txt")"
    "$B" evaluate --checkpoint "$CK" "$NEWS/lenta-ru-news.csv.gz" 2>&1 | tail -1 | grep -q 'n=1 model_paper' &&
        ok "evaluate Lenta" || bad "evaluate Lenta"
    "$B" evaluate --checkpoint "$CK" --hyps-out "$W/ods.tsv" "$NEWS"/ods/*.csv.gz >"$W/ev_ods.txt" 2>&1
    tail -1 "$W/ev_ods.txt" | grep -q 'n=36 model_paper' && ok "evaluate ODS (36 articles)" || bad "evaluate ODS"
    # the per-source bootstrap of the first source (gazeta, 9 articles, the first 9 lines of
    # --hyps-out) = conflux-rouge --baseline's on those lines: difference, interval, share ahead
    head -n 9 "$W/ods.tsv" >"$W/ods9.tsv"
    cut -f1 "$W/ods9.tsv" >"$W/o_ref.txt"; cut -f2 "$W/ods9.tsv" >"$W/o_mod.txt"; cut -f3 "$W/ods9.tsv" >"$W/o_lead.txt"
    ps_ok=1
    for mode in paper standard; do
        want=$("$BUILD/bin/conflux-rouge" --ref "$W/o_ref.txt" --hyp "$W/o_mod.txt" --baseline "$W/o_lead.txt" --mode $mode 2>/dev/null |
            awk '/^R-[12L] +[-+]/ {print $2, $3, $4, $5}' | tr -d '[],' | tr '\n' ' ')
        got=$(grep -E "^  gazeta \(9\) +$mode " "$W/ev_ods.txt" | sed -E 's/R-[12L]//g' | tr -d '[],' | awk '{for (i = 4; i <= NF; i++) printf "%s ", $i}')
        if [ -z "$want" ] || [ "$(echo $want)" != "$(echo $got)" ]; then ps_ok=0; echo "    $mode: want '$want' got '$got'"; fi
    done
    [ $ps_ok = 1 ] && ok "per-source bootstrap (gazeta, 9) = conflux-rouge --baseline's: $(grep -E '^  gazeta \(9\) +paper ' "$W/ev_ods.txt")" ||
        bad "per-source bootstrap: $(grep -A9 '^per source, model' "$W/ev_ods.txt")"
else
    skip_check "real news samples ($NEWS/ria_20.json absent; NEWS_DIR overrides ../shared/data/news)"
fi

# --- bad input
printf 'заголовок один\tтекст статьи номер один про что-то\nстрока без табуляции\n\xff\xfe\tбитый UTF-8\nзаголовок два\tтекст второй статьи\n' >"$W/bad.tsv"
"$B" prepare --tokenizer "$TOK" --out "$W/bad.h5" "$W/bad.tsv" 2>"$W/bad.err" &&
    grep -q 'bad.tsv:2: skipped (no tab' "$W/bad.err" && grep -q 'bad.tsv:3: skipped (invalid UTF-8' "$W/bad.err" &&
    grep -q ': 2 pairs (2 skipped as bad records' "$W/bad.err" &&
    ok "malformed TSV lines are reported with their line numbers, skipped and counted" || bad "malformed TSV: $(cat "$W/bad.err")"
printf '{"title": "ok", "text": "<p>текст</p>"}\n{"title": "broken", "text": \n{"title": "два", "text": "<p>ещё</p>"}\n' >"$W/bad.json"
"$B" prepare --tokenizer "$TOK" --out "$W/badj.h5" "$W/bad.json" 2>"$W/badj.err" &&
    grep -q 'bad.json:2: skipped (syntax)' "$W/badj.err" && ok "broken RIA JSON line reported and skipped" ||
    bad "broken JSON: $(cat "$W/badj.err")"
printf 'no tabs here\n' >"$W/none.tsv"
expect 1 "conflux-headline: error: no usable pair" "$B" prepare --tokenizer "$TOK" --out "$W/none.h5" "$W/none.tsv"
expect 1 "conflux-headline: error: .*missing.json" "$B" prepare --tokenizer "$TOK" --out "$W/x.h5" "$W/missing.json"
expect 2 "conflux-headline: error: --tokenizer DIR is required" "$B" prepare --out "$W/x.h5" "$W/bad.tsv"
expect 1 "not an encoder-decoder" "$B" generate --checkpoint "$W/albert/latest.h5"
expect 1 "conflux-headline: error: .*nothing.h5" "$B" generate --checkpoint "$W/nothing.h5"
expect 2 "beam must be in" "$B" generate --checkpoint "$CK" --beam 0
expect 2 "max-len" "$B" generate --checkpoint "$CK" --max-len x
expect 1 "max-len must be in" "$B" generate --checkpoint "$CK" --max-len 1000
expect 2 "conflux-headline: error: --mbr must be 0 to 256 samples (got '257')" "$B" generate --checkpoint "$CK" --mbr 257
expect 2 "conflux-headline: error: --mbr-epsilon must be in \[0, 1) (got '1')" "$B" generate --checkpoint "$CK" --mbr 4 --mbr-epsilon 1
expect 2 "conflux-headline: error: --mbr-temperature must be in (0, 100\] (got '0')" "$B" generate --checkpoint "$CK" --mbr 4 --mbr-temperature 0
expect 2 "conflux-headline: error: --mbr-utility must be mean, r1, r2 or rl (got 'bleu')" "$B" generate --checkpoint "$CK" --mbr-utility bleu
expect 2 "unknown command 'summarize'" "$B" summarize
expect 1 "conflux-shard" "$B" train "${TINY[@]}" --train "$DATA/shards/valid.h5" --steps 1 --run-dir "$W/e1"
expect 1 "conflux-pairs" "$B" train "${D[@]}" --train "$W/train.h5" --steps 1 --run-dir "$W/e2"
expect 2 "data.tgt_len" "$B" train "${TINY[@]}" --set data.tgt_len=1000 --run-dir "$W/e3"
expect 1 "use --init-encoder" "$B" train "${TINY[@]}" --init "$W/albert/latest.h5" --run-dir "$W/e4"
expect 2 "unknown key" "$B" train "${TINY[@]}" --set decoder.colour=red --run-dir "$W/e5"
expect 1 "cannot open .*missing.json\|missing.json" "$B" evaluate "$W/missing.json"
expect 2 "conflux-headline: error: --bootstrap must be 0 to 1000000 resamples (got 'many')" "$B" evaluate --bootstrap many "$W/missing.json"
for c in pairs prepare train generate evaluate; do
    "$B" "$c" --help | grep -q "^usage: conflux-headline $c" || bad "$c --help"
done
ok "--help on every subcommand"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
