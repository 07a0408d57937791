#!/usr/bin/env bash
# Builds the container-run image (runner/Containerfile) with podman, or docker when podman is
# absent. Usage:
#   runner/build-image.sh                 # image `flightdeck-runner` with the agent in it
#   runner/build-image.sh --base          # image `flightdeck-runner-base`: no agent (the relay
#                                         # bind-mounts one: `[runner] agent_binary`)
# Options: --tag NAME, --agent PATH (default target/release/flightdeck-agent, else
# target/debug/flightdeck-agent; $CARGO_TARGET_DIR instead of target/ when set), --claude PATH
# (default: the Claude Code CLI of tools/, installed there with `npm ci` when missing).
#
# Without a reachable registry, the Debian base is made with debootstrap from the Debian mirror
# and imported as docker.io/library/debian:bookworm-slim. An image already built from the same
# inputs (Containerfile, CLI, agent) is kept: the script then takes a second.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=runner
TAG=""
AGENT=""
CLAUDE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --base) TARGET=base ;;
    --tag) TAG=$2; shift ;;
    --agent) AGENT=$2; shift ;;
    --claude) CLAUDE=$2; shift ;;
    *) echo "usage: $0 [--base] [--tag NAME] [--agent PATH] [--claude PATH]" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$TAG" ]; then
  if [ "$TARGET" = base ]; then TAG=localhost/flightdeck-runner-base:latest; else TAG=localhost/flightdeck-runner:latest; fi
fi
ENGINE=$(command -v podman || command -v docker || true)
[ -n "$ENGINE" ] || { echo "$0: neither podman nor docker is installed" >&2; exit 1; }

# The native CLI the npm package of tools/ installs (the package pins its version).
find_claude() {
  for c in "$ROOT/tools/node_modules/@anthropic-ai/claude-code-linux-x64/claude" \
           "$ROOT/tools/node_modules/@anthropic-ai/claude-code/bin/claude.exe"; do
    if [ -f "$c" ] && head -c 4 "$c" | grep -q ELF; then CLAUDE=$c; return; fi
  done
}
if [ -z "$CLAUDE" ]; then
  find_claude
  if [ -z "$CLAUDE" ]; then
    command -v npm >/dev/null || { echo "$0: the image needs the Claude Code CLI of tools/, which npm installs: install Node.js and npm (apt-get install npm), or give --claude PATH" >&2; exit 1; }
    echo "installing the Claude Code CLI into tools/ (npm ci)"
    (cd "$ROOT/tools" && npm ci --no-audit --no-fund --loglevel=error)
    find_claude
  fi
fi
[ -n "$CLAUDE" ] && [ -f "$CLAUDE" ] || { echo "$0: no native Claude Code CLI found in tools/ (cd tools && npm ci), or give --claude PATH" >&2; exit 1; }
if [ "$TARGET" = runner ]; then
  if [ -z "$AGENT" ]; then
    BUILD_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    for a in "$BUILD_DIR/release/flightdeck-agent" "$BUILD_DIR/debug/flightdeck-agent"; do
      if [ -x "$a" ]; then AGENT=$a; break; fi
    done
  fi
  [ -n "$AGENT" ] && [ -x "$AGENT" ] || { echo "$0: no flightdeck-agent binary: cargo build --release -p flightdeck-agent-core, or give --agent PATH" >&2; exit 1; }
fi

# The inputs' fingerprint: the same inputs make the same image, so it is not built again.
fingerprint() {
  { cat "$ROOT/runner/Containerfile"; echo "$TARGET"; stat -c '%s %Y' "$CLAUDE";
    if [ "$TARGET" = runner ]; then sha256sum "$AGENT"; fi; } | sha256sum | cut -c1-16
}
HASH=$(fingerprint)
if [ "$("$ENGINE" image inspect --format '{{ index .Config.Labels "flightdeck.inputs" }}' "$TAG" 2>/dev/null || true)" = "$HASH" ]; then
  echo "$TAG is up to date ($HASH)"
  exit 0
fi

BASE=docker.io/library/debian:bookworm-slim
if ! "$ENGINE" image exists "$BASE" 2>/dev/null && ! "$ENGINE" image inspect "$BASE" >/dev/null 2>&1; then
  if ! "$ENGINE" pull -q "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "$0: cannot pull $BASE and debootstrap is not installed" >&2; exit 1; }
    echo "cannot pull $BASE: making it with debootstrap (about a minute)"
    ROOTFS=$(mktemp -d)
    trap 'rm -rf "$ROOTFS"' EXIT
    debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian >/dev/null
    tar -C "$ROOTFS" -c . | "$ENGINE" import - "$BASE" >/dev/null
    rm -rf "$ROOTFS"
  fi
fi

CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
cp "$ROOT/runner/Containerfile" "$CONTEXT/Containerfile"
# Hard links where the file system allows: the CLI is hundreds of megabytes.
ln "$CLAUDE" "$CONTEXT/claude" 2>/dev/null || cp "$CLAUDE" "$CONTEXT/claude"
if [ "$TARGET" = runner ]; then cp "$AGENT" "$CONTEXT/flightdeck-agent"; fi
"$ENGINE" build -q --target "$TARGET" --label "flightdeck.inputs=$HASH" -t "$TAG" -f "$CONTEXT/Containerfile" "$CONTEXT" >/dev/null
echo "built $TAG ($HASH)"
