#!/usr/bin/env bash
# build-corpus.sh: builds the Russian pretraining corpus from Debian packages.
#
#   bash io/corpus/build-corpus.sh DATA_DIR PATH/TO/conflux-corpus
#
# 1. Downloads the packages below with `apt-get download` into DATA_DIR/debs (a cache:
#    a package already there is not fetched again; `apt-get update` runs, into a private
#    list directory, only when a download fails), unpacks each with `dpkg-deb -x`
#    (nothing is installed) and keeps only the directories the sources read, in
#    DATA_DIR/extract/PKG.
# 2. Fetches Debian's Russian package descriptions once with
#    `apt-get -o Acquire::Languages=ru update` into a private list directory (so no root
#    is needed and the system's apt lists and settings stay as they are) and keeps a
#    decompressed copy in DATA_DIR/debtrans/Translation-ru.
# 3. Runs conflux-corpus, which writes DATA_DIR/corpus/train.txt, valid.txt and
#    stats.txt (each to a temporary name, then renamed) and prints the statistics.
# Nothing here needs root. Running it again reuses the downloads, the unpacked trees and
# Translation-ru, and rebuilds the same corpus. Exit status: 0 success, 1 failure (a package that cannot be had, a tool
# error), 2 usage error.
set -euo pipefail
shopt -s extglob nullglob

PROG=build-corpus
die() { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

if [ $# -ne 2 ] || [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
    echo "usage: bash io/corpus/build-corpus.sh DATA_DIR PATH/TO/conflux-corpus" >&2
    [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ] && exit 0
    exit 2
fi
# absolute: apt resolves a relative Dir::State::Lists against /var/lib/apt
mkdir -p "$1" || die "cannot create $1"
DATA=$(cd "$1" && pwd) || die "cannot enter $1"
TOOL=$2
[ -x "$TOOL" ] || die "conflux-corpus is not an executable file ($TOOL)"
for cmd in apt-get apt-cache dpkg-deb dpkg; do
    command -v "$cmd" >/dev/null || die "command not found: $cmd (this script needs Debian's apt)"
done
START=$SECONDS
ARCH=$(dpkg --print-architecture)
DEBS=$DATA/debs
X=$DATA/extract
mkdir -p "$DEBS" "$X"
APT_OPTS=(-q)
# as root, apt would hand downloads to the _apt user, who cannot write into DATA_DIR
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o APT::Sandbox::User=root)

# Sources, in processing order (order decides which copy of a repeated paragraph is kept).
#   package  label  format[,min=N]  path(s) inside the package (globs; @ARCH@ = dpkg arch)
SOURCES="
fortunes-ru                    fortunes-ru             fortune       usr/share/games/fortunes/ru
manpages-ru                    manpages-ru             man           usr/share/man/ru
manpages-ru-dev                manpages-ru-dev         man           usr/share/man/ru
passwd                         man-misc                man           usr/share/man/ru
login                          man-misc                man           usr/share/man/ru
man-db                         man-misc                man           usr/share/man/ru
psmisc                         man-misc                man           usr/share/man/ru
debconf-doc                    man-misc                man           usr/share/man/ru
aptitude-common                man-misc                man           usr/share/man/ru
mc-data                        man-misc                man           usr/share/man/ru
debian-handbook                debian-handbook         html          usr/share/doc/debian-handbook/html/ru-RU
installation-guide-@ARCH@      installation-guide      html          usr/share/doc/installation-guide-@ARCH@/ru
debian-faq-ru                  debian-faq-ru           html          usr/share/doc/debian/FAQ/ru
maint-guide-ru                 maint-guide-ru          html          usr/share/doc/maint-guide-ru/html
developers-reference-ru        developers-reference-ru html          usr/share/developers-reference/ru/!(developers-reference|search).html
debian-history                 debian-history          html          usr/share/doc/debian-history/docs/*.ru.html
aptitude-doc-ru                aptitude-doc-ru         html          usr/share/doc/aptitude/html/ru
ubuntu-packaging-guide-html-ru ubuntu-packaging-guide  html          usr/share/doc/ubuntu-packaging-guide-html-ru/*.html
libreoffice-help-ru            libreoffice-help-ru     html          usr/share/libreoffice/help/ru
libreoffice-l10n-ru            libreoffice-l10n-ru     mo,min=40     usr/lib/libreoffice/program/resource/ru
gimp-help-ru                   gimp-help-ru            html          usr/share/gimp/2.0/help/ru
gnome-user-docs                gnome-user-docs         xml           usr/share/help/ru
doublecmd-help-ru              doublecmd-help-ru       html          usr/share/doublecmd/doc/ru
freeciv-data                   freeciv-data            mo,min=40     usr/share/locale/ru/LC_MESSAGES
"
SOURCES=${SOURCES//@ARCH@/$ARCH}
mapfile -t PKGS < <(awk 'NF { print $1 }' <<<"$SOURCES" | awk '!seen[$0]++')

# A private apt list directory, filled by `apt-get update` with Acquire::Languages=ru for
# that one command: needs no root and leaves the system's lists and settings alone. It
# serves the Translation-ru step and a retry when a download fails; removed on exit.
APT_TMP=$DATA/.apt-lists.$$
APT_PRIV=(-o Dir::State::Lists="$APT_TMP/lists" -o Dir::Cache="$APT_TMP/cache")
trap 'rm -rf "$APT_TMP"' EXIT
private_update() {
    [ -d "$APT_TMP/lists" ] && [ -f "$APT_TMP/.done" ] && return 0
    rm -rf "$APT_TMP"
    mkdir -p "$APT_TMP/lists/partial" "$APT_TMP/cache/archives/partial"
    note "refreshing package lists (apt-get -o Acquire::Languages=ru update, lists in $APT_TMP)"
    apt-get "${APT_OPTS[@]}" "${APT_PRIV[@]}" -o Acquire::Languages=ru update >&2 ||
        die "apt-get -o Acquire::Languages=ru update failed (is the Debian mirror reachable?)"
    touch "$APT_TMP/.done"
}

# ---- 1. download ----
cached_deb() {  # newest cached .deb of package $1, or nothing
    local f=("$DEBS/$1"_*.deb)
    [ ${#f[@]} -gt 0 ] && printf '%s\n' "${f[@]}" | sort -V | tail -n 1
    return 0
}
missing=()
for p in "${PKGS[@]}"; do
    [ -n "$(cached_deb "$p")" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "downloading ${#missing[@]} packages: ${missing[*]}"
    if ! (cd "$DEBS" && apt-get "${APT_OPTS[@]}" download "${missing[@]}") >&2; then
        note "apt-get download failed; refreshing the package lists and retrying"
        private_update
        still=()
        for p in "${missing[@]}"; do [ -n "$(cached_deb "$p")" ] || still+=("$p"); done
        if [ ${#still[@]} -gt 0 ]; then
            (cd "$DEBS" && apt-get "${APT_OPTS[@]}" "${APT_PRIV[@]}" download "${still[@]}") >&2 ||
                die "cannot download packages: ${still[*]} (apt-get download; is the Debian mirror reachable, and do they exist for $ARCH? see 'apt-cache policy PKG')"
        fi
    fi
    for p in "${missing[@]}"; do
        [ -n "$(cached_deb "$p")" ] || die "package not downloaded: $p (apt-get download into $DEBS)"
    done
fi

# ---- unpack what the sources need (once per .deb and path list; a stamp records both) ----
deb_bytes=0
for p in "${PKGS[@]}"; do
    deb=$(cached_deb "$p")
    deb_bytes=$((deb_bytes + $(stat -c %s "$deb")))
    # the directory above each source path's first glob: that subtree is unpacked
    members=()
    while read -r _ _ _ path; do
        dir=""
        IFS=/ read -ra parts <<<"$path"
        for c in "${parts[@]}"; do
            case $c in *[\*\?\[\(\!@+]*) break ;; esac
            dir=${dir:+$dir/}$c
        done
        members+=("./$dir")
    done < <(awk -v p="$p" '$1 == p' <<<"$SOURCES")
    want="$(basename "$deb") ${members[*]}"
    stamp=$X/$p/.conflux-deb
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        continue
    fi
    # unpack everything (hard links may point outside the subtrees), keep the subtrees
    tmp=$X/.$p.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp/all" "$tmp/keep"
    dpkg-deb -x "$deb" "$tmp/all" || { rm -rf "$tmp"; die "cannot unpack $deb (dpkg-deb -x)"; }
    kept=""
    for m in $(printf '%s\n' "${members[@]}" | sort -u); do
        [ -n "$kept" ] && [[ $m == "$kept"/* ]] && continue  # inside a subtree already kept
        if [ ! -e "$tmp/all/$m" ]; then
            rm -rf "$tmp"
            die "package $p has no ${m#./} ($deb); has its layout changed?"
        fi
        mkdir -p "$tmp/keep/$(dirname "$m")"
        mv "$tmp/all/$m" "$tmp/keep/$m"
        kept=$m
    done
    # images, fonts and the like are never read: do not keep them
    find "$tmp/keep" -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o \
        -iname '*.gif' -o -iname '*.svg' -o -iname '*.webp' -o -iname '*.ico' -o \
        -iname '*.woff' -o -iname '*.woff2' -o -iname '*.ttf' -o -iname '*.otf' -o \
        -iname '*.pdf' -o -iname '*.epub' -o -iname '*.ods' -o -iname '*.ogg' \) -delete
    echo "$want" >"$tmp/keep/.conflux-deb"
    rm -rf "${X:?}/$p"
    mv "$tmp/keep" "$X/$p"
    rm -rf "$tmp"
done
note "$(awk -v n="${#PKGS[@]}" -v b="$deb_bytes" -v d="$DEBS" 'BEGIN { printf "%d packages, %.1f MB of .deb files in %s", n, b / 1e6, d }')"

# ---- 2. Debian's Russian package descriptions ----
TR_DIR=$DATA/debtrans
TR=$TR_DIR/Translation-ru
if [ ! -s "$TR" ]; then
    private_update
    lists=("$APT_TMP"/lists/*_i18n_Translation-ru "$APT_TMP"/lists/*_i18n_Translation-ru.*)
    [ ${#lists[@]} -gt 0 ] ||
        die "no Translation-ru index after apt-get update (lists/*_i18n_Translation-ru*); does the mirror carry i18n files?"
    mkdir -p "$TR_DIR"
    : >"$TR.tmp.$$"
    for f in "${lists[@]}"; do
        case "$f" in
        *.lz4) command -v lz4 >/dev/null || die "lz4 is needed to read $f (apt-get install lz4)"
               lz4 -dc "$f" ;;
        *.gz) gzip -dc "$f" ;;
        *.xz) xz -dc "$f" ;;
        *.zst) zstd -dc "$f" ;;
        *.bz2) bzip2 -dc "$f" ;;
        *) cat "$f" ;;
        esac >>"$TR.tmp.$$" || { rm -f "$TR.tmp.$$"; die "cannot decompress $f"; }
        echo >>"$TR.tmp.$$"
    done
    mv "$TR.tmp.$$" "$TR"
fi

# ---- 3. build ----
specs=()
while read -r pkg label fmt path; do
    [ -n "$pkg" ] || continue
    # shellcheck disable=SC2206  # the path is a glob, meant to expand (no spaces in it)
    matches=("$X/$pkg/"$path)
    [ ${#matches[@]} -gt 0 ] || die "package $pkg has no $path (unpacked in $X/$pkg); has its layout changed?"
    for m in "${matches[@]}"; do
        [ -e "$m" ] || die "package $pkg has no $path (unpacked in $X/$pkg); has its layout changed?"
        specs+=("$label=$fmt:$m")
    done
done <<<"$SOURCES"
specs+=("Translation-ru=debtrans:$TR")

note "running $TOOL over ${#specs[@]} sources"
"$TOOL" --out "$DATA/corpus" "${specs[@]}" || die "conflux-corpus failed (exit $?)"
elapsed=$((SECONDS - START))
for f in train valid; do
    p=$DATA/corpus/$f.txt
    note "$(printf '%-5s %s: %d documents (lines), %d bytes' "$f" "$p" "$(wc -l <"$p")" "$(stat -c %s "$p")")"
done
note "done in ${elapsed} s"
