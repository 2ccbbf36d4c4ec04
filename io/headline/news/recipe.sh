#!/usr/bin/env bash
# recipe.sh: a headline model for real news, end to end, within a time budget (make
# headline-news). Each stage skips what is done and resumes what was stopped, so running
# it again continues where the last run's budget ran out:
#   1. data: news bodies and titles -> corpus (conflux-corpus news:) -> byte-level BPE
#      tokenizer -> token shards; (article, title) pair shards and (the rest of the
#      article, its first sentence) pair shards (conflux-headline prepare [--target lead])
#   2. MLM pretraining of the ALBERT encoder on the news corpus (conflux-train, mlm.ini)
#   3. mBART denoising of the whole encoder-decoder with the pointer-generator on the same
#      news text (conflux-headline train --objective denoise, denoise.ini), the encoder
#      from stage 2: the decoder learns the language and to copy before it sees a title
#   4. lead pretraining (conflux-headline train, lead.ini), every weight from stage 3: the
#      model writes each article's first sentence from the rest of it, a summary of the
#      news in the news's own words (Yang et al. 2020, TED's lead pretraining), before the
#      7,643 titles
#   5. BertSumAbs fine-tuning (conflux-headline train, finetune.ini), every weight from
#      stage 4; with MEMBERS=K, K such fine-tunings with seeds of their own (the data order
#      and dropout), each a member of an ensemble
#   6. ROUGE on the validation set and the extra news files, next to the first-sentence
#      baseline (conflux-headline evaluate, in the words of the training text: --lexicon;
#      minimum Bayes risk decoding over 256 samples: --mbr; the ensemble of the K fine-tuned
#      models, the mean of their distributions), written to WORK/eval.txt
# A stage that runs out of budget is sent SIGTERM: the trainer checkpoints at the next step
# and exits; the next run resumes from WORK/runs/STAGE/latest.h5 with the same learning-rate
# schedule. A finished stage asked for more steps (MLM_SET/DN_SET/LEAD_SET/FT_SET "--set train.steps=N")
# continues from its last step; the stages after it, started from its earlier checkpoint,
# are then moved aside (WORK/runs/STAGE.before-DATE, kept) and run again from the new one. Progress (step, loss, tokens/s, ETA) comes from the trainers.
#
# usage: io/headline/news/recipe.sh BUILD_DIR WORK_DIR BUDGET_MINUTES
# environment (defaults in brackets):
#   NEWS_TRAIN  training articles: RIA JSON lines, Lenta/ODS CSV, gzip or plain
#               [../shared/data/news/train/rt_ng_train.json.gz]
#   NEWS_VALID  validation articles, scored at the end [../shared/data/news/train/rt_ng_valid.json.gz]
#   NEWS_EXTRA  more files scored at the end, each a source of its own [the RIA, Lenta and
#               ODS samples of ../shared/data/news, where present]
#   VOCAB       tokenizer vocabulary [16384]
#   SRC_LEN, TGT_LEN  article and title tokens kept [256, 48]
#   MLM_SET, DN_SET, LEAD_SET, FT_SET  extra "--set section.key=value" arguments for
#               stages 2, 3, 4 and 5, e.g.
#               FT_SET="--set train.steps=20000 --set train.global_batch=64"
#   EVAL_ARGS   decoding options of the evaluation [--lexicon WORK/corpus/train.txt --alpha 1.5
#               --mbr 256 --mbr-utility r2 --mbr-article 0.08: headlines in the words of the
#               training text and of the article, GNMT length penalty 1.5, minimum Bayes risk
#               over 256 samples and the beam's headline with ROUGE-2 as the utility, plus 0.08
#               times the share of a headline's bigrams found in its article]; add
#               "--checkpoint CKPT" for each more model of an ensemble
#   PREP_ARGS   extra arguments of conflux-headline prepare for the training pairs
#               (e.g. "--lowercase --limit 980000")
#   THREADS     train.threads [0: the CPUs]
#   MEMBERS     fine-tuned models decoded as one ensemble, 1 to 8 [1]: member 1 is
#               WORK/runs/headline, member K WORK/runs/headline-K (train.seed 1233 + K);
#               each costs one more fine-tuning stage
set -uo pipefail
BUILD=${1:?usage: recipe.sh BUILD_DIR WORK_DIR BUDGET_MINUTES}
W=${2:?usage: recipe.sh BUILD_DIR WORK_DIR BUDGET_MINUTES}
BUDGET=${3:?usage: recipe.sh BUILD_DIR WORK_DIR BUDGET_MINUTES}
HERE=$(cd "$(dirname "$0")" && pwd)
NEWS=${NEWS_DIR:-../shared/data/news}
NEWS_TRAIN=${NEWS_TRAIN:-$NEWS/train/rt_ng_train.json.gz}
NEWS_VALID=${NEWS_VALID:-$NEWS/train/rt_ng_valid.json.gz}
if [ -z "${NEWS_EXTRA+x}" ]; then
    NEWS_EXTRA=""
    for f in "$NEWS/ria_20.json" "$NEWS/lenta-ru-news.csv.gz" "$NEWS"/ods/*.csv.gz; do
        [ -f "$f" ] && NEWS_EXTRA+="$f "
    done
fi
VOCAB=${VOCAB:-16384}
SRC_LEN=${SRC_LEN:-256}
TGT_LEN=${TGT_LEN:-48}
THREADS=${THREADS:-0}
MEMBERS=${MEMBERS:-1}
# words of the variables (several lines allowed)
words() { local -n out_=$1; read -r -d '' -a out_ <<<"$2" || true; }
words MLM_SET_A "${MLM_SET:-}"
words DN_SET_A "${DN_SET:-}"
words LEAD_SET_A "${LEAD_SET:-}"
words FT_SET_A "${FT_SET:-}"
words PREP_A "${PREP_ARGS:-}"
words EXTRA_A "$NEWS_EXTRA"
T=$BUILD/bin
say() { echo "headline-news: $*"; }
die() { echo "headline-news: error: $*" >&2; exit 1; }
[[ $MEMBERS =~ ^[1-8]$ ]] || die "MEMBERS must be 1 to 8 fine-tuned models (got '$MEMBERS')"

deadline=$(awk -v b="$BUDGET" -v t="$(date +%s)" 'BEGIN { if (b + 0 <= 0) exit 1; printf "%d", t + b * 60 }') ||
    die "BUDGET must be a positive number of minutes (got '$BUDGET')"
left() { echo $((deadline - $(date +%s))); }
for t in conflux-corpus conflux-tokenizer conflux-train conflux-headline; do
    [ -x "$T/$t" ] || die "$T/$t is not built (make tools)"
done
for f in "$NEWS_TRAIN" "$NEWS_VALID"; do
    [ -f "$f" ] || die "no news file $f (set NEWS_TRAIN / NEWS_VALID)"
done
mkdir -p "$W/runs" || die "cannot create $W"

# WORK belongs to one set of inputs: a second run with other data would mix them
inputs="train=$(readlink -f "$NEWS_TRAIN") $(stat -c %s "$NEWS_TRAIN") valid=$(readlink -f "$NEWS_VALID") vocab=$VOCAB len=$SRC_LEN/$TGT_LEN prep=${PREP_ARGS:-}"
if [ -f "$W/inputs" ]; then
    [ "$(cat "$W/inputs")" = "$inputs" ] ||
        die "$W was made from other inputs ($(cat "$W/inputs")); use another WORK_DIR or remove it"
else
    echo "$inputs" >"$W/inputs"
fi

# stop_here STAGE RUN_DIR: the budget ran out in STAGE
stop_here() {
    local step
    step=$(tail -n 1 "$2/metrics.csv" 2>/dev/null | cut -d, -f2)
    say "budget of $BUDGET min spent during $1 (step ${step:-0}; checkpoint $2/latest.h5)."
    say "run the same command again to resume."
    exit 0
}

# upstream RUN_DIR: the checkpoint a finished stage ended with, resolved; the next stage
# starts from this file
upstream() { readlink -f "$1/latest.h5"; }
# ckpt_id FILE: a checkpoint's path and the SHA-256 of its bytes (a stage that was run again
# for the same number of steps writes a new file under the same name)
ckpt_id() {
    local sum
    sum=$(sha256sum <"$1") || die "cannot read $1"
    echo "$1 ${sum%% *}"
}

# set_aside_if_stale STAGE RUN_DIR FROM: RUN_DIR was started from another checkpoint than
# FROM (the stage before it has trained on since, e.g. DN_SET="--set train.steps=N"), so it
# is moved to RUN_DIR.before-DATE, kept, and the stage starts again from FROM. RUN_DIR/from
# names the checkpoint a run started from (ckpt_id); a run made before that record existed
# is stale when FROM is newer than its first checkpoint
set_aside_if_stale() {
    local stage=$1 run=$2 from=$3 first
    first=$(ls "$run"/checkpoint-*.h5 2>/dev/null | head -n 1)
    [ -n "$first" ] || return 0
    if [ -f "$run/from" ]; then
        local id; id=$(ckpt_id "$from") || exit 1
        [ "$(cat "$run/from")" != "$id" ] || return 0
    else
        [ "$from" -nt "$first" ] || return 0
    fi
    local old
    old=$run.before-$(date +%Y%m%d-%H%M%S)
    local n=1 base=$old
    while [ -e "$old" ]; do old=$base-$((n += 1)); done
    mv "$run" "$old" || die "$stage: cannot move $run aside to $old"
    say "$stage: $run was started from another checkpoint than $from (the stage before it has trained on): starting again; the earlier run is kept in $old"
}

# train STAGE RUN_DIR TOOL ARGS SETS [FROM]: runs a trainer (the names of three arrays: the
# tool's command, its arguments, the user's --set arguments), or resumes RUN_DIR's latest
# checkpoint (its configuration is the base; the same arguments go on top, as the data
# paths never come from a checkpoint), until it finishes or the budget ends. FROM is the
# checkpoint the stage is initialised from (the previous stage's); a run started from
# another one is set aside and started again
train() {
    local stage=$1 run=$2 from=${6:-}
    local -n tool_=$3 args_=$4 sets_=$5
    [ -z "$from" ] || set_aside_if_stale "$stage" "$run" "$from"
    if [ -f "$run/finished" ]; then
        # done, unless the configuration now asks for more steps (FT_SET="--set train.steps=N")
        local want done_at
        done_at=$(cat "$run/finished")
        want=$("${tool_[@]}" "${args_[@]}" "${sets_[@]}" --print-config 2>/dev/null |
            awk '/^\[/ { t = ($1 == "[train]") } t && $1 == "steps" { print $3; exit }')
        if [ -z "$want" ] || [ "$want" -le "$done_at" ]; then
            say "$stage: done ($run, $done_at steps)"
            return 0
        fi
        say "$stage: extending from step $done_at to $want"
        rm -f "$run/finished"
    fi
    local l; l=$(left)
    [ "$l" -gt 5 ] || stop_here "$stage" "$run"
    local cmd
    if [ -f "$run/latest.h5" ]; then
        say "$stage: resuming $run/latest.h5 (at most $l s)"
        cmd=("${tool_[@]}" --resume "$run/latest.h5" "${args_[@]}")
    else
        say "$stage: starting in $run (at most $l s)"
        cmd=("${tool_[@]}" "${args_[@]}")
        if [ -n "$from" ]; then
            local id; id=$(ckpt_id "$from") || exit 1
            mkdir -p "$run" && echo "$id" >"$run/from" || die "cannot write $run/from"
        fi
    fi
    timeout -s TERM -k 300 "$l" "${cmd[@]}" --set "train.threads=$THREADS" "${sets_[@]}"
    local rc=$?
    [ -f "$run/finished" ] && return 0
    [ $rc = 124 ] || [ $rc = 0 ] || die "$stage failed (exit $rc); see the lines above"
    stop_here "$stage" "$run"
}

# ---- 1. data
if [ ! -s "$W/corpus/train.txt" ]; then
    say "data: corpus of the news bodies and titles"
    "$T/conflux-corpus" --out "$W/corpus" --valid-percent 2 "news=news:$NEWS_TRAIN" || die "conflux-corpus failed"
fi
if [ ! -s "$W/tokenizer/vocab.json" ]; then
    say "data: tokenizer ($VOCAB tokens)"
    "$T/conflux-tokenizer" train --vocab-size "$VOCAB" --out "$W/tokenizer" "$W/corpus/train.txt" ||
        die "tokenizer training failed"
fi
for s in train valid; do
    if [ ! -s "$W/$s.h5" ]; then
        "$T/conflux-tokenizer" shard --tokenizer "$W/tokenizer" --out "$W/$s.h5" "$W/corpus/$s.txt" ||
            die "token shard $s failed"
    fi
done
if [ ! -s "$W/pairs_train.h5" ]; then
    "$T/conflux-headline" prepare --tokenizer "$W/tokenizer" --max-src "$SRC_LEN" --max-tgt "$TGT_LEN" \
        "${PREP_A[@]}" --out "$W/pairs_train.h5" "$NEWS_TRAIN" || die "prepare (train) failed"
fi
if [ ! -s "$W/pairs_valid.h5" ]; then
    "$T/conflux-headline" prepare --tokenizer "$W/tokenizer" --max-src "$SRC_LEN" --max-tgt "$TGT_LEN" \
        --out "$W/pairs_valid.h5" "$NEWS_VALID" || die "prepare (valid) failed"
fi
for s in train valid; do
    f=$NEWS_TRAIN; [ $s = valid ] && f=$NEWS_VALID
    if [ ! -s "$W/lead_$s.h5" ]; then
        "$T/conflux-headline" prepare --target lead --tokenizer "$W/tokenizer" --max-src "$SRC_LEN" \
            --max-tgt "$TGT_LEN" --out "$W/lead_$s.h5" "$f" || die "prepare (lead, $s) failed"
    fi
done

# ---- 2. MLM pretraining of the encoder
mlm_tool=("$T/conflux-train")
mlm_args=(--config "$HERE/mlm.ini" --set "model.vocab_size=$VOCAB" --set "data.train=$W/train.h5"
          --set "data.valid=$W/valid.h5" --set "data.tokenizer=$W/tokenizer"
          --set "run.dir=$W/runs/mlm")
train "pretraining (MLM)" "$W/runs/mlm" mlm_tool mlm_args MLM_SET_A

# ---- 3. denoising pretraining of the encoder-decoder
dn_tool=("$T/conflux-headline" train)
from=$(upstream "$W/runs/mlm")
dn_args=(--config "$HERE/denoise.ini" --init-encoder "$from"
         --train "$W/train.h5" --valid "$W/valid.h5" --set "data.tokenizer=$W/tokenizer"
         --set "run.dir=$W/runs/denoise")
train "pretraining (denoising)" "$W/runs/denoise" dn_tool dn_args DN_SET_A "$from"

# ---- 4. lead pretraining: the first sentence from the rest of the article
lead_tool=("$T/conflux-headline" train)
from=$(upstream "$W/runs/denoise")
lead_args=(--config "$HERE/lead.ini" --init "$from"
           --train "$W/lead_train.h5" --valid "$W/lead_valid.h5"
           --set "data.tokenizer=$W/tokenizer" --set "data.src_len=$SRC_LEN"
           --set "data.tgt_len=$TGT_LEN" --set "run.dir=$W/runs/lead")
train "pretraining (lead)" "$W/runs/lead" lead_tool lead_args LEAD_SET_A "$from"

# ---- 5. fine-tuning with the copy mechanism
ft_tool=("$T/conflux-headline" train)
from=$(upstream "$W/runs/lead")
ft_args=(--config "$HERE/finetune.ini" --init "$from"
         --train "$W/pairs_train.h5" --valid "$W/pairs_valid.h5"
         --set "data.tokenizer=$W/tokenizer" --set "data.src_len=$SRC_LEN"
         --set "data.tgt_len=$TGT_LEN" --set "run.dir=$W/runs/headline")
train "fine-tuning (BertSumAbs + pointer-generator)" "$W/runs/headline" ft_tool ft_args FT_SET_A "$from"
# the ensemble's other members: the same fine-tuning with another seed (data order, dropout)
members=("$W/runs/headline/latest.h5")
for ((i = 2; i <= MEMBERS; i++)); do
    run=$W/runs/headline-$i
    mem_args=("${ft_args[@]}" --set "run.dir=$run" --set "train.seed=$((1233 + i))")
    train "fine-tuning, ensemble member $i of $MEMBERS" "$run" ft_tool mem_args FT_SET_A "$from"
    members+=("$run/latest.h5")
done

# ---- 6. evaluation
ck=${members[0]}
eval_args="" newer=0
for m in "${members[@]}"; do
    eval_args+="--checkpoint $m "
    [ "$m" -nt "$W/eval.txt" ] && newer=1
done
eval_args+="${EVAL_ARGS---lexicon $W/corpus/train.txt --alpha 1.5 --mbr 256 --mbr-utility r2 --mbr-article 0.08}"
words EVAL_A "$eval_args"
if [ ! -s "$W/eval.txt" ] || [ $newer = 1 ] || [ "$(cat "$W/eval.args" 2>/dev/null)" != "$eval_args" ]; then
    l=$(left)
    [ "$l" -gt 5 ] || { say "budget spent before the evaluation; run again to evaluate."; exit 0; }
    say "evaluation of ${members[*]} (at most $l s)"
    thr=(); [ "$THREADS" -gt 0 ] && thr=(--threads "$THREADS")
    timeout -s TERM "$l" "$T/conflux-headline" evaluate "${EVAL_A[@]}" "${thr[@]}" \
        --hyps-out "$W/hyps.tsv" --show 10 "$NEWS_VALID" "${EXTRA_A[@]}" >"$W/eval.tmp" 2>"$W/eval.log"
    rc=$?
    [ $rc = 124 ] && { say "budget spent during the evaluation; run again to evaluate."; exit 0; }
    [ $rc = 0 ] || { cat "$W/eval.log" >&2; die "evaluate failed (exit $rc)"; }
    mv "$W/eval.tmp" "$W/eval.txt"
    echo "$eval_args" >"$W/eval.args"
fi
cat "$W/eval.txt"
say "examples: $W/eval.log; headlines: $W/hyps.tsv"
say "checkpoint: $ck"
if ((MEMBERS > 1)); then say "ensemble members: ${members[*]}"; fi
