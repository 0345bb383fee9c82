#!/usr/bin/env bash
# Load benchmark (issue 6): scim-proxy against nginx doing the same job, and against the upstream
# served directly, side by side on loopback, interleaved (direct, scim-proxy, nginx, direct, ...).
#
#   benches/load/run.sh
#
# From a fresh checkout: installs nginx, wrk, curl and python3 from Debian's packages when missing
# (apt-get, as root or through sudo), builds target/release/scim-proxy, generates a throwaway CA
# and certificates (scim-proxy dev-certs) and the SCIM bodies (gen_bodies.py) in a temporary
# directory, and starts, each with one worker:
#   - the upstream: nginx serving GET /api/v2/scim/Users/1 (~1 KB User) and
#     GET /api/v2/scim/Users?... (~1 MB ListResponse, 3,000 upstream URLs) over TLS, keep-alive;
#   - scim-proxy (serve, [runtime] worker_threads = 1, [log] traffic = "off"): scim-proxy.toml.in;
#   - nginx as the reference proxy doing the same job: nginx-proxy.conf.in;
#   - for one extra scenario, a second scim-proxy writing the traffic log to a file, with an admin
#     listener (ADMIN_PORT): at the end, its /metrics give the records dropped and the requests
#     served, beside the lines written (OUT/traffic-log.tsv).
# The load generator (wrk, one thread; oha for the fixed-rate scenario) runs on core LOADGEN_CPU,
# the upstream on UPSTREAM_CPU and the proxies (scim-proxy, scim-proxy+log, nginx) on PROXY_CPU.
# Every scenario runs REPS times, the targets interleaved within each repetition. The
# idle-connection client is idle_conns.py. The table comes from summarize.py.
#
# Everything listens on 127.0.0.1 only. Everything started is stopped on exit (each server runs
# in its own process group, killed as a group). The measuring part takes about 5 minutes with the
# defaults and stops starting runs after MAX_SECONDS; building scim-proxy from scratch comes on top.
#
# Settings (environment):
#   DURATION=5 REPS=3 WARMUP=1   seconds per measured run, repetitions, seconds of warm-up per target
#   MAX_SECONDS=540              no new run starts after this many seconds of measuring
#   LOADGEN_CPU UPSTREAM_CPU PROXY_CPU
#                                pinning; defaults by `nproc`: >= 3 cores 0, 1, 2; 2 cores 0, 1, 1;
#                                1 core 0, 0, 0. SERVER_CPU (the former setting) still works: it sets
#                                both UPSTREAM_CPU and PROXY_CPU unless those are set themselves.
#   UP_PORT=19443 PROXY_PORT=18443 NGX_PORT=18444 LOG_PORT=18445 ADMIN_PORT=18447
#   IDLE_N=1000                  idle TLS connections for the memory reading
#   OUT=target/load-bench/<time> where the table, the raw TSVs and the logs are kept
#   SKIP_INSTALL=1 SKIP_BUILD=1  skip the package check (and oha's install) or the cargo build
#   SCENARIOS="get1k_c1 ..."     a subset or another order (default: get1k_c1 get1k_c16 get1k_c128
#                                rate1k_c10 list1m_c4 newconn_c16 get1k_c16_log idle). Memory is read
#                                from the long-running processes: the allocator keeps what earlier
#                                scenarios used, so idle (1,000 held connections) runs last.
#                                rate1k_c10 is a fixed rate (1,000 req/s over 10 connections, by oha
#                                with latency correction): its latencies, less direct's, are what a
#                                proxy adds at a load it carries easily. oha comes from PATH or
#                                target/bench-tools/bin, else `cargo install oha` puts it there
#                                (minutes); without it the scenario is skipped (OUT/skipped.tsv).
#   NGINX_UPSTREAM_KEEPALIVE=128 nginx's pooled upstream connections: at least the largest client
#                                connection count, so that nginx pools as scim-proxy does; beyond it,
#                                nginx opens and closes an upstream connection per request.
#   UPSTREAM_HTTP2=1             the upstream also offers h2 (ALPN): scim-proxy then multiplexes its
#                                requests over HTTP/2 upstream, which nginx's proxy_pass cannot do
#   SCIM_PROXY_BIN=path          another scim-proxy binary (e.g. a build with debug line tables)
#   PERF=1                       also `perf record` scim-proxy during its measured runs (call
#                                graphs by DWARF; needs linux-perf): OUT/perf-<scenario>-<rep>.data
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-5}"
REPS="${REPS:-3}"
WARMUP="${WARMUP:-1}"
MAX_SECONDS="${MAX_SECONDS:-540}"
UP_PORT="${UP_PORT:-19443}"
PROXY_PORT="${PROXY_PORT:-18443}"
NGX_PORT="${NGX_PORT:-18444}"
LOG_PORT="${LOG_PORT:-18445}"
ADMIN_PORT="${ADMIN_PORT:-18447}"
NGINX_UPSTREAM_KEEPALIVE="${NGINX_UPSTREAM_KEEPALIVE:-128}"
IDLE_N="${IDLE_N:-1000}"
SCENARIOS="${SCENARIOS:-get1k_c1 get1k_c16 get1k_c128 rate1k_c10 list1m_c4 newconn_c16 get1k_c16_log idle}"
OUT="${OUT:-$ROOT/target/load-bench/$(date +%Y%m%d-%H%M%S)}"

T0=$(date +%s)
log() { printf '[%4ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ------------------------------------------------------------------ tools
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v taskset >/dev/null || missing+=(util-linux)
[[ -z "${PERF:-}" ]] || command -v perf >/dev/null || missing+=(linux-perf)
if ((${#missing[@]})); then
    [[ -z "${SKIP_INSTALL:-}" ]] || die "missing: ${missing[*]} (and SKIP_INSTALL is set)"
    sudo=()
    [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    log "installing from Debian's packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx -V 2>&1 | grep -q -- '--with-http_sub_module' || die "this nginx lacks sub_filter (http_sub_module)"
cores=$(nproc)
# CPU layout: the load generator, the upstream and the proxies each on a core of their own when
# there are three; with two, the upstream and the proxies share the second; with one, all share it.
if ((cores >= 3)); then
    def_up=1 def_proxy=2
elif ((cores == 2)); then
    def_up=1 def_proxy=1
else
    def_up=0 def_proxy=0
fi
LOADGEN_CPU="${LOADGEN_CPU:-0}"
UPSTREAM_CPU="${UPSTREAM_CPU:-${SERVER_CPU:-$def_up}}"
PROXY_CPU="${PROXY_CPU:-${SERVER_CPU:-$def_proxy}}"
if ((cores < 2)); then
    log "only $cores core: load generator and servers share core 0 (ratios still count, absolute numbers do not)"
    LOADGEN_CPU=0
    UPSTREAM_CPU=0
    PROXY_CPU=0
fi
for c in "$LOADGEN_CPU" "$UPSTREAM_CPU" "$PROXY_CPU"; do
    [[ "$c" =~ ^[0-9]+$ ]] || die "LOADGEN_CPU, UPSTREAM_CPU and PROXY_CPU are core numbers, not '$c'"
done

# ------------------------------------------------------------------ build
BIN="${SCIM_PROXY_BIN:-$ROOT/target/release/scim-proxy}"
if [[ -z "${SKIP_BUILD:-}" && -z "${SCIM_PROXY_BIN:-}" ]]; then
    log "cargo build --release (minutes from a fresh checkout; not counted in MAX_SECONDS)"
    cargo build --release --locked --quiet --bin scim-proxy
fi
[[ -x "$BIN" ]] || die "$BIN not built"

# oha, for the fixed-rate scenario only: from PATH, or target/bench-tools/bin, or installed there.
OHA=""
OHA_SKIP="" # why rate1k_c10 is skipped, if it is
if [[ " $SCENARIOS " == *" rate1k_c10 "* ]]; then
    if command -v oha >/dev/null; then
        OHA=$(command -v oha)
    elif [[ -x "$ROOT/target/bench-tools/bin/oha" ]]; then
        OHA="$ROOT/target/bench-tools/bin/oha"
    elif [[ -n "${SKIP_INSTALL:-}" ]]; then
        OHA_SKIP="oha not found (PATH, target/bench-tools/bin) and SKIP_INSTALL is set"
    else
        log "cargo install oha into target/bench-tools (minutes; not counted in MAX_SECONDS; log: $OUT/oha-install.log)"
        mkdir -p "$OUT"
        if cargo install oha --locked --root "$ROOT/target/bench-tools" >"$OUT/oha-install.log" 2>&1; then
            OHA="$ROOT/target/bench-tools/bin/oha"
        else
            OHA_SKIP="cargo install oha failed (see $OUT/oha-install.log)"
        fi
    fi
    [[ -z "$OHA_SKIP" ]] || log "rate1k_c10 will be skipped: $OHA_SKIP"
fi
OHA_JSON=(--output-format json)
OHA_CACERT=1
if [[ -n "$OHA" ]]; then
    oha_help=$("$OHA" --help 2>&1 || true)
    [[ "$oha_help" == *--output-format* ]] || OHA_JSON=(-j) # before oha 1.5
    # Trust the run's CA; an oha without --cacert can only skip verification (--insecure): the
    # servers are ours on loopback, and the handshakes are few (keep-alive), so the numbers hold.
    if [[ "$oha_help" != *--cacert* ]]; then
        OHA_CACERT=""
        log "this oha has no --cacert: rate1k_c10 runs with --insecure (no certificate verification)"
    fi
fi
T0=$(date +%s)

# ------------------------------------------------------------------ work area, cleanup
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/scim-proxy-bench.XXXXXX)"
chmod 755 "$WORK" # nginx workers may run as another user
PGIDS=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
    sleep 0.5
    for pg in "${PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
    local f
    for f in "$WORK"/*.stdout "$WORK"/*.stderr "$WORK"/*-error.log; do
        [[ -s "$f" ]] && tail -n 50 "$f" >"$OUT/$(basename "$f")" 2>/dev/null
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    for _ in $(seq 1 300); do
        port_free "$1" || return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 (logs: $OUT/*.stderr after exit)"
}
for p in "$UP_PORT" "$PROXY_PORT" "$NGX_PORT" "$LOG_PORT" "$ADMIN_PORT"; do
    port_free "$p" || die "127.0.0.1:$p is in use"
done

# start NAME CPU COMMAND...: in its own session (process group = its pid), pinned, logs in OUT.
start() {
    local name=$1 cpu=$2
    shift 2
    # Logs stay in WORK (scim-proxy's access lines run to hundreds of MB); their tails go to OUT.
    setsid taskset -c "$cpu" "$@" >"$WORK/$name.stdout" 2>"$WORK/$name.stderr" </dev/null &
    local pid=$!
    PGIDS+=("$pid")
    printf -v "PID_${name//[-+]/_}" '%s' "$pid"
}

# CPU time (user + system, all threads) of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -; }
# Resets VmHWM to the current RSS (Linux >= 4.0), so each run's peak is its own.
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
nginx_worker() {
    local w
    for _ in $(seq 1 50); do
        w=$(pgrep -P "$1" | head -n1 || true)
        [[ -n "$w" ]] && {
            echo "$w"
            return
        }
        sleep 0.1
    done
    die "no nginx worker under $1"
}

# ------------------------------------------------------------------ versions
{
    echo "date: $(date -u +%FT%TZ)"
    echo "scim-proxy: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (work tree modified)')"
    echo "binary: $BIN (built $(date -u -r "$BIN" +%FT%TZ), sha256 $(sha256sum "$BIN" | cut -c1-12))"
    echo "rustc: $(rustc -V 2>/dev/null || echo '?')"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "nginx reference proxy: upstream keepalive $NGINX_UPSTREAM_KEEPALIVE"
    echo "wrk: $(wrk -v 2>&1 | head -n1 || true)"
    [[ -z "$OHA" ]] || echo "oha: $("$OHA" --version 2>&1 | head -n1 || true)"
    echo "openssl: $(openssl version 2>/dev/null || echo '?')"
    echo "python3: $(python3 -V 2>&1)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) x $cores"
    echo "pinning: load generator on core $LOADGEN_CPU, upstream on core $UPSTREAM_CPU, proxies (scim-proxy, scim-proxy+log, nginx) on core $PROXY_CPU"
    echo "runs: ${DURATION}s x $REPS reps per target, ${WARMUP}s warm-up, interleaved"
} >"$OUT/meta.txt"
cat "$OUT/meta.txt" >&2

# ------------------------------------------------------------------ certificates, tokens, bodies, configs
"$BIN" dev-certs --dir "$WORK/certs" >/dev/null
chmod 644 "$WORK/certs/ca.pem" "$WORK/certs/server.crt"
OLD_TOKEN="okta-old-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
V2_TOKEN="v2-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s' "$V2_TOKEN" >"$WORK/v2.token"
chmod 600 "$WORK/v2.token"
OLD_HASH=$(printf '%s' "$OLD_TOKEN" | "$BIN" hash-token)
UP_BASE="https://localhost:$UP_PORT/api/v2/scim"
python3 "$HERE/gen_bodies.py" "$WORK/bodies" "$UP_BASE" >"$OUT/bodies.txt"
chmod -R a+rX "$WORK/bodies"
mkdir -p "$WORK/tmp"
NGINX_USER="$(id -un) $(id -gn)"

render() { # template output [KEY=VALUE]...
    local tpl=$1 out=$2
    shift 2
    local args=() kv
    # KEY=VALUE arguments first, so that they win over the defaults below.
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    args+=(-e "s|@WORK@|$WORK|g" -e "s|@UP_PORT@|$UP_PORT|g" -e "s|@NGX_PORT@|$NGX_PORT|g"
        -e "s|@OLD_TOKEN@|$OLD_TOKEN|g" -e "s|@V2_TOKEN@|$V2_TOKEN|g" -e "s|@OLD_HASH@|$OLD_HASH|g"
        -e "s|@USER@|$NGINX_USER|g")
    sed "${args[@]}" "$tpl" >"$out"
    ! grep -q '@[A-Z_]*@' "$out" || die "unrendered placeholder in $out"
}
render "$HERE/nginx-upstream.conf.in" "$WORK/nginx-upstream.conf" UP_HTTP2="${UPSTREAM_HTTP2:+ http2}"
render "$HERE/nginx-proxy.conf.in" "$WORK/nginx-proxy.conf" NAME=nginx-proxy KEEPALIVE="$NGINX_UPSTREAM_KEEPALIVE"
render "$HERE/scim-proxy.toml.in" "$WORK/scim-proxy.toml" PORT="$PROXY_PORT" TRAFFIC=off ADMIN=
# The instance with the traffic log also has the admin listener, for its drop counter (GNU sed
# turns the \n into a newline).
render "$HERE/scim-proxy.toml.in" "$WORK/scim-proxy-log.toml" PORT="$LOG_PORT" TRAFFIC=traffic.jsonl \
    ADMIN="[admin]\naddr = \"127.0.0.1:$ADMIN_PORT\""
cp "$WORK"/*.conf "$WORK"/*.toml "$OUT/"
sed -i "s|$OLD_TOKEN|<old token>|g; s|$V2_TOKEN|<v2 token>|g" "$OUT"/*.conf

# ------------------------------------------------------------------ servers
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || log "could not raise the open-file limit ($(ulimit -n))"
nginx -t -q -p "$WORK" -e "$WORK/upstream-error.log" -c "$WORK/nginx-upstream.conf"
nginx -t -q -p "$WORK" -e "$WORK/nginx-proxy-error.log" -c "$WORK/nginx-proxy.conf"
"$BIN" check --config "$WORK/scim-proxy.toml" >"$OUT/check.txt" 2>&1 || die "scim-proxy check: $(cat "$OUT/check.txt")"
"$BIN" check --config "$WORK/scim-proxy-log.toml" >"$OUT/check-log.txt" 2>&1 || die "scim-proxy check (traffic log): $(cat "$OUT/check-log.txt")"

start upstream "$UPSTREAM_CPU" nginx -p "$WORK" -e "$WORK/upstream-error.log" -c "$WORK/nginx-upstream.conf"
start nginx "$PROXY_CPU" nginx -p "$WORK" -e "$WORK/nginx-proxy-error.log" -c "$WORK/nginx-proxy.conf"
# RUST_LOG as shipped (info): with the traffic log off, scim-proxy writes one access line per
# request to stderr, as it would to journald.
start scim-proxy "$PROXY_CPU" env -u RUST_LOG "$BIN" serve --config "$WORK/scim-proxy.toml"
start scim-proxy-log "$PROXY_CPU" env -u RUST_LOG "$BIN" serve --config "$WORK/scim-proxy-log.toml"
for p in "$UP_PORT" "$NGX_PORT" "$PROXY_PORT" "$LOG_PORT" "$ADMIN_PORT"; do wait_port "$p"; done

declare -A URL TOKEN MEMPID
URL[direct]="https://localhost:$UP_PORT/api/v2/scim"
URL[scim-proxy]="https://localhost:$PROXY_PORT/SCIM/v2"
URL[nginx]="https://localhost:$NGX_PORT/SCIM/v2"
URL[scim-proxy+log]="https://localhost:$LOG_PORT/SCIM/v2"
TOKEN[direct]="$V2_TOKEN"
TOKEN[scim-proxy]="$OLD_TOKEN"
TOKEN[nginx]="$OLD_TOKEN"
TOKEN[scim-proxy+log]="$OLD_TOKEN"
# PID_<name> are set by start (printf -v), which shellcheck cannot see.
# shellcheck disable=SC2154
{
    MEMPID[direct]=$(nginx_worker "$PID_upstream")
    MEMPID[nginx]=$(nginx_worker "$PID_nginx")
    MEMPID[scim-proxy]="$PID_scim_proxy"
    MEMPID[scim-proxy+log]="$PID_scim_proxy_log"
    log "up: upstream :$UP_PORT (worker ${MEMPID[direct]}), scim-proxy :$PROXY_PORT (pid $PID_scim_proxy), nginx :$NGX_PORT (worker ${MEMPID[nginx]}), scim-proxy+log :$LOG_PORT"
}

# ------------------------------------------------------------------ correctness before speed
CA="$WORK/certs/ca.pem"
count() { { grep -oF "$1" "$2" || true; } | wc -l; }
check() { # target path token expected-status [expected-URL-count]
    local t=$1 path=$2 token=$3 want=$4 urls=${5:-}
    local got auth=()
    [[ -n "$token" ]] && auth=(-H "Authorization: Bearer $token")
    got=$(curl -sS --cacert "$CA" "${auth[@]}" -o "$WORK/resp" -w '%{http_code}' "${URL[$t]}$path") || die "curl ${URL[$t]}$path"
    [[ "$got" == "$want" ]] || die "$t $path: status $got, want $want"
    [[ -z "$urls" ]] && return 0
    local base=${URL[$t]}
    local n_base n_up
    n_base=$(count "$base/" "$WORK/resp")
    n_up=$(count "$UP_BASE/" "$WORK/resp")
    if [[ "$t" == direct ]]; then
        [[ "$n_base" == "$urls" ]] || die "$t $path: $n_base upstream URLs, want $urls"
    else
        [[ "$n_base" == "$urls" && "$n_up" == 0 ]] || die "$t $path: $n_base client URLs and $n_up upstream URLs, want $urls and 0"
    fi
}
for t in direct scim-proxy nginx scim-proxy+log; do
    check "$t" /Users/1 "${TOKEN[$t]}" 200 3
    check "$t" "/Users?startIndex=1&count=1000" "${TOKEN[$t]}" 200 3000
    check "$t" /Users/1 "" 401
    [[ "$t" == direct ]] || check "$t" /Users/1 "$V2_TOKEN" 401
done
log "checked: every target answers 200 with all 3 / 3,000 URLs pointing at its own base, 401 without the right token"

# ------------------------------------------------------------------ scenarios
declare -A SC_CONNS SC_PATH SC_HDR SC_TARGETS
SC_CONNS=([get1k_c1]=1 [get1k_c16]=16 [get1k_c128]=128 [rate1k_c10]=10 [list1m_c4]=4 [newconn_c16]=16 [get1k_c16_log]=16)
SC_PATH=([get1k_c1]=/Users/1 [get1k_c16]=/Users/1 [get1k_c128]=/Users/1 [rate1k_c10]=/Users/1
    [list1m_c4]="/Users?startIndex=1&count=1000" [newconn_c16]=/Users/1 [get1k_c16_log]=/Users/1)
SC_HDR=([newconn_c16]="Connection: close")
# Fixed rate (requests per second over all connections; oha), instead of wrk's as fast as it can.
declare -A SC_RATE=([rate1k_c10]=1000)
DEFAULT_TARGETS="direct scim-proxy nginx"
SC_TARGETS=([get1k_c16_log]="scim-proxy scim-proxy+log")

RESULTS="$OUT/results.tsv"
printf 'scenario\ttarget\trep\trps\tp50_us\tp99_us\terrors\tnon2xx\thwm_kb\tcpu_us_per_req\tsys_us_per_req\tup_us_per_req\n' >"$RESULTS"
over_time() { (($(date +%s) - T0 > MAX_SECONDS)); }

# load_oha SCENARIO TARGET SECONDS HEADER...: oha at the scenario's fixed rate, with latency
# correction (latency counted from when each request was due, not when it was sent); prints the
# WRKRESULT line (oha_report.py) after oha's own error lines. Verifies TLS with the run's CA.
load_oha() {
    local sc=$1 t=$2 dur=$3
    shift 3
    local tls=(--insecure)
    [[ -z "$OHA_CACERT" ]] || tls=(--cacert "$CA")
    if ! timeout $((dur + 30)) taskset -c "$LOADGEN_CPU" "$OHA" -z "${dur}s" -c "${SC_CONNS[$sc]}" \
        -q "${SC_RATE[$sc]}" --latency-correction -t 5s --no-tui "${OHA_JSON[@]}" "${tls[@]}" \
        "$@" "${URL[$t]}${SC_PATH[$sc]}" >"$WORK/oha.json" 2>"$WORK/oha.stderr"; then
        cat "$WORK/oha.stderr" "$WORK/oha.json"
        return 1
    fi
    cat "$WORK/oha.stderr"
    python3 "$HERE/oha_report.py" <"$WORK/oha.json" 2>&1
}

# run_wrk SCENARIO TARGET REP SECONDS (REP "-" = warm-up, not recorded); oha for a fixed-rate one.
run_wrk() {
    local sc=$1 t=$2 rep=$3 dur=$4
    local pid=${MEMPID[$t]} hdr=(-H "Authorization: Bearer ${TOKEN[$t]}" -H "Accept: application/scim+json")
    [[ -n "${SC_HDR[$sc]:-}" ]] && hdr+=(-H "${SC_HDR[$sc]}")
    reset_hwm "$pid"
    local cpu0 sys0 up0 up_pid=${MEMPID[direct]}
    cpu0=$(cpu_ticks "$pid")
    sys0=$(sys_ticks "$pid")
    up0=$(cpu_ticks "$up_pid")
    local perf_pid=""
    if [[ -n "${PERF:-}" && "$t" == scim-proxy* && "$rep" != - ]]; then
        taskset -c "$LOADGEN_CPU" perf record -q -F "${PERF_FREQ:-499}" --call-graph dwarf -p "$pid" \
            -o "$OUT/perf-$sc-$rep.data" -- sleep "$dur" >>"$OUT/perf.log" 2>&1 &
        perf_pid=$!
    fi
    local out tool=wrk
    if [[ -n "${SC_RATE[$sc]:-}" ]]; then
        tool=oha
        if ! out=$(load_oha "$sc" "$t" "$dur" "${hdr[@]}"); then
            printf '%s\n' "$out" >&2
            die "oha failed ($sc, $t)"
        fi
    elif ! out=$(timeout $((dur + 30)) taskset -c "$LOADGEN_CPU" wrk -t1 -c"${SC_CONNS[$sc]}" -d"${dur}s" \
        --timeout 5s -s "$HERE/wrk_report.lua" "${hdr[@]}" "${URL[$t]}${SC_PATH[$sc]}" 2>&1); then
        printf '%s\n' "$out" >&2
        die "wrk failed ($sc, $t)"
    fi
    [[ -n "$perf_pid" ]] && { wait "$perf_pid" || log "perf record failed (see $OUT/perf.log)"; }
    printf '== %s %s rep %s\n%s\n' "$sc" "$t" "$rep" "$out" >>"$OUT/$tool.log"
    [[ "$rep" == - ]] && return 0
    local line
    line=$(grep '^WRKRESULT' <<<"$out") || die "no result line from $tool ($sc, $t)"
    local -A r
    local kv
    for kv in ${line#WRKRESULT }; do r[${kv%%=*}]=${kv#*=}; done
    local rps errors cpu
    rps=$(awk -v n="${r[requests]}" -v us="${r[duration_us]}" 'BEGIN {printf "%.1f", n / (us / 1e6)}')
    errors=$((r[connect] + r[read] + r[write] + r[timeout] + r[status] + ${r[other]:-0}))
    # CPU the target process spent per request (the upstream's share is not in it).
    per_req() { awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" -v n="${r[requests]}" \
        'BEGIN {printf "%.1f", (n > 0 ? (b - a) / hz * 1e6 / n : 0)}'; }
    cpu=$(per_req "$cpu0" "$(cpu_ticks "$pid")")
    # Its kernel share, and the upstream's CPU per request in the same run (the two share a core).
    local sys up
    sys=$(per_req "$sys0" "$(sys_ticks "$pid")")
    up=$(per_req "$up0" "$(cpu_ticks "$up_pid")")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$t" "$rep" "$rps" "${r[p50_us]}" "${r[p99_us]}" \
        "$errors" "${r[status]}" "$(hwm_kb "$pid")" "$cpu" "$sys" "$up" >>"$RESULTS"
    log "$(printf '%-14s %-15s rep %s: %9s req/s  p50 %6.2f ms  p99 %6.2f ms  %7s us CPU/req  errors %s' "$sc" "$t" "$rep" \
        "$rps" "$(awk -v u="${r[p50_us]}" 'BEGIN {print u / 1000}')" "$(awk -v u="${r[p99_us]}" 'BEGIN {print u / 1000}')" \
        "$cpu" "$errors")"
}

IDLE="$OUT/idle.tsv"
printf 'target\tn\trss_before_kb\trss_kb\thwm_kb\n' >"$IDLE"
run_idle() {
    local t
    for t in scim-proxy nginx direct; do
        local pid=${MEMPID[$t]} before fifo="$WORK/idle.fifo"
        before=$(rss_kb "$pid")
        reset_hwm "$pid"
        rm -f "$fifo"
        mkfifo "$fifo"
        local rest=${URL[$t]#https://localhost:}
        setsid taskset -c "$LOADGEN_CPU" python3 "$HERE/idle_conns.py" --port "${rest%%/*}" \
            --ca "$CA" --path "/${rest#*/}/Users/1" --token "${TOKEN[$t]}" \
            --n "$IDLE_N" --hold 60 >"$fifo" 2>>"$OUT/idle.stderr" &
        local cpid=$!
        PGIDS+=("$cpid")
        local ready=""
        read -r -t 60 ready <"$fifo" || true
        local n=${ready#READY }
        [[ "$ready" == READY* ]] || {
            kill -- "-$cpid" 2>/dev/null || true
            die "idle_conns.py did not get ready against $t (see $OUT/idle.stderr)"
        }
        sleep 1
        local rss hwm
        rss=$(rss_kb "$pid")
        hwm=$(hwm_kb "$pid")
        kill -TERM -- "-$cpid" 2>/dev/null || true
        wait "$cpid" 2>/dev/null || true
        printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$n" "$before" "$rss" "$hwm" >>"$IDLE"
        log "idle: $t with $n TLS connections held: RSS $((before / 1024)) -> $((rss / 1024)) MiB"
        sleep 1
    done
}

for sc in $SCENARIOS; do
    if over_time; then
        log "MAX_SECONDS reached: skipping $sc and what follows"
        break
    fi
    if [[ "$sc" == idle ]]; then
        run_idle
        continue
    fi
    [[ -n "${SC_CONNS[$sc]:-}" ]] || die "unknown scenario $sc"
    if [[ -n "${SC_RATE[$sc]:-}" && -z "$OHA" ]]; then
        log "skipping $sc: ${OHA_SKIP:-no oha}"
        printf '%s\t%s\n' "$sc" "${OHA_SKIP:-no oha}" >>"$OUT/skipped.tsv"
        continue
    fi
    targets=${SC_TARGETS[$sc]:-$DEFAULT_TARGETS}
    for t in $targets; do run_wrk "$sc" "$t" - "$WARMUP"; done
    for rep in $(seq 1 "$REPS"); do
        for t in $targets; do
            over_time && break 2
            run_wrk "$sc" "$t" "$rep" "$DURATION"
        done
    done
done

# ------------------------------------------------------------------ traffic log: written, dropped, served
# After the runs: scim-proxy+log's own counters (requests answered, including warm-ups and the
# checks; traffic records dropped) and the lines in its traffic log, rotated files included.
traffic_log_report() {
    local metrics="$OUT/metrics-scim-proxy-log.txt"
    if ! curl -sS --max-time 10 -o "$metrics" "http://127.0.0.1:$ADMIN_PORT/metrics"; then
        log "could not read scim-proxy+log's /metrics on 127.0.0.1:$ADMIN_PORT: no traffic-log.tsv"
        return 0
    fi
    local served dropped written=0 files=0 f
    served=$(awk '$1 ~ /^scim_proxy_requests_total([{]|$)/ {s += $NF} END {printf "%d", s}' "$metrics")
    dropped=$(awk '$1 ~ /^scim_proxy_log_records_dropped_total[{].*sink="traffic"/ {s += $NF} END {printf "%d", s}' "$metrics")
    grep -q '^scim_proxy_log_records_dropped_total' "$metrics" || log "no scim_proxy_log_records_dropped_total in /metrics (renamed?)"
    # The log's writer thread may still be draining its queue: wait (bounded) for the last lines.
    for _ in $(seq 1 50); do
        written=0 files=0
        for f in "$WORK"/traffic.jsonl "$WORK"/traffic.jsonl.[0-9]*; do
            [[ -f "$f" ]] || continue
            files=$((files + 1))
            written=$((written + $(wc -l <"$f")))
        done
        ((written + dropped >= served)) && break
        sleep 0.1
    done
    printf 'records_written\trecords_dropped\trequests_served\tfiles\n%s\t%s\t%s\t%s\n' \
        "$written" "$dropped" "$served" "$files" >"$OUT/traffic-log.tsv"
    log "traffic log: $written records written ($files files), $dropped dropped, $served requests served"
}
if [[ " $SCENARIOS " == *" get1k_c16_log "* ]]; then traffic_log_report; fi

log "measuring took $(($(date +%s) - T0)) s; results in $OUT"
echo
cat "$OUT/meta.txt"
echo
python3 "$HERE/summarize.py" "$OUT"
