#!/usr/bin/env bash
# mkdeb.sh: the Debian package of conflux-volunteer (make deb), built with dpkg-deb.
#   /usr/bin/conflux-volunteer                  the binary (stripped)
#   /usr/share/doc/conflux-volunteer/README     how to join
#   /usr/share/doc/conflux-volunteer/copyright
# The control file is control.in with its @FIELDS@ filled in. Depends comes from the
# libraries the binary really links (its NEEDED entries) through dpkg-shlibdeps, so the
# package pulls the runtime libraries only; a -dev or MPI package there is an error.
# usage: bridge/debian/mkdeb.sh BINARY VERSION OUT.deb
set -euo pipefail
BIN=${1:?usage: mkdeb.sh BINARY VERSION OUT.deb}
VERSION=${2:?usage: mkdeb.sh BINARY VERSION OUT.deb}
OUT=${3:?usage: mkdeb.sh BINARY VERSION OUT.deb}
HERE=$(cd "$(dirname "$0")" && pwd)
PKG=conflux-volunteer
ARCH=$(dpkg --print-architecture)
umask 022
STAGE=$(mktemp -d /tmp/conflux-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/debian/$PKG  # dpkg-shlibdeps' layout: debian/control, debian/PACKAGE/{DEBIAN,...}
mkdir -p "$ROOT/DEBIAN"
install -D -m 0755 "$BIN" "$ROOT/usr/bin/$PKG"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT/usr/bin/$PKG"
install -D -m 0644 "$HERE/README" "$ROOT/usr/share/doc/$PKG/README"
install -D -m 0644 "$HERE/copyright" "$ROOT/usr/share/doc/$PKG/copyright"

printf 'Source: conflux\n\nPackage: %s\nArchitecture: any\n' "$PKG" >"$STAGE/debian/control"
# warnings=1: keep "symbol not found" (a library that cannot be mapped), drop the advice
# on avoidable dependencies
DEPENDS=$(cd "$STAGE" && dpkg-shlibdeps --warnings=1 -O -e "$ROOT/usr/bin/$PKG" 2> >(grep -v "should already be installed" >&2) | sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPENDS" ] || { echo "mkdeb.sh: error: dpkg-shlibdeps found no dependencies ($BIN)" >&2; exit 1; }
bad=$(printf '%s\n' "$DEPENDS" | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -E -- '-dev$|mpi|hwloc' || true)
if [ -n "$bad" ]; then
    echo "mkdeb.sh: error: $BIN would make the package depend on $(echo $bad) (a -dev or MPI package)" >&2
    exit 1
fi
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@DEPENDS@|$DEPENDS|" \
    -e "s|@INSTALLED_SIZE@|$SIZE|" "$HERE/control.in" >"$ROOT/DEBIAN/control"
if grep -q '@[A-Z_]*@' "$ROOT/DEBIAN/control"; then
    echo "mkdeb.sh: error: unfilled field in control.in: $(grep '@[A-Z_]*@' "$ROOT/DEBIAN/control")" >&2
    exit 1
fi
mkdir -p "$(dirname "$OUT")"
dpkg-deb --root-owner-group --build "$ROOT" "$OUT.tmp" >/dev/null
mv "$OUT.tmp" "$OUT"
echo "$OUT: $(stat -c %s "$OUT") bytes; Depends: $DEPENDS"
