#!/usr/bin/env bash
# Builds the UI into ui/dist/: flightdeck_ui.js, flightdeck_ui_bg.wasm, style.css, index.html.
# The relay serves ui/dist/ at /assets/ (embedded in its release binary); the desktop app loads
# ui/dist/index.html. Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the same
# version as Cargo.lock's wasm-bindgen (`cargo install wasm-bindgen-cli --version =X`).
# Nothing is downloaded here. wasm-opt is used when it is on PATH.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
out="$root/ui/dist"

want="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
if ! command -v wasm-bindgen >/dev/null; then
    echo "error: wasm-bindgen not found; install it with: cargo install wasm-bindgen-cli --version =$want" >&2
    exit 1
fi
have="$(wasm-bindgen --version | awk '{ print $2 }')"
if [ -n "$want" ] && [ "$have" != "$want" ]; then
    echo "error: wasm-bindgen $have does not match Cargo.lock's $want; run: cargo install wasm-bindgen-cli --version =$want" >&2
    exit 1
fi

cargo build -p flightdeck-ui --target wasm32-unknown-unknown --profile wasm-release
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$out" --out-name flightdeck_ui \
    "$target_dir/wasm32-unknown-unknown/wasm-release/flightdeck_ui.wasm"
if command -v wasm-opt >/dev/null; then
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
        -o "$out/flightdeck_ui_bg.wasm.opt" "$out/flightdeck_ui_bg.wasm"
    mv "$out/flightdeck_ui_bg.wasm.opt" "$out/flightdeck_ui_bg.wasm"
else
    echo "note: wasm-opt not found; skipping (the bundle is a little larger)"
fi
cp ui/static/style.css ui/static/index.html "$out/"

size() { wc -c <"$1" | tr -d ' '; }
gz() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
total=0
totalgz=0
echo "ui/dist:"
for f in flightdeck_ui_bg.wasm flightdeck_ui.js style.css index.html; do
    s="$(size "$out/$f")"
    g="$(gz "$out/$f")"
    total=$((total + s))
    totalgz=$((totalgz + g))
    printf '  %-24s %9d bytes  %9d gzipped\n' "$f" "$s" "$g"
done
printf '  %-24s %9d bytes  %9d gzipped (target: at most 1048576 gzipped)\n' "total" "$total" "$totalgz"
if [ "$totalgz" -gt 1048576 ]; then
    echo "error: the bundle is over 1 MB gzipped" >&2
    exit 1
fi
