#!/bin/bash
# test_images.sh BUILD_DIR [DATA_DIR]: conflux-images on the command line, and its image shards
# against an independent reader.
#   bash tests/integration/test_images.sh build/release build/data
# Part 1: the CLI contract: --help, exit status 0/1/2 and "conflux-images: error: what
#   (where)" messages (no command, unknown option, missing file, label count mismatch).
# Part 2: Debian's Fashion-MNIST test split through conflux-images shard, read back with h5py
#   and compared with the IDX files parsed in Python (gzip + struct, the format's definition),
#   pixel for pixel and label for label; `info` counts 1,000 images per class.
set -uo pipefail

build=${1:?usage: tests/integration/test_images.sh BUILD_DIR [DATA_DIR]}
here=$(cd "$(dirname "$0")/.." && pwd)
tool="$build/bin/conflux-images"
py=/usr/bin/python3
fm=/usr/share/datasets/fashion-mnist
source "$here/lib.sh"
[ -x "$tool" ] || { echo "FAIL: $tool not built (make tools)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect RC CMD...: runs CMD (stdout -> $tmp/out, stderr -> $tmp/err), checks the status
expect() {
    local want=$1; shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -ne "$want" ]; then bad "exit $rc, expected $want: $*"; sed 's/^/    | /' "$tmp/err"; return 1; fi
    return 0
}
# err_is TEXT: stderr's first line is exactly TEXT (a usage error adds a "Try ... --help" line)
err_is() { if [ "$(head -1 "$tmp/err")" = "$1" ]; then ok "message: $1"; else bad "stderr '$(cat "$tmp/err")', expected '$1'"; fi; }

expect 0 "$tool" --help && grep -q '^usage: conflux-images shard' "$tmp/out" && ok "--help"
expect 2 "$tool" && err_is "conflux-images: error: missing command: shard or info"
expect 2 "$tool" shard --images a --bogus && err_is "conflux-images: error: unknown option '--bogus'"
expect 2 "$tool" shard --images a && err_is "conflux-images: error: shard needs --images, --labels and --out"
expect 2 "$tool" shard --images a --labels b --out c --classes 0 &&
    err_is "conflux-images: error: --classes must be an integer in [1, 256] (got '0')"
expect 1 "$tool" shard --images "$tmp/none.gz" --labels "$tmp/none.gz" --out "$tmp/x.h5" &&
    err_is "conflux-images: error: IDX file $tmp/none.gz: cannot open: No such file or directory"
expect 1 "$tool" info "$tmp/none.h5" &&
    err_is "conflux-images: error: cannot open image shard $tmp/none.h5: No such file or directory"

if [ ! -r "$fm/t10k-images-idx3-ubyte.gz" ]; then
    skip_check "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
elif [ ! -x "$py" ]; then
    skip_check "$py with h5py is missing (python3-h5py)"
else
    # labels of the training split with the test split's images: counts differ
    expect 1 "$tool" shard --images "$fm/t10k-images-idx3-ubyte.gz" --labels "$fm/train-labels-idx1-ubyte.gz" --out "$tmp/m.h5" &&
        err_is "conflux-images: error: 60000 labels for 10000 images ($fm/train-labels-idx1-ubyte.gz, $fm/t10k-images-idx3-ubyte.gz)"
    [ ! -e "$tmp/m.h5" ] && ok "nothing written on failure"
    expect 0 "$tool" shard --images "$fm/t10k-images-idx3-ubyte.gz" --labels "$fm/t10k-labels-idx1-ubyte.gz" \
        --out "$tmp/test.h5" --source "fashion-mnist test" &&
        grep -qx "$tmp/test.h5: 10000 images of 28x28, 10 classes, source \"fashion-mnist test\"" "$tmp/out" && ok "shard: $(cat "$tmp/out")"
    expect 0 "$tool" info "$tmp/test.h5" &&
        grep -qx "per class: 1000 1000 1000 1000 1000 1000 1000 1000 1000 1000" "$tmp/out" && ok "info: per class 1000"
    if "$py" - "$fm" "$tmp/test.h5" <<'PY'; then ok "h5py reads the IDX files' pixels and labels exactly"; else bad "h5py against the IDX files"; fi
import gzip, struct, sys
import h5py, numpy as np
fm, path = sys.argv[1], sys.argv[2]
def idx(name):
    raw = gzip.open(f"{fm}/{name}", "rb").read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and dtype == 8, (zero, dtype)
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)
img, lab = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
with h5py.File(path, "r") as f:
    ok = (f.attrs["format"] in (b"conflux-images", "conflux-images") and int(f.attrs["version"]) == 1
          and int(f.attrs["classes"]) == 10 and f["images"].dtype == np.uint8
          and f["images"].shape == (10000, 28, 28) and np.array_equal(f["images"][()], img)
          and np.array_equal(f["labels"][()], lab))
print("images", img.shape, "labels", lab.shape, "equal" if ok else "DIFFER")
sys.exit(0 if ok else 1)
PY
fi

echo
if [ $fails -gt 0 ]; then echo "$fails check(s) failed"; exit 1; fi
echo "all image checks passed"
