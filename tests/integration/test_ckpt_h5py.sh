#!/bin/bash
# test_ckpt_h5py.sh BUILD_DIR: a checkpoint written by conflux (ckpt_save) is readable by
# h5dump and by h5py + PyTorch (tests/ref/read_checkpoint.py builds the state_dict).
#   bash tests/integration/test_ckpt_h5py.sh build/release
# Skipped (tests/lib.sh's skip) when /usr/bin/python3 lacks h5py or torch.
set -euo pipefail

build=${1:?usage: tests/integration/test_ckpt_h5py.sh BUILD_DIR (e.g. build/release)}
py=/usr/bin/python3
here=$(cd "$(dirname "$0")/.." && pwd)  # tests/
bin="$build/tests/unit/test_ckpt"
source "$here/lib.sh"   # skip, skip_check

if [ ! -x "$py" ] || ! "$py" -c 'import h5py, torch, numpy' 2>/dev/null; then
    skip "$py lacks h5py or torch (Debian: python3-h5py python3-torch)"
fi
if [ ! -x "$bin" ]; then
    echo "FAIL: $bin not built (make $bin)"
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ckpt="$tmp/sample.h5"

# Write the sample checkpoint (only the test that does it).
if ! CONFLUX_KEEP_CKPT="$ckpt" "$bin" "CONFLUX_KEEP_CKPT" >"$tmp/log" 2>&1; then
    cat "$tmp/log"
    echo "FAIL: $bin could not write the sample checkpoint"
    exit 1
fi
if [ ! -s "$ckpt" ]; then
    echo "FAIL: no checkpoint at $ckpt"
    exit 1
fi

# h5dump: header, attributes and the data of a parameter (Fletcher32 checked on read).
if command -v h5dump >/dev/null; then
    h5dump -H "$ckpt" >"$tmp/header" || { echo "FAIL: h5dump -H"; exit 1; }
    h5dump -a /format "$ckpt" | grep -q '"conflux-checkpoint"' ||
        { echo "FAIL: h5dump does not show format=conflux-checkpoint"; exit 1; }
    h5dump -d /params/predictions.bias "$ckpt" >/dev/null ||
        { echo "FAIL: h5dump cannot read /params/predictions.bias"; exit 1; }
    h5dump -d /config "$ckpt" | grep -q 'vocab_size = 67' ||
        { echo "FAIL: h5dump does not show /config"; exit 1; }
    echo "h5dump: ok"
else
    skip_check "h5dump part: h5dump not installed (Debian: hdf5-tools)"
fi

"$py" "$here/ref/read_checkpoint.py" "$ckpt" \
    --expect albert.embeddings.word_embeddings.weight=67x8 \
    --expect albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight=12x12 \
    --expect predictions.bias=67 --expect big.weight=300x1000 --expect tiny.scale=1 \
    --expect scalar.temperature= --expect four.d=2x3x4x5 \
    --expect predictions.decoder.weight=67x8 \
    --alias predictions.decoder.weight=albert.embeddings.word_embeddings.weight \
    --alias predictions.decoder.bias=predictions.bias \
    --optim lamb
[ "$fails" = 0 ] || exit 1
echo "PASS: test_ckpt_h5py"
