#!/usr/bin/env bash
# Makes every icon Tauri and the tray need from icons/source.svg, with tools from the registries:
# rsvg-convert (Debian: librsvg2-bin) renders the drawing, Pillow (PyPI: pillow) packs .ico and .icns.
# The results are committed; run this again after changing source.svg.
set -euo pipefail
cd "$(dirname "$0")"
command -v rsvg-convert >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends librsvg2-bin; }
python3 -c 'import PIL' 2>/dev/null || pip install -q pillow

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# The app icon: the lamp is green (the product's "all is well").
sed 's/LAMP_COLOR/#34d399/' source.svg > "$tmp/app.svg"
render() { rsvg-convert -w "$2" -h "$2" "$1" -o "$3"; }
render "$tmp/app.svg" 32 32x32.png
render "$tmp/app.svg" 128 128x128.png
render "$tmp/app.svg" 256 128x128@2x.png
render "$tmp/app.svg" 512 icon.png
# The installable web app (SPEC 13): 192 and 512 px for the manifest, and a maskable 512 px
# whose plate fills the square (launchers cut their own shape from it; the dial keeps inside
# the central safe zone).
render "$tmp/app.svg" 192 web-192.png
render "$tmp/app.svg" 512 web-512.png
sed -e 's/<rect id="plate" x="16" y="16" width="480" height="480" rx="104"/<rect id="plate" x="0" y="0" width="512" height="512" rx="0"/' \
  -e 's/<svg \([^>]*\)viewBox="0 0 512 512"/<svg \1viewBox="-64 -64 640 640"/' \
  -e 's/<rect id="plate" x="0" y="0" width="512" height="512" rx="0"/<rect id="plate" x="-64" y="-64" width="640" height="640" rx="0"/' \
  "$tmp/app.svg" > "$tmp/maskable.svg"
render "$tmp/maskable.svg" 512 web-maskable-512.png

# Tray variants: no plate (the panel is the background), the lamp says the state.
for state in idle:#9ca3af running:#3b82f6 attention:#f97316; do
  name=${state%%:*}; colour=${state#*:}
  sed -e "s/LAMP_COLOR/$colour/" -e 's/<rect id="plate"[^>]*\/>//' \
    -e 's/<circle id="lamp" cx="256" cy="400" r="44"/<circle id="lamp" cx="392" cy="392" r="112" stroke="#0d1424" stroke-width="20"/' source.svg > "$tmp/tray-$name.svg"
  render "$tmp/tray-$name.svg" 32 "tray-$name.png"
  render "$tmp/tray-$name.svg" 64 "tray-$name@2x.png"
done

python3 - <<'PY'
from PIL import Image
img = Image.open("icon.png").convert("RGBA")
img.save("icon.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
img.save("icon.icns")
# Tauri needs RGBA PNGs: make sure every PNG is RGBA.
import glob
for path in glob.glob("*.png"):
    im = Image.open(path)
    if im.mode != "RGBA":
        im.convert("RGBA").save(path)
PY
ls -1 *.png *.ico *.icns
