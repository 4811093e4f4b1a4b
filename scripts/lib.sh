# Shell helpers shared by the benchmark scripts (sourced, not run).
#
# Every script that sources this: runs from the repository root, starts servers with
# start_server, and has them stopped by PID on exit or Ctrl-C through the traps set here.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Where `cargo build` puts them: CARGO_TARGET_DIR when set (a stale target/ would otherwise be
# run instead of what build_release just built).
pollchat=${CARGO_TARGET_DIR:-target}/release/pollchat
# The load generator, a binary of its own beside the server (it was `pollchat bench`).
pollchat_bench=${CARGO_TARGET_DIR:-target}/release/pollchat-bench
server_pid=""

need() {  # need COMMAND DEBIAN_PACKAGE: installs the package (as root) if COMMAND is missing
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    echo "== installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
  else
    echo "$1 is missing: install the Debian package $2" >&2
    exit 1
  fi
}

need_two_cores() {
  if [ "$(nproc)" -lt 2 ]; then
    echo "the server and the generator are pinned to separate cores: this needs 2" >&2
    exit 1
  fi
}

build_release() {
  echo "== building release"
  cargo build --release --quiet
}

binaries() {  # binaries: `server` and `generator` (from --server/--generator) default to the release build, built first if either is missing
  if [ -z "$server" ] || [ -z "$generator" ]; then build_release; fi
  server="${server:-$(realpath "$pollchat")}"
  generator="${generator:-$(realpath "$pollchat_bench")}"
  generator_command
}

generator_command() {  # generator_command: the array `generator_cmd` runs `$generator`: a pollchat-bench binary, or a pollchat binary built before the generator left it (then `pollchat bench`)
  generator_cmd=("$generator")
  if [ "$(basename "$generator")" = pollchat ]; then generator_cmd+=(bench); fi
}

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
# Scripts that start several processes (a cluster) add each PID to `pids`; stop_all stops
# them all, and the single server too.
pids=()
stop_all() {
  stop_server
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() {  # waits up to 10 s for 127.0.0.1:PORT to accept connections
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

redis_server() {  # redis_server PORT LOG: an unpinned redis-server in the background, in pids
  redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >>"$2" 2>&1 &
  pids+=($!)
  wait_for_port "$1"
}

start_server() {  # start_server pollchat|redis PORT LOG: starts it pinned to core 0
  case "$1" in
    pollchat)
      taskset -c 0 "$pollchat" --bind "127.0.0.1:$2" --rate 0 --quiet-joins --log-level warn \
        2>>"$3" &
      ;;
    redis)
      taskset -c 0 redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no \
        --maxclients 100000 --daemonize no >>"$3" 2>&1 &
      ;;
  esac
  server_pid=$!
  wait_for_port "$2"
}

bench() {  # bench PROTO PORT ARGS...: one generator run, pinned to core 1, as one JSON line
  local proto=$1 port=$2
  shift 2
  taskset -c 1 "$pollchat_bench" --json --proto "$proto" --target "127.0.0.1:$port" \
    --server-pid "$server_pid" --threads 1 "$@"
}
