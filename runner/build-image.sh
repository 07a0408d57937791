#!/usr/bin/env bash
# Builds the container-run image (runner/Containerfile) with podman, or docker when podman is
# absent. Usage:
#   runner/build-image.sh                 # image `flightdeck-runner` with the agent in it
#   runner/build-image.sh --base          # image `flightdeck-runner-base`: no agent (the relay
#                                         # bind-mounts one: `[runner] agent_binary`)
# Options: --tag NAME, --agent PATH (default target/release/flightdeck-agent, else
# target/debug/flightdeck-agent; $CARGO_TARGET_DIR instead of target/ when set), --claude PATH
# (default: the Claude Code CLI of tools/, installed there with `npm ci` when missing).
# The image also holds the ACP agents tools/ installs (SPEC 14), on PATH: `codex-acp`,
# `opencode` and `claude-code-acp` (with the Node.js that runs it), so a container run can use
# them.
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
# The ACP agents tools/ installs: two native binaries, and claude-code-acp (Node.js).
TOOLS=$ROOT/tools/node_modules
CODEX_ACP=$TOOLS/@zed-industries/codex-acp-linux-x64/bin/codex-acp
OPENCODE=$TOOLS/opencode-linux-x64/bin/opencode
CLAUDE_ACP=$TOOLS/@zed-industries/claude-code-acp/dist/index.js
[ -n "$CLAUDE" ] || find_claude
if [ -z "$CLAUDE" ] || [ ! -f "$CODEX_ACP" ] || [ ! -f "$OPENCODE" ] || [ ! -f "$CLAUDE_ACP" ]; then
  command -v npm >/dev/null || { echo "$0: the image needs the Claude Code CLI and the ACP agents of tools/, which npm installs: install Node.js and npm (apt-get install npm), or give --claude PATH" >&2; exit 1; }
  echo "installing the Claude Code CLI and the ACP agents into tools/ (npm ci)"
  (cd "$ROOT/tools" && npm ci --no-audit --no-fund --loglevel=error)
  [ -n "$CLAUDE" ] || find_claude
fi
[ -n "$CLAUDE" ] && [ -f "$CLAUDE" ] || { echo "$0: no native Claude Code CLI found in tools/ (cd tools && npm ci), or give --claude PATH" >&2; exit 1; }

# Node.js for claude-code-acp is this machine's, the one that installed tools/ (Debian 12's own
# is too old for claude-code-acp's dependencies); it needs only libstdc++, which the base has.
NODE=$(command -v node || true)
for f in "$CODEX_ACP" "$OPENCODE" "$CLAUDE_ACP" "$NODE"; do
  [ -n "$f" ] && [ -f "$f" ] || { echo "$0: ${f:-node} is missing: the image's ACP agents come from tools/ (cd tools && npm ci, on Linux x64 with Node.js)" >&2; exit 1; }
done
# claude-code-acp and the packages it needs, as paths under tools/: its dependencies, found
# the way Node.js finds them (the nearest node_modules up the tree), and theirs.
CLAUDE_ACP_TREE=$(cd "$ROOT/tools" && node -e '
  const fs = require("fs"), path = require("path");
  const seen = new Set(), todo = ["node_modules/@zed-industries/claude-code-acp"];
  while (todo.length) {
    const dir = todo.pop();
    if (seen.has(dir)) continue;
    seen.add(dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
    for (const [name, optional] of [...Object.keys(pkg.dependencies || {}).map(n => [n, false]),
                                    ...Object.keys(pkg.optionalDependencies || {}).map(n => [n, true])]) {
      let at = dir, found = null;
      for (;;) {
        const candidate = path.join(at, "node_modules", name);
        if (fs.existsSync(path.join(candidate, "package.json"))) { found = candidate; break; }
        if (at === "." || at === "") break;
        at = path.dirname(at);
      }
      if (found) todo.push(path.normalize(found));
      else if (!optional) { console.error("missing " + name + " for " + dir); process.exit(1); }
    }
  }
  console.log([...seen].sort().join("\n"));')
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
  { cat "$ROOT/runner/Containerfile"; echo "$TARGET"; stat -c '%s %Y' "$CLAUDE" "$NODE";
    cat "$ROOT/tools/package-lock.json";
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
mkdir -p "$CONTEXT/agents/bin"
for f in "$CODEX_ACP" "$OPENCODE" "$NODE"; do
  ln "$f" "$CONTEXT/agents/bin/$(basename "$f")" 2>/dev/null || cp "$f" "$CONTEXT/agents/bin/"
done
for dir in $CLAUDE_ACP_TREE; do
  mkdir -p "$CONTEXT/agents/$dir"
  cp -r "$ROOT/tools/$dir/." "$CONTEXT/agents/$dir/"
done
ln -s ../node_modules/@zed-industries/claude-code-acp/dist/index.js "$CONTEXT/agents/bin/claude-code-acp"
if [ "$TARGET" = runner ]; then cp "$AGENT" "$CONTEXT/flightdeck-agent"; fi
"$ENGINE" build -q --target "$TARGET" --label "flightdeck.inputs=$HASH" -t "$TAG" -f "$CONTEXT/Containerfile" "$CONTEXT" >/dev/null
echo "built $TAG ($HASH)"
