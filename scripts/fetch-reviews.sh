#!/usr/bin/env bash
# Fetches Pang & Lee's movie-review polarity corpus (1500 reviews, 750 positive and 750
# negative) from Debian's python3-pattern package into a cache directory, and prints the
# CSV's path. The corpus is never committed: its README allows personal use only.
#
#   bash scripts/fetch-reviews.sh        # -> ~/.cache/lamina/polarity-en-pang-lee1.csv
#
# The cache is $LAMINA_DATA if set, else $XDG_CACHE_HOME/lamina or ~/.cache/lamina. A
# cached copy is reused. Exits non-zero, saying why on stderr, when the package cannot be
# downloaded (no network, no apt).
set -euo pipefail
cache="${LAMINA_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
csv="$cache/polarity-en-pang-lee1.csv"
member='./usr/share/doc/python3-pattern/test/corpora/polarity-en-pang&lee1.csv'
if [ -s "$csv" ]; then
  echo "$csv"
  exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
download() { (cd "$work" && apt-get download python3-pattern) >"$work/apt.log" 2>&1; }
if ! download; then
  # Without package lists apt cannot find the package; refresh them when we may.
  if [ "$(id -u)" -eq 0 ] && apt-get update -qq >>"$work/apt.log" 2>&1 && download; then
    :
  else
    echo "fetch-reviews: cannot download python3-pattern with apt-get:" >&2
    tail -n 5 "$work/apt.log" >&2
    exit 1
  fi
fi
deb=("$work"/python3-pattern_*.deb)
if ! dpkg-deb --fsys-tarfile "${deb[0]}" | tar -xO "$member" >"$work/reviews.csv" || [ ! -s "$work/reviews.csv" ]; then
  echo "fetch-reviews: ${deb[0]} does not hold $member" >&2
  exit 1
fi
# 1500 reviews end in CRLF (newlines inside reviews are bare LF).
rows="$(tr -cd '\r' <"$work/reviews.csv" | wc -c)"
if [ "$rows" -lt 1400 ]; then
  echo "fetch-reviews: the corpus looks wrong ($rows rows)" >&2
  exit 1
fi
mv "$work/reviews.csv" "$csv"
echo "$csv"
