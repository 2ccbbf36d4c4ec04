#!/usr/bin/env bash
# make headline-news (io/headline/news/recipe.sh) end to end on a small slice of the real
# RT/NG news (the first 300 training articles, 40 validation ones, copied into a temporary
# directory only; the RIA sample as a second source) with a tiny model, about 1 min on 2
# cores:
#  - a budget that runs out during the MLM pretraining stops it with a checkpoint, exit 0,
#    and the message to run again; no stage is marked finished (run 1 asks for 10^6 steps,
#    which no machine finishes in its 12 s budget, so the stop does not depend on speed);
#  - the same command, asked for 20 steps more than run 1 reached, resumes the pretraining
#    at the next step (not from step 0), then runs
#    the denoising pretraining of the encoder-decoder (its encoder from the MLM checkpoint),
#    the lead pretraining from the denoised model (the first sentences from the rest of the
#    articles: `prepare --target lead`'s pairs), the fine-tuning with the copy mechanism
#    from the lead model (pointer.gate in the checkpoint) and the evaluation: ROUGE per source next to the first-sentence baseline, the headline-eval
#    line, the checkpoint's path;
#  - a third run redoes nothing; asked for more fine-tuning steps it continues from the
#    last one; with MEMBERS=2 it fine-tunes a second model with another seed and evaluates
#    the ensemble of both; asked for more denoising steps, it continues that stage and runs
#    the stages after it again from the new checkpoint, the earlier runs moved aside; other
#    inputs in the same work directory, a bad budget and a bad MEMBERS are refused with
#    clear errors;
#  - the lead pairs, read back and decoded, are each article's first sentence (the target)
#    and the text after it (the source);
#  - conflux-corpus's news format reports a broken record (file:line) and refuses a
#    truncated gzip file.
# SKIPPED without ../shared/data/news/train (NEWS_DIR overrides).
# usage: tests/integration/test_headline_news.sh BUILD_DIR DATA_DIR
set -u
BUILD=${1:?}; DATA=${2:?}
NEWS=${NEWS_DIR:-../shared/data/news}
source tests/lib.sh
[ -f "$NEWS/train/rt_ng_train.json.gz" ] && [ -f "$NEWS/train/rt_ng_valid.json.gz" ] ||
    skip "no $NEWS/train/rt_ng_{train,valid}.json.gz (the real news for training)"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
zcat "$NEWS/train/rt_ng_train.json.gz" | head -n 300 | gzip >"$W/train.json.gz"
zcat "$NEWS/train/rt_ng_valid.json.gz" | head -n 40 >"$W/valid.json"
export NEWS_TRAIN=$W/train.json.gz NEWS_VALID=$W/valid.json NEWS_EXTRA=$NEWS/ria_20.json VOCAB=1000 THREADS=2
TINY="--set model.hidden_size=64 --set model.embedding_size=32 --set model.intermediate_size=128
      --set model.num_heads=2 --set data.seq_len=64 --set train.log_every=1"
MLM_BASE="$TINY --set train.eval_every=0 --set train.checkpoint_every=0"
export DN_SET="--set train.steps=4 --set decoder.intermediate_size=64 --set data.src_len=64
               --set data.tgt_len=64 --set train.eval_every=2 --set train.eval_samples=16
               --set train.checkpoint_every=0 --set train.log_every=1"
export LEAD_SET="--set train.steps=3 --set train.eval_every=3 --set train.eval_samples=16
                 --set train.checkpoint_every=0 --set train.log_every=1"
export FT_SET="--set train.steps=6 --set train.eval_every=3
               --set train.eval_samples=40 --set train.checkpoint_every=0 --set train.log_every=1"
R=io/headline/news/recipe.sh
WK=$W/work
# the recipe's evaluation with 4 samples for minimum Bayes risk instead of 64: the same code
# at a sixteenth of the decoding (these tiny models evaluate 60 articles several times)
export EVAL_ARGS="--lexicon $WK/corpus/train.txt --alpha 1.5 --mbr 4 --mbr-utility r2"

# 1. a budget of 12 s: the data (1-2 s), then the pretraining is stopped part way (tens of
#    steps a second, depending on the machine; 490 steps on 2026-12-04, of the 10^6 asked)
MLM_SET="$MLM_BASE --set train.steps=1000000" bash "$R" "$BUILD" "$WK" 0.2 >"$W/run1.log" 2>&1
rc=$?
[ $rc = 0 ] && ok "a run out of budget exits 0" || bad "run 1 exited $rc: $(tail -5 "$W/run1.log")"
grep -q 'budget of 0.2 min spent during pretraining (MLM) (step [1-9]' "$W/run1.log" &&
    grep -q 'run the same command again to resume' "$W/run1.log" &&
    ok "run 1: $(grep -m1 'spent during' "$W/run1.log")" ||
    bad "run 1 did not stop in the pretraining: $(tail -5 "$W/run1.log")"
[ -f "$WK/runs/mlm/latest.h5" ] && [ ! -f "$WK/runs/mlm/finished" ] && [ ! -d "$WK/runs/headline" ] &&
    ok "run 1 left a checkpoint, no finished marker, no fine-tuning" ||
    bad "run 1's run directories: $(ls -R "$WK/runs" | head -20)"
stopped=$(tail -n 1 "$WK/runs/mlm/metrics.csv" | cut -d, -f2)
total=$((stopped + 20))
export MLM_SET="$MLM_BASE --set train.steps=$total"

# 2. the same command resumes and completes every stage
bash "$R" "$BUILD" "$WK" 10 >"$W/run2.log" 2>&1
rc=$?
[ $rc = 0 ] && ok "run 2 exits 0" || bad "run 2 exited $rc: $(tail -8 "$W/run2.log")"
grep -q "pretraining (MLM): resuming $WK/runs/mlm/latest.h5" "$W/run2.log" &&
    grep -q "^step $((stopped + 1))/$total " "$W/run2.log" && ! grep -q "^step 1/$total " "$W/run2.log" &&
    ok "run 2 resumed the pretraining at step $((stopped + 1)) of $total" ||
    bad "run 2 did not resume at step $((stopped + 1)): $(grep -m3 'resuming\|^step' "$W/run2.log")"
[ -f "$WK/runs/mlm/finished" ] && [ -f "$WK/runs/denoise/finished" ] && [ -f "$WK/runs/lead/finished" ] &&
    [ -f "$WK/runs/headline/finished" ] &&
    ok "the four trainings finished" || bad "a stage is not finished: $(tail -5 "$W/run2.log")"
# the lead pairs read back: each is (the rest of an article, its first sentence), decoded
# with the run's tokenizer and compared with the articles (tests/integration/check_lead_pairs.py)
for s in train valid; do
    f=$W/train.json.gz; [ $s = valid ] && f=$W/valid.json
    out=$(/usr/bin/python3 tests/integration/check_lead_pairs.py "$WK/lead_$s.h5" "$WK/tokenizer" "$f" 48 2>&1) &&
        ok "lead pairs ($s): $(echo "$out" | tail -1)" || bad "lead pairs ($s): $out"
done
grep -q "^conflux-headline: denoise, encoder [0-9]* parameters, initialised from $(readlink -f "$WK/runs/mlm/latest.h5")" "$W/run2.log" &&
    grep -q "^conflux-headline: headline, .*initialised from $(readlink -f "$WK/runs/denoise/latest.h5"), " "$W/run2.log" &&
    grep -q "^conflux-headline: headline, .*initialised from $(readlink -f "$WK/runs/lead/latest.h5"), " "$W/run2.log" &&
    ok "the denoising starts from the MLM encoder, the lead pretraining from the denoised model, the fine-tuning from the lead model" ||
    bad "the stages' initialisation: $(grep '^conflux-headline: ' "$W/run2.log")"
h5ls -r "$WK/runs/headline/latest.h5" 2>/dev/null | grep -q '/params/pointer.gate.weight' &&
    ok "the fine-tuned model has the copy gate (decoder.copy = 1)" ||
    bad "no pointer.gate.weight in $WK/runs/headline/latest.h5"
grep -q '^  valid (40) model ' "$W/run2.log" && grep -q '^  valid (40) first sentence ' "$W/run2.log" &&
    grep -q '^  ria_20 (20) model ' "$W/run2.log" &&
    ok "ROUGE per source, model next to the first sentence" ||
    bad "no per-source rows: $(grep -A12 '^system' "$W/run2.log")"
grep -q '^minimum Bayes risk: 4 samples (temperature 1, epsilon 0.02), utility 0.00 R-1 + 1.00 R-2 + 0.00 R-L F; [0-9]* of 60 headlines' "$W/run2.log" &&
    grep -q '^model (beam 4, MBR 4) ' "$W/run2.log" && ok "the evaluation decodes with EVAL_ARGS (--mbr 4)" ||
    bad "EVAL_ARGS not applied: $(grep -B2 -A3 '^system' "$W/run2.log")"
grep -q '^headline-eval: n=60 model_paper=[0-9.]*/[0-9.]*/[0-9.]* model_standard=.* lead_paper=18.61/6.97/13.12 ' "$W/run2.log" &&
    ok "$(grep '^headline-eval' "$W/run2.log" | cut -c1-120)" ||
    bad "no headline-eval line with the 60 articles' baseline: $(grep headline-eval "$W/run2.log")"
grep -q "checkpoint: $WK/runs/headline/latest.h5" "$W/run2.log" && [ -s "$WK/hyps.tsv" ] &&
    [ "$(grep -c '^\[' "$WK/eval.log")" = 10 ] &&
    ok "the checkpoint's path is printed; 10 examples and every headline written" ||
    bad "no checkpoint path / hyps.tsv / 10 examples: $(tail -3 "$W/run2.log")"

# 3. nothing left to do; other inputs and bad budgets are refused
bash "$R" "$BUILD" "$WK" 10 >"$W/run3.log" 2>&1
grep -q 'pretraining (MLM): done' "$W/run3.log" && grep -q 'pretraining (denoising): done' "$W/run3.log" &&
    grep -q 'pretraining (lead): done' "$W/run3.log" &&
    grep -q 'fine-tuning .*: done' "$W/run3.log" &&
    ! grep -q 'evaluation of' "$W/run3.log" && grep -q '^headline-eval' "$W/run3.log" &&
    ok "run 3 redoes nothing and prints the results again" || bad "run 3: $(head -5 "$W/run3.log")"
FT_SET="$FT_SET --set train.steps=8" bash "$R" "$BUILD" "$WK" 10 >"$W/run3b.log" 2>&1
grep -q 'pretraining (MLM): done' "$W/run3b.log" &&
    grep -q 'fine-tuning .*: extending from step 6 to 8' "$W/run3b.log" &&
    grep -q '^step 7/8 ' "$W/run3b.log" && ! grep -q '^step [1-6]/' "$W/run3b.log" &&
    [ "$(cat "$WK/runs/headline/finished")" = 8 ] && grep -q 'evaluation of' "$W/run3b.log" &&
    ok "more steps asked of a finished stage: it continues from step 6 to 8 and evaluates again" ||
    bad "extending the fine-tuning: $(grep -m4 'extending\|^step\|done' "$W/run3b.log")"
# an ensemble: MEMBERS=2 fine-tunes a second model from the same lead checkpoint with a seed
# of its own (another data order: its first loss differs) and evaluates the two together
FT_SET="$FT_SET --set train.steps=8" MEMBERS=2 bash "$R" "$BUILD" "$WK" 10 >"$W/run3c.log" 2>&1
rc=$?
# the first step's loss of each member (the fine-tuning is run 2's last training)
l1=$(grep '^step 1/' "$W/run2.log" | tail -1 | cut -d'|' -f2); l2=$(grep -m1 '^step 1/' "$W/run3c.log" | cut -d'|' -f2)
[ $rc = 0 ] && grep -q 'fine-tuning .*: done' "$W/run3c.log" &&
    grep -q "fine-tuning, ensemble member 2 of 2: starting in $WK/runs/headline-2" "$W/run3c.log" &&
    grep -q "^conflux-headline: headline, .*initialised from $(readlink -f "$WK/runs/lead/latest.h5"), " "$W/run3c.log" &&
    [ "$(cat "$WK/runs/headline-2/finished" 2>/dev/null)" = 8 ] &&
    h5dump -d /config "$WK/runs/headline-2/latest.h5" | grep -q '^ *seed = 1235$' &&
    [[ $l1 == " loss "* ]] && [[ $l2 == " loss "* ]] && [ "$l1" != "$l2" ] &&
    ok "MEMBERS=2: member 2 fine-tuned 8 steps from the lead model with seed 1235 (first step:$l2, member 1:$l1)" ||
    bad "MEMBERS=2's second member: exit $rc, $(grep -m4 'member\|initialised\|^step 1/' "$W/run3c.log")"
grep -q "evaluation of $WK/runs/headline/latest.h5 $WK/runs/headline-2/latest.h5" "$W/run3c.log" &&
    grep -q '^ensemble of 2 (beam 4, MBR 4) *paper ' "$W/run3c.log" &&
    grep -q "ensemble members: $WK/runs/headline/latest.h5 $WK/runs/headline-2/latest.h5" "$W/run3c.log" &&
    grep -q '^headline-eval: n=60 ' "$W/run3c.log" &&
    ok "MEMBERS=2: the evaluation decodes the ensemble of the two fine-tuned models" ||
    bad "MEMBERS=2's evaluation: $(grep -m3 'evaluation of\|ensemble' "$W/run3c.log")"
# the denoising asked for 2 steps more continues from step 4 to 6; the stages after it were
# started from its step-4 checkpoint, so each is moved aside (kept) and run again from the new
# one: the lead pretraining, then both fine-tuned members (the lead checkpoint they started
# from keeps its name, checkpoint-000003.h5, with other bytes), then the evaluation. The lead
# run's record of where it started (runs/lead/from) is removed first, as in a work
# directory made before the record existed: it is then found stale by its age
dn4=$(readlink -f "$WK/runs/denoise/latest.h5"); lead4=$(readlink -f "$WK/runs/lead/latest.h5")
ft4=$(sha256sum <"$WK/runs/headline/latest.h5")
rm -f "$WK/runs/lead/from"
DN_SET="$DN_SET --set train.steps=6" FT_SET="$FT_SET --set train.steps=8" MEMBERS=2 \
    bash "$R" "$BUILD" "$WK" 10 >"$W/run3e.log" 2>&1
rc=$?
dn6=$(readlink -f "$WK/runs/denoise/latest.h5"); lead6=$(readlink -f "$WK/runs/lead/latest.h5")
aside() { ls -d "$WK/runs/$1".before-* 2>/dev/null | head -n 1; }
[ $rc = 0 ] && grep -q 'pretraining (denoising): extending from step 4 to 6' "$W/run3e.log" &&
    [ "$dn6" = "$WK/runs/denoise/checkpoint-000006.h5" ] &&
    grep -q "pretraining (lead): $WK/runs/lead was started from another checkpoint than $dn6 (the stage before it has trained on): starting again; the earlier run is kept in $WK/runs/lead.before-" "$W/run3e.log" &&
    [ "$(cat "$(aside lead)/finished" 2>/dev/null)" = 3 ] &&
    [ "$(cat "$WK/runs/lead/from")" = "$dn6 $(sha256sum <"$dn6" | cut -d' ' -f1)" ] &&
    grep -q "^conflux-headline: headline, .*initialised from $dn6, " "$W/run3e.log" &&
    ok "more denoising steps: the lead pretraining is set aside ($(basename "$(aside lead)")) and started again from $(basename "$dn6")" ||
    bad "the lead pretraining after more denoising: exit $rc, $(grep -m6 'denoising\|lead\|initialised' "$W/run3e.log")"
[ "$lead6" = "$lead4" ] && [ "$(cat "$(aside headline)/finished" 2>/dev/null)" = 8 ] &&
    [ "$(cat "$(aside headline-2)/finished" 2>/dev/null)" = 8 ] &&
    grep -q "fine-tuning (BertSumAbs + pointer-generator): $WK/runs/headline was started from another checkpoint than $lead6 " "$W/run3e.log" &&
    grep -q "fine-tuning, ensemble member 2 of 2: $WK/runs/headline-2 was started from another checkpoint than $lead6 " "$W/run3e.log" &&
    [ "$(grep -c "^conflux-headline: headline, .*initialised from $lead6, " "$W/run3e.log")" = 2 ] &&
    [ "$(cat "$WK/runs/headline/finished")" = 8 ] && [ "$(sha256sum <"$WK/runs/headline/latest.h5")" != "$ft4" ] &&
    grep -q "evaluation of $WK/runs/headline/latest.h5 $WK/runs/headline-2/latest.h5" "$W/run3e.log" &&
    ok "both fine-tuned members are set aside and fine-tuned again from the new lead model, then evaluated" ||
    bad "the fine-tuning after more denoising: $(grep -m6 'fine-tuning\|initialised\|evaluation' "$W/run3e.log")"
DN_SET="$DN_SET --set train.steps=6" FT_SET="$FT_SET --set train.steps=8" MEMBERS=2 \
    bash "$R" "$BUILD" "$WK" 10 >"$W/run3f.log" 2>&1
[ "$(grep -c ': done (' "$W/run3f.log")" = 5 ] && ! grep -q 'started from another checkpoint\|evaluation of' "$W/run3f.log" &&
    [ "$(ls -d "$WK"/runs/*.before-* | wc -l)" = 3 ] &&
    ok "run again, the five stages are done and nothing is set aside" ||
    bad "the run after that: $(grep -m6 'done\|another\|evaluation' "$W/run3f.log")"
MEMBERS=9 bash "$R" "$BUILD" "$WK" 10 >"$W/run3d.log" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "error: MEMBERS must be 1 to 8 fine-tuned models (got '9')" "$W/run3d.log" &&
    ok "MEMBERS=9: exit 1 with a clear error" || bad "MEMBERS=9: exit $rc, $(cat "$W/run3d.log")"
NEWS_TRAIN=$W/valid.json bash "$R" "$BUILD" "$WK" 10 >"$W/run4.log" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "error: $WK was made from other inputs" "$W/run4.log" &&
    ok "other inputs in the same work directory: exit 1, $(grep -o 'was made from other inputs' "$W/run4.log")" ||
    bad "other inputs: exit $rc, $(cat "$W/run4.log")"
bash "$R" "$BUILD" "$W/other" abc >"$W/run5.log" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "BUDGET must be a positive number of minutes (got 'abc')" "$W/run5.log" &&
    ok "BUDGET=abc: exit 1 with a clear error" || bad "BUDGET=abc: exit $rc, $(cat "$W/run5.log")"
# conflux-corpus's news format on damaged input: a broken record is reported with its file
# and line and skipped; a truncated gzip file is an error naming the file
printf '{"title": "Заголовок", "text": "Текст статьи на русском языке, достаточно длинный."}\n{broken\n' >"$W/bad.json"
"$BUILD/bin/conflux-corpus" --quiet --out "$W/bc" "news:$W/bad.json" >/dev/null 2>"$W/bc.err"
rc=$?
[ $rc = 0 ] && grep -q "news: $W/bad.json:2: skipped (syntax)" "$W/bc.err" && [ "$(wc -l <"$W/bc/train.txt")" = 1 ] &&
    ok "conflux-corpus news: a broken record is reported with file:line and skipped, the other kept" ||
    bad "conflux-corpus news on a broken record: exit $rc, $(cat "$W/bc.err")"
head -c 3000 "$NEWS/train/rt_ng_valid.json.gz" >"$W/trunc.json.gz"
"$BUILD/bin/conflux-corpus" --quiet --out "$W/tc" "news:$W/trunc.json.gz" >/dev/null 2>"$W/tc.err"
rc=$?
[ $rc = 1 ] && grep -q "error: $W/trunc.json.gz: truncated gzip stream" "$W/tc.err" && [ ! -e "$W/tc/train.txt" ] &&
    ok "conflux-corpus news: a truncated gzip file: exit 1, $(cut -c1-90 "$W/tc.err")" ||
    bad "conflux-corpus news on a truncated file: exit $rc, $(cat "$W/tc.err")"
echo "$fails failure(s)"
[ "$fails" -eq 0 ]
