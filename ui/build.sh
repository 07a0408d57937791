#!/usr/bin/env bash
# Builds the UI into ui/dist/: flightdeck_ui.js, flightdeck_ui_bg.wasm, style.css, index.html, and the
# installable web app's push.js, sw.js and icons (SPEC 13).
# The relay serves ui/dist/ at /assets/ (embedded in its release binary); the desktop app loads
# ui/dist/index.html. Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the same
# version as Cargo.lock's wasm-bindgen (`cargo install wasm-bindgen-cli --version =X`).
# Nothing is downloaded here. wasm-opt is used when it is on PATH and can read the module.
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
# wasm-opt, when there is one that reads this module: Debian 12's binaryen 108 cannot (it
# predates `table.fill`, which wasm-bindgen emits), and the bundle is within its budget without it.
wasm="$out/flightdeck_ui_bg.wasm"
if command -v wasm-opt >/dev/null && wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    -o "$wasm.opt" "$wasm" 2>/dev/null && [ "$(gzip -9 -c "$wasm.opt" | wc -c)" -lt "$(gzip -9 -c "$wasm" | wc -c)" ]; then
    mv "$wasm.opt" "$wasm"
else
    rm -f "$wasm.opt"
    echo "note: no wasm-opt that improves this module; the bundle is as wasm-bindgen wrote it"
fi
cp ui/static/style.css ui/static/index.html ui/static/push.js ui/static/sw.js "$out/"
# The installable web app's icons (made by icons/make-icons.sh); the relay serves /sw.js from here.
cp icons/web-192.png icons/web-512.png icons/web-maskable-512.png "$out/"
# The tab icon of index.html (the desktop window, and /assets/index.html on a relay).
cp icons/32x32.png "$out/favicon.png"

size() { wc -c <"$1" | tr -d ' '; }
gz() { gzip -9 -c "$1" | wc -c | tr -d ' '; }
total=0
totalgz=0
echo "ui/dist:"
for f in flightdeck_ui_bg.wasm flightdeck_ui.js style.css index.html push.js; do
    s="$(size "$out/$f")"
    g="$(gz "$out/$f")"
    total=$((total + s))
    totalgz=$((totalgz + g))
    printf '  %-24s %9d bytes  %9d gzipped\n' "$f" "$s" "$g"
done
# The budget: 350 KB gzipped (e2e/hud.test.mjs checks what the relay serves against it too).
printf '  %-24s %9d bytes  %9d gzipped (budget: at most 358400 gzipped)\n' "total" "$total" "$totalgz"
if [ "$totalgz" -gt 358400 ]; then
    echo "error: the bundle is over 350 KB gzipped" >&2
    exit 1
fi
