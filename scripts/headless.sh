#!/usr/bin/env bash
# `./dev run` on a machine without a display: a relay on 127.0.0.1 and a headless agent on the
# repository the command was started in, then the HUD URL. Ctrl-C stops both.
# State (relay database, keys, agent database) lives in $XDG_DATA_HOME/flightdeck-dev, outside
# the watched repository.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
START_DIR=${FLIGHTDECK_START_DIR:-$PWD}
PORT=${FLIGHTDECK_PORT:-8787}
STATE=${XDG_DATA_HOME:-$HOME/.local/share}/flightdeck-dev
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

REPO=$(git -C "$START_DIR" rev-parse --show-toplevel 2>/dev/null) || {
  echo "flightdeck: $START_DIR is not inside a git repository; run ./dev run from one (or set FLIGHTDECK_START_DIR)" >&2
  exit 1
}

echo "==> building the relay and the agent"
# Cargo shows its progress: a first build takes a while, and silence looks like a hang.
(cd "$ROOT" && cargo build -p flightdeck-relay -p flightdeck-agent-core --bins)
RELAY="$TARGET/debug/flightdeck-relay"
AGENT="$TARGET/debug/flightdeck-agent"

USER_NAME=$(printf '%s' "${USER:-me}" | tr -c 'A-Za-z0-9_-' '-' | cut -c1-39)
[ -n "$USER_NAME" ] || USER_NAME=me
mkdir -p "$STATE/relay" "$STATE/agent"
chmod 700 "$STATE"
KEYS="$STATE/keys.env"
if [ ! -s "$KEYS" ]; then
  "$RELAY" --data-dir "$STATE/relay" user add "$USER_NAME" >/dev/null 2>&1 || true
  AGENT_KEY=$("$RELAY" --data-dir "$STATE/relay" key create --user "$USER_NAME" --scope agent)
  OWNER_KEY=$("$RELAY" --data-dir "$STATE/relay" key create --user "$USER_NAME" --scope owner)
  umask 077
  printf 'AGENT_KEY=%s\nOWNER_KEY=%s\n' "$AGENT_KEY" "$OWNER_KEY" > "$KEYS"
fi
# shellcheck disable=SC1090
. "$KEYS"

# The Claude Code CLI the agent runs: the one `./dev` installs into tools/ (the version the tests
# run), unless one is named (FLIGHTDECK_AGENT_CLAUDE_BIN, `claude_bin` in the agent's settings
# file, or FLIGHTDECK_CLAUDE_BIN; the first two win over this anyway).
TOOLS_CLAUDE="$ROOT/tools/node_modules/.bin/claude"
if [ -z "${FLIGHTDECK_CLAUDE_BIN:-}" ] && [ -x "$TOOLS_CLAUDE" ]; then
  export FLIGHTDECK_CLAUDE_BIN="$TOOLS_CLAUDE"
fi
CLAUDE_SHOWN=${FLIGHTDECK_AGENT_CLAUDE_BIN:-${FLIGHTDECK_CLAUDE_BIN:-claude (on PATH)}}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$RELAY" serve --bind "127.0.0.1:$PORT" --data-dir "$STATE/relay" &
pids+=($!)
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

FLIGHTDECK_AGENT_KEY="$AGENT_KEY" "$AGENT" run --relay "http://127.0.0.1:$PORT" --repo "$REPO" \
  --data-dir "$STATE/agent" &
pids+=($!)

SLUG=$(printf "%s" "$(basename "$REPO")" | tr -c 'A-Za-z0-9._-' '-' | sed -e 's/^[^A-Za-z0-9]*//' -e 's/\.\.*/./g' | cut -c1-100)
HUD="http://127.0.0.1:$PORT/hud/$USER_NAME/$SLUG"
cat <<MSG

  Flightdeck is running (relay on 127.0.0.1:$PORT, agent watching $REPO).

  HUD:      $HUD
  Log in:   http://127.0.0.1:$PORT/login?next=/hud/$USER_NAME/$SLUG
            with the owner key  $OWNER_KEY
  Claude:   $CLAUDE_SHOWN
  (keys are kept in $KEYS; Ctrl-C stops everything)

MSG
wait -n "${pids[@]}"
