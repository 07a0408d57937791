#!/usr/bin/env bash
# Runs the README's self-hosting commands as written, against temp directories: the fenced
# block of "Self-hosting the relay" line by line (with /var/lib/flightdeck, /usr/local/bin and
# 0.0.0.0:8787 pointing at a temp data dir, a temp bin dir first on PATH, and a free port), then
# the commands its prose shows: `key list`, `key revoke ID`, the login with the owner key,
# `flightdeck-agent run --relay ... --key ...` started inside a repo, `serve --broker redis://...`;
# the task routes of "REST API" (its curl block, against that relay and agent); the block of
# "Container runs" (its build is a no-op after the self-hosting one, and the image script
# installs what it needs into a tools/ that has nothing); the Many hosts block; and that
# `./dev run`'s build after `./dev test`'s builds nothing.
# Fails on the first command that fails or does not do what the README says.
#
# The release build is real; its profile is made cheap through cargo's environment
# (CARGO_PROFILE_RELEASE_*), which leaves the command as written.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tmp="$(mktemp -d)"
pids=()
image_tag=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$image_tag" ]; then podman rmi -f "$image_tag" >/dev/null 2>&1 || true; fi
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/bin"
export PATH="$tmp/bin:$PATH"
# The release build's own target dir (its cheap profile must not replace real release builds).
release_target="${README_TEST_TARGET_DIR:-$root/target/readme-test}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
fail() { echo "readme-test: $*" >&2; exit 1; }
# The fenced sh block of the README section named $1.
readme_block() {
    awk -v section="## $1" '$0 == section { in_section = 1; next }
        in_section && /^## / { exit }
        in_section && /^```sh$/ { in_block = 1; next }
        in_section && in_block && /^```$/ { exit }
        in_block { print }' README.md
}
# no_rebuild WHAT COMMAND...: runs a cargo build that must build nothing (issue 22: the README's
# and ./dev's builds reuse each other), and says how long it took.
no_rebuild() {
    local what=$1 start out; shift
    start=$(date +%s%N)
    out="$("$@" 2>&1)" || { echo "$out" >&2; fail "$what failed"; }
    echo "readme-test: $what took $(( ($(date +%s%N) - start) / 1000000 )) ms"
    if grep -E '^\s*Compiling ' <<<"$out" >&2; then fail "$what rebuilt the crates above"; fi
}
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
        sleep 0.2
    done
}

block="$(awk '/^## Self-hosting the relay/ { in_section = 1; next }
    in_section && /^## / { exit }
    in_section && /^```sh$/ { in_block = 1; next }
    in_section && in_block && /^```$/ { exit }
    in_block { print }' README.md)"
[ -n "$block" ] || fail "no sh block in the README's self-hosting section"

agent_key="" owner_key=""
while IFS= read -r line; do
    [ -n "${line// /}" ] || continue
    cmd="${line//\/var\/lib\/flightdeck/$tmp/data}"
    cmd="${cmd//\/usr\/local\/bin\//$tmp/bin/}"
    cmd="${cmd//0.0.0.0:8787/127.0.0.1:$port}"
    cmd="${cmd//target\/release\//$release_target/release/}"
    echo "readme-test \$ $line"
    case "$cmd" in
    *" serve "*)
        bash -c "$cmd" >"$tmp/serve.log" 2>&1 &
        pids+=($!)
        wait_for 60 "the relay to serve" curl -fsS "http://127.0.0.1:$port/healthz"
        ;;
    *"cargo build --release"*)
        CARGO_TARGET_DIR="$release_target" CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=64 CARGO_PROFILE_RELEASE_DEBUG=false bash -c "$cmd"
        ;;
    *"key create"*"--scope agent"*)
        agent_key="$(bash -c "$cmd" | grep -m1 -o 'fdk_[0-9a-f]*')"
        ;;
    *"key create"*"--scope owner"*)
        owner_key="$(bash -c "$cmd" | grep -m1 -o 'fdk_[0-9a-f]*')"
        ;;
    *)
        bash -c "$cmd"
        ;;
    esac
done <<<"$block"
[ -n "$agent_key" ] && [ -n "$owner_key" ] || fail "the block did not make an agent key and an owner key"
command -v flightdeck-relay flightdeck-agent >/dev/null || fail "the binaries are not installed where the README puts them"

echo "readme-test: the installed relay serves; the owner key logs in"
login="$(curl -fsS -H 'content-type: application/json' -H "origin: http://127.0.0.1:$port" \
    -d "{\"token\":\"$owner_key\"}" "http://127.0.0.1:$port/api/login" -o /dev/null -w '%{http_code}')"
[ "$login" = 200 ] || [ "$login" = 204 ] || fail "login with the owner key: HTTP $login"

echo "readme-test \$ flightdeck-agent run --relay ws://127.0.0.1:$port --key fdk_... (inside a repo)"
repo="$tmp/work/my-project"
mkdir -p "$repo"
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=t -c user.email=t@example.com commit -q --allow-empty -m first
(cd "$repo" && exec flightdeck-agent run --relay "ws://127.0.0.1:$port" --key "$agent_key" \
    --data-dir "$tmp/agent-data") >"$tmp/agent.log" 2>&1 &
pids+=($!)
agent_pid=${pids[-1]}
repo_known() {
    local repos
    repos="$(curl -fsS -H "authorization: Bearer $owner_key" "http://127.0.0.1:$port/api/cockpit/repos")" &&
        grep -q '"my-project"' <<<"$repos"
}
wait_for 60 "the agent's repo at the relay" repo_known
grep -q 'watching my-project\|my-project' "$tmp/agent.log" || fail "the agent did not say it watches the repo"

echo "readme-test: REST API, the task routes (its curl block as written)"
rest_block="$(readme_block "REST API")"
[ -n "$rest_block" ] || fail "no sh block in the README's REST API section"
grep -q 'RELAY=http://127.0.0.1:8787$' <<<"$rest_block" || fail "the REST block does not set RELAY as expected"
rest_out="$(OWNER_KEY="$owner_key" bash -euo pipefail -c "${rest_block//127.0.0.1:8787/127.0.0.1:$port}
echo; echo \"readme-test-ids \$TASK \$LONG\"")" || fail "the REST block failed: $rest_out"
read -r _ rest_task rest_long < <(grep '^readme-test-ids ' <<<"$rest_out")
[ -n "$rest_task" ] && [ -n "$rest_long" ] || fail "the REST block made no tasks: $rest_out"
grep -q '"tasks":\[' <<<"$rest_out" || fail "the list answer is not in the output: $rest_out"
grep -q "\"events\":" <<<"$rest_out" || fail "the events answer is not in the output: $rest_out"
task_is() { # task_is ID STATUS: the task has ended with STATUS
    curl -fsS -H "authorization: Bearer $owner_key" "http://127.0.0.1:$port/api/cockpit/tasks/$1" | grep -q "\"status\":\"$2\""
}
wait_for 60 "the REST task to complete" task_is "$rest_task" completed
wait_for 60 "the cancelled REST task to end cancelled" task_is "$rest_long" cancelled
events="$(curl -fsS -H "authorization: Bearer $owner_key" "http://127.0.0.1:$port/api/cockpit/tasks/$rest_task/events?after=0")"
grep -q 'hello from rest' <<<"$events" || fail "the task's transcript lacks its output: $events"

echo "readme-test \$ flightdeck-relay key list / key revoke ID"
# Each output is read whole before it is searched: a reader that stops early (`grep -q`) is a
# race under pipefail.
keys="$(flightdeck-relay key list --data-dir "$tmp/data")"
grep -q "alice.*agent" <<<"$keys" || fail "key list does not list the agent key"
id="$(awk '$3 == "agent" { print $1; exit }' <<<"$keys")"
flightdeck-relay key revoke "$id" --data-dir "$tmp/data"
keys="$(flightdeck-relay key list --data-dir "$tmp/data")"
awk -v id="$id" '$1 == id && $6 == "-" { exit 1 }' <<<"$keys" || fail "key revoke did not revoke $id"
# A revoked key's live socket closes at once: the agent stops (status 3, SPEC: fatal link end).
agent_gone() { ! kill -0 "$agent_pid" 2>/dev/null; }
wait_for 30 "the agent to stop after its key is revoked" agent_gone

echo "readme-test: Container runs (the build, then the image script with a tools/ that has nothing)"
runs_block="$(readme_block "Container runs")"
[ -n "$runs_block" ] || fail "no sh block in the README's Container runs section"
# The image script, as in a fresh clone: its own copy of the repo's runner/ and tools/ (no
# node_modules); the agent of the release build above.
mkdir -p "$tmp/clone/tools"
cp -r runner "$tmp/clone/runner"
cp tools/package.json tools/package-lock.json "$tmp/clone/tools/"
image_tag=localhost/flightdeck-readme-test:latest # removed by cleanup
while IFS= read -r line; do
    [ -n "${line// /}" ] || continue
    echo "readme-test \$ $line"
    case "$line" in
    "cargo build --release"*)
        no_rebuild "the Container runs build after the self-hosting build" env CARGO_TARGET_DIR="$release_target" \
            CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_CODEGEN_UNITS=64 \
            CARGO_PROFILE_RELEASE_DEBUG=false bash -c "${line%%#*}"
        ;;
    "runner/build-image.sh"*)
        # As written, but tagged for this test (the README's tag may be a real image here).
        (cd "$tmp/clone" && CARGO_TARGET_DIR="$release_target" bash -c "${line%%#*} --tag $image_tag") \
            || fail "runner/build-image.sh failed"
        [ -x "$tmp/clone/tools/node_modules/.bin/claude" ] || fail "the image script did not install the CLI into tools/"
        for bin in claude flightdeck-agent; do
            podman run --rm --network none --entrypoint /bin/sh "$image_tag" -c "test -x /usr/local/bin/$bin" \
                || fail "the image has no /usr/local/bin/$bin"
        done
        ;;
    *) fail "an unexpected command in the Container runs block: $line" ;;
    esac
done <<<"$runs_block"

echo "readme-test \$ flightdeck-relay serve --broker redis://..."
redis_port="$(free_port)"
redis-server --port "$redis_port" --save '' --appendonly no --daemonize no >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_for 20 "redis" redis-cli -p "$redis_port" ping
port2="$(free_port)"
flightdeck-relay serve --bind "127.0.0.1:$port2" --data-dir "$tmp/data" --broker "redis://127.0.0.1:$redis_port" \
    >"$tmp/serve2.log" 2>&1 &
pids+=($!)
wait_for 60 "a second node with a broker" curl -fsS "http://127.0.0.1:$port2/healthz"
repos="$(curl -fsS -H "authorization: Bearer $owner_key" "http://127.0.0.1:$port2/api/cockpit/repos")"
grep -q my-project <<<"$repos" || fail "the second node does not share the data"

# "Many hosts": the fenced block as written, against a throwaway PostgreSQL cluster (as root it
# runs as the postgres user) holding an empty database `flightdeck` owned by a role
# `flightdeck`, the Redis above, and two nodes, each with its own empty data dir.
echo "readme-test: Many hosts (PostgreSQL and Redis)"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$pg_bin/initdb" ] || fail "no PostgreSQL server programs (Debian's postgresql package; .ci/install installs it)"
pg_port="$(free_port)"
chmod 755 "$tmp"
mkdir -p "$tmp/pg"
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$tmp/pg"; as_pg=(runuser -u postgres --); fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$tmp/pg/data" -U postgres -A trust --no-sync >"$tmp/initdb.log" 2>&1 \
    || fail "initdb failed: $(cat "$tmp/initdb.log")"
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/server.log" -w \
    -o "-p $pg_port -k $tmp/pg -c listen_addresses=127.0.0.1" start >/dev/null
pg_stop() { "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$tmp/pg/data" -m immediate -w stop >/dev/null 2>&1 || true; }
trap 'pg_stop; cleanup' EXIT
psql_pg() { "${as_pg[@]}" psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql_pg -c "CREATE ROLE flightdeck LOGIN PASSWORD 'readme'" -c "CREATE DATABASE flightdeck OWNER flightdeck"
pg_url="postgres://flightdeck:readme@127.0.0.1:$pg_port/flightdeck"

hosts_block="$(awk '/^## Many hosts/ { in_section = 1; next }
    in_section && /^## / { exit }
    in_section && /^```sh$/ { in_block = 1; next }
    in_section && in_block && /^```$/ { exit }
    in_block { print }' README.md)"
[ -n "$hosts_block" ] || fail "no sh block in the README's Many hosts section"
node_ports=()
hosts_agent_key="" hosts_owner_key=""
while IFS= read -r line; do
    [ -n "${line// /}" ] || continue
    cmd="${line//postgres:\/\/flightdeck:PASSWORD@db.internal\/flightdeck/$pg_url}"
    cmd="${cmd//redis:\/\/redis.internal:6379/redis://127.0.0.1:$redis_port}"
    echo "readme-test \$ $line"
    case "$cmd" in
    *" serve "*)
        # "on every host": two nodes, each with its own empty data dir.
        for n in 1 2; do
            node_port="$(free_port)"
            node_cmd="${cmd//0.0.0.0:8787/127.0.0.1:$node_port}"
            node_cmd="${node_cmd//\/var\/lib\/flightdeck/$tmp/node$n}"
            bash -c "$node_cmd" >"$tmp/node$n.log" 2>&1 &
            pids+=($!)
            wait_for 60 "node $n to serve" curl -fsS "http://127.0.0.1:$node_port/healthz"
            node_ports+=("$node_port")
        done
        ;;
    *"key create"*"--scope agent"*) hosts_agent_key="$(bash -c "$cmd" | grep -m1 -o 'fdk_[0-9a-f]*')" ;;
    *"key create"*"--scope owner"*) hosts_owner_key="$(bash -c "$cmd" | grep -m1 -o 'fdk_[0-9a-f]*')" ;;
    *) bash -c "$cmd" ;;
    esac
done <<<"$hosts_block"
[ -n "$hosts_agent_key" ] && [ -n "$hosts_owner_key" ] || fail "the Many hosts block made no keys"
[ "${#node_ports[@]}" = 2 ] || fail "the Many hosts block started no nodes"
# The key made on the database works on both nodes; a task made through node 1 is on node 2;
# neither node wrote a database file of its own.
task="$(curl -fsS -H "authorization: Bearer $hosts_owner_key" -H 'content-type: application/json' \
    -d '{"executor":"shell","repo":"web","payload":{"command":"true"}}' \
    "http://127.0.0.1:${node_ports[0]}/api/cockpit/tasks")" || fail "node 1 refused a task"
task_id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["task"]["id"])' <<<"$task")"
listed="$(curl -fsS -H "authorization: Bearer $hosts_owner_key" "http://127.0.0.1:${node_ports[1]}/api/cockpit/tasks")"
grep -q "$task_id" <<<"$listed" || fail "node 2 does not list the task made through node 1"
for n in 1 2; do
    [ ! -e "$tmp/node$n/relay.sqlite3" ] || fail "node $n wrote a SQLite file despite --database"
done

# `./dev run` (scripts/headless.sh) after `./dev test`: the second build builds nothing.
echo "readme-test: ./dev run's build after ./dev test's"
test_build="$(grep -o 'cargo build -q --workspace --bins' dev)" || fail "./dev test no longer builds --workspace --bins"
run_build="$(grep -o 'cargo build -p [^)]*--bins' scripts/headless.sh)" || fail "no cargo build in scripts/headless.sh"
bash -c "$test_build"
no_rebuild "./dev run's build ($run_build) after ./dev test's" bash -c "$run_build"

# "Notifications on your phone": its sh block as written against a relay that allows private
# endpoints, with local stand-ins for ntfy and the webhook (a small HTTP server that records
# what it is sent); then the channels listed, and a test message reaching both stand-ins.
echo "readme-test: Notifications on your phone (ntfy and webhook channels)"
push_dir="$tmp/push"
mkdir -p "$push_dir"
flightdeck-relay user add alice --data-dir "$push_dir/data" >/dev/null
OWNER_KEY="$(flightdeck-relay key create --user alice --scope owner --data-dir "$push_dir/data" | grep -m1 -o 'fdk_[0-9a-f]*')"
export OWNER_KEY
push_port="$(free_port)"
FLIGHTDECK_RELAY_PUSH_ALLOW_PRIVATE_ENDPOINTS=1 flightdeck-relay serve --bind "127.0.0.1:$push_port" \
    --data-dir "$push_dir/data" >"$push_dir/serve.log" 2>&1 &
pids+=($!)
wait_for 60 "the push relay to serve" curl -fsS "http://127.0.0.1:$push_port/healthz"
standin_port="$(free_port)"
python3 - "$standin_port" "$push_dir/received" <<'PY' >"$push_dir/standin.log" 2>&1 &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Record(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        with open(out, "a") as f:
            f.write(f"{self.path} {self.headers.get('x-flightdeck-signature', '-')} {body.decode(errors='replace')}\n")
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", port), Record).serve_forever()
PY
pids+=($!)
wait_for 20 "the ntfy and webhook stand-in" python3 -c "import socket; socket.create_connection(('127.0.0.1', $standin_port))"
push_block="$(awk '/^## Notifications on your phone/ { in_section = 1; next }
    in_section && /^## / { exit }
    in_section && /^```sh$/ { in_block = 1; next }
    in_section && in_block && /^```$/ { exit }
    in_block { print }' README.md)"
[ -n "$push_block" ] || fail "no sh block in the README's Notifications section"
listed=""
while IFS= read -r line; do
    [ -n "${line// /}" ] || continue
    cmd="${line//https:\/\/relay.example.com/http://127.0.0.1:$push_port}"
    cmd="${cmd//https:\/\/ntfy.example.com/http://127.0.0.1:$standin_port/ntfy}"
    cmd="${cmd//https:\/\/hooks.example.com/http://127.0.0.1:$standin_port/hooks}"
    echo "readme-test \$ $line"
    out="$(bash -c "$cmd -fsS")" || fail "failed: $line"
    listed="$out"
done <<<"$push_block"
grep -q '"ntfy"' <<<"$listed" && grep -q '"webhook"' <<<"$listed" || fail "the channels are not listed: $listed"
! grep -q 'a-long-random-secret' <<<"$listed" || fail "the channel list shows the webhook's secret"
curl -fsS -X POST -H "Authorization: Bearer $OWNER_KEY" -H 'Content-Type: application/json' -d '{}' \
    "http://127.0.0.1:$push_port/api/push/test" >/dev/null || fail "POST /api/push/test"
both_received() {
    grep -q '^/ntfy/ .*"topic":"flightdeck-alice"' "$push_dir/received" &&
        grep -q '^/hooks/flightdeck sha256=[0-9a-f]\{64\} ' "$push_dir/received"
}
wait_for 30 "a test message at the ntfy and webhook stand-ins" both_received

echo "readme-test: every self-hosting command works as written"
