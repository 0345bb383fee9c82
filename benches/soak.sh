#!/usr/bin/env bash
# Soak test (issue 4): does scim-proxy keep its memory and file descriptors bounded over time?
#
#   benches/soak.sh              # all three modes: steady (120 s), idle, body
#   benches/soak.sh steady       # or one mode: steady | idle | body
#   SOAK_SECONDS=600 benches/soak.sh steady
#
# Builds target/release/scim-proxy, writes a throwaway CA and certificate (`scim-proxy dev-certs`)
# into a temporary directory, starts `scim-proxy test-upstream` and `scim-proxy serve` on 127.0.0.1,
# and samples the proxy's RSS (/proc/<pid>/status VmRSS, VmHWM), open file descriptors
# (/proc/<pid>/fd) and threads while it runs:
#
#   steady  SOAK_WORKERS curl workers (HTTP/1.1 and HTTP/2) each loop through a provisioning cycle
#           (create, read, Entra-style deactivate, filter, a wrong token (401), a wrong path (404),
#           delete) and, when wrk is installed, SOAK_WRK_CONNS wrk connections add GETs; the traffic
#           log is on, rotated at 4 MiB, so rotation runs too. A table every SOAK_SAMPLE seconds, then
#           the verdict: RSS and fd growth between the first and the last third of the samples.
#   idle    SOAK_IDLE_CONNS TLS connections held open for SOAK_IDLE_SECONDS: a third after the
#           handshake only, a third idle after one request (keep-alive), a third in the middle of a
#           request head (slow). RSS growth while they are open, and fds back down once they close.
#   body    SOAK_BODY_ROUNDS times a SOAK_BODY_MB MB SCIM User up (POST, max_body raised) and back
#           down (the upstream returns it), then deleted. Peak RSS growth (VmHWM) over the baseline.
#
# Every loop is bounded in time and count. Everything started is stopped on exit (by PID). Needs
# bash, curl and python3 (Debian packages); wrk is used when present. Exit status 1 if a verdict fails.
#
# Settings (environment), with defaults:
#   SOAK_SECONDS=120 SOAK_SAMPLE=5 SOAK_WORKERS=4 SOAK_WRK_CONNS=4
#   SOAK_IDLE_CONNS=1000 SOAK_IDLE_SECONDS=30
#   SOAK_BODY_MB=50 SOAK_BODY_ROUNDS=3
#   SOAK_MAX_RSS_GROWTH_MB=16 SOAK_MAX_FD_GROWTH=16 SOAK_MAX_ERROR_PCT=0.5   (steady verdict)
#   SOAK_MAX_IDLE_MB=64                                                      (idle verdict)
#   SOAK_MAX_BODY_MB=32                                                      (body verdict)
#   SOAK_PROXY_PORT=18643 SOAK_UP_PORT=18644 SOAK_ADMIN_PORT=18645
#   SOAK_OUT=target/soak/<time>   where the tables (TSV) and the logs are kept
#   SKIP_BUILD=1                  use the existing target/release/scim-proxy
#   SOAK_UPSTREAM_RATE=N          the test upstream rate-limits the tenant to N requests/s (429 with
#                                 Retry-After and ratelimit-* headers), and re-reads its token file
#                                 per request (a rotation invalidates the old token at once)
#   SOAK_ROUTE_RATE=N             the route paces itself at N requests/s (max_requests_per_second)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

MODE="${1:-all}"
SOAK_SECONDS="${SOAK_SECONDS:-120}"
SOAK_SAMPLE="${SOAK_SAMPLE:-5}"
SOAK_WORKERS="${SOAK_WORKERS:-4}"
SOAK_WRK_CONNS="${SOAK_WRK_CONNS:-4}"
SOAK_IDLE_CONNS="${SOAK_IDLE_CONNS:-1000}"
SOAK_IDLE_SECONDS="${SOAK_IDLE_SECONDS:-30}"
SOAK_BODY_MB="${SOAK_BODY_MB:-50}"
SOAK_BODY_ROUNDS="${SOAK_BODY_ROUNDS:-3}"
SOAK_MAX_RSS_GROWTH_MB="${SOAK_MAX_RSS_GROWTH_MB:-16}"
SOAK_MAX_FD_GROWTH="${SOAK_MAX_FD_GROWTH:-16}"
SOAK_MAX_ERROR_PCT="${SOAK_MAX_ERROR_PCT:-0.5}"
SOAK_MAX_IDLE_MB="${SOAK_MAX_IDLE_MB:-64}"
SOAK_MAX_BODY_MB="${SOAK_MAX_BODY_MB:-32}"
PROXY_PORT="${SOAK_PROXY_PORT:-18643}"
UP_PORT="${SOAK_UP_PORT:-18644}"
ADMIN_PORT="${SOAK_ADMIN_PORT:-18645}"
OUT="${SOAK_OUT:-$ROOT/target/soak/$(date +%Y%m%d-%H%M%S)}"
SOAK_UPSTREAM_RATE="${SOAK_UPSTREAM_RATE:-}"
SOAK_ROUTE_RATE="${SOAK_ROUTE_RATE:-}"
UPSTREAM_FLAGS=()
if [[ -n "$SOAK_UPSTREAM_RATE" ]]; then
    UPSTREAM_FLAGS=(--rate-limit "$SOAK_UPSTREAM_RATE" --reread-token)
fi
ROUTE_PACING=""
if [[ -n "$SOAK_ROUTE_RATE" ]]; then
    ROUTE_PACING="max_requests_per_second = $SOAK_ROUTE_RATE"
fi

case "$MODE" in
    all | steady | idle | body) ;;
    *)
        echo "usage: $0 [all|steady|idle|body]" >&2
        exit 2
        ;;
esac

T0=$(date +%s)
log() { printf '[%4ds] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

for tool in curl python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install $tool)"
done

# ------------------------------------------------------------------------------------------ cleanup

PIDS=()
WORK="$(mktemp -d -t scim-proxy-soak.XXXXXX)"
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        # A worker's own children (curl) first, then the worker or server itself.
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A sleep that a signal interrupts (bash runs traps only between commands).
nap() {
    sleep "$1" &
    wait $! 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------ build and setup

BIN="$ROOT/target/release/scim-proxy"
if [[ "${SKIP_BUILD:-}" != 1 ]]; then
    log "building target/release/scim-proxy"
    cargo build --release --quiet
fi
[[ -x "$BIN" ]] || die "$BIN is missing (run without SKIP_BUILD=1)"

# Idle mode holds SOAK_IDLE_CONNS sockets on both sides.
want_fds=$((SOAK_IDLE_CONNS * 2 + 256))
if (($(ulimit -n) < want_fds)); then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
if [[ "$MODE" == all || "$MODE" == idle ]] && (($(ulimit -n) < want_fds)); then
    die "open file limit $(ulimit -n) is below $want_fds for $SOAK_IDLE_CONNS idle connections; lower SOAK_IDLE_CONNS"
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$PROXY_PORT" "$UP_PORT" "$ADMIN_PORT"; do
    port_busy "$port" && die "127.0.0.1:$port is in use; set SOAK_PROXY_PORT/SOAK_UP_PORT/SOAK_ADMIN_PORT"
done

mkdir -p "$OUT"
"$BIN" dev-certs --dir "$WORK" >/dev/null
V2_TOKEN="soak-v2-token-$RANDOM$RANDOM"
IDP_TOKEN="soak-idp-token-$RANDOM$RANDOM"
printf '%s\n' "$V2_TOKEN" >"$WORK/v2.token"
chmod 600 "$WORK/v2.token"
IDP_SHA="$(printf '%s' "$IDP_TOKEN" | "$BIN" hash-token)"
BASE="https://localhost:$PROXY_PORT"
CURL=(curl -sS --max-time 30 --cacert "$WORK/ca.pem" -H "Authorization: Bearer $IDP_TOKEN")

# The proxy config; $1 is extra [limits] lines.
write_config() {
    cat >"$WORK/scim-proxy.toml" <<EOF
[listen]
addr = "127.0.0.1:$PROXY_PORT"
cert = "server.crt"
key = "server.key"

[admin]
addr = "127.0.0.1:$ADMIN_PORT"

[limits]
$1

[egress]
ca_file = "ca.pem"

[reload]
watch = false

[log]
traffic = "traffic.log"
max_file_bytes = "4MiB"
keep_files = 2

[[routes]]
name = "soak"
upstream = "https://127.0.0.1:$UP_PORT/api/v2/scim"
token_file = "v2.token"
$ROUTE_PACING

[[routes.clients]]
name = "okta"
token_sha256 = "$IDP_SHA"
EOF
    "$BIN" check --config "$WORK/scim-proxy.toml" >"$OUT/check.log" 2>&1 || {
        cat "$OUT/check.log" >&2
        die "the soak config does not check"
    }
}

PROXY_PID=""
UP_PID=""
# Starts the upstream and the proxy (with [limits] lines $1); waits until both answer.
start_servers() {
    write_config "$1"
    "$BIN" test-upstream --listen "127.0.0.1:$UP_PORT" --cert "$WORK/server.crt" --key "$WORK/server.key" \
        --token-file "$WORK/v2.token" --quiet "${UPSTREAM_FLAGS[@]}" >"$OUT/upstream-$2.log" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    "$BIN" serve --config "$WORK/scim-proxy.toml" >"$OUT/proxy-$2.stdout" 2>"$OUT/proxy-$2.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    local i
    for i in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" &&
            "${CURL[@]}" -o /dev/null "$BASE/SCIM/v2/Users?count=1" 2>/dev/null; then
            return 0
        fi
        kill -0 "$PROXY_PID" 2>/dev/null || die "the proxy exited: $(tail -5 "$OUT/proxy-$2.log")"
        sleep 0.1
    done
    die "the proxy did not answer within 10 s"
}

stop_servers() {
    local pid rest=()
    for pid in "$PROXY_PID" "$UP_PID"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$PROXY_PID" "$UP_PID"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        [[ "$pid" == "$PROXY_PID" || "$pid" == "$UP_PID" ]] || rest+=("$pid")
    done
    PIDS=("${rest[@]}")
    rm -f "$WORK"/traffic.log*
}

# ------------------------------------------------------------------------------------------ sampling

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
requests_total() {
    curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null |
        awk '/^scim_proxy_requests_total\{/ { s += $NF } END { printf "%d\n", s }'
}

# One table row: seconds, RSS MiB, peak RSS MiB, fds, threads, requests so far.
sample() {
    local t=$1 pid=$PROXY_PID
    printf '%d\t%.1f\t%.1f\t%d\t%d\t%d\n' "$t" \
        "$(awk "BEGIN{print $(status_kb "$pid" VmRSS) / 1024}")" \
        "$(awk "BEGIN{print $(status_kb "$pid" VmHWM) / 1024}")" \
        "$(fd_count "$pid")" "$(status_kb "$pid" Threads)" "$(requests_total)"
}

print_header() { printf '%6s %9s %9s %6s %8s %10s\n' t_s rss_mib peak_mib fds threads requests; }
print_row() { awk -F'\t' '{ printf "%6d %9.1f %9.1f %6d %8d %10d\n", $1, $2, $3, $4, $5, $6 }' <<<"$1"; }

FAILED=0
verdict() {
    if [[ "$1" == PASS ]]; then
        printf 'VERDICT %-7s PASS  %s\n' "$2" "$3"
    else
        printf 'VERDICT %-7s FAIL  %s\n' "$2" "$3"
        FAILED=1
    fi
}

# ------------------------------------------------------------------------------------------ steady

steady_worker() {
    local id=$1 deadline=$2 proto=$3 n=0 ok=0 bad=0 codes resp uid name
    local max_iter=1000000
    while ((n < max_iter)) && (($(date +%s) < deadline)); do
        n=$((n + 1))
        name="w$id-$n@soak.example"
        resp="$("${CURL[@]}" "$proto" -H 'Content-Type: application/scim+json' \
            -d "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"$name\",\"active\":true,\"name\":{\"givenName\":\"Soak\",\"familyName\":\"Worker $id\"},\"emails\":[{\"primary\":true,\"type\":\"work\",\"value\":\"$name\"}]}" \
            "$BASE/SCIM/v2/Users" 2>/dev/null)" || resp=""
        uid="$(sed -n 's/.*"id":"\([0-9a-f-]\{36\}\)".*/\1/p' <<<"$resp" | head -1)"
        if [[ -z "$uid" ]]; then
            bad=$((bad + 1))
            continue
        fi
        ok=$((ok + 1))
        # One curl, one connection, six requests.
        codes="$("${CURL[@]}" "$proto" -o /dev/null -w '%{http_code}\n' \
            "$BASE/SCIM/v2/Users/$uid" \
            --next "${CURL[@]:1}" "$proto" -o /dev/null -w '%{http_code}\n' -X PATCH \
            -H 'Content-Type: application/scim+json' \
            -d '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}' \
            "$BASE/SCIM/v2/Users/$uid" \
            --next "${CURL[@]:1}" "$proto" -o /dev/null -w '%{http_code}\n' \
            "$BASE/SCIM/v2/Users?filter=userName+eq+%22$name%22&count=5" \
            --next -sS --max-time 30 --cacert "$WORK/ca.pem" "$proto" -o /dev/null -w '%{http_code}\n' \
            -H 'Authorization: Bearer not-a-known-token' "$BASE/SCIM/v2/Users" \
            --next "${CURL[@]:1}" "$proto" -o /dev/null -w '%{http_code}\n' "$BASE/SCIM/v3/nowhere" \
            --next "${CURL[@]:1}" "$proto" -o /dev/null -w '%{http_code}\n' -X DELETE "$BASE/SCIM/v2/Users/$uid" \
            2>/dev/null | tr '\n' ' ')" || true
        # Expected: 200, 200 (or 204), 200, 401, 404, 204.
        if [[ "$codes" =~ ^200\ 20[04]\ 200\ 401\ 404\ 204\ $ ]]; then
            ok=$((ok + 6))
        else
            bad=$((bad + 6))
            echo "worker $id iteration $n: $codes" >>"$OUT/steady-unexpected.log"
        fi
    done
    echo "$ok $bad" >"$WORK/worker-$id.result"
}

run_steady() {
    log "steady: $SOAK_SECONDS s, $SOAK_WORKERS curl workers, wrk connections: $(command -v wrk >/dev/null && echo "$SOAK_WRK_CONNS" || echo 'none (wrk not installed)')"
    start_servers "" steady
    local deadline=$(($(date +%s) + SOAK_SECONDS)) i proto
    for i in $(seq 1 "$SOAK_WORKERS"); do
        proto=--http1.1
        ((i % 2 == 0)) && proto=--http2
        steady_worker "$i" "$deadline" "$proto" &
        PIDS+=($!)
    done
    if command -v wrk >/dev/null && ((SOAK_WRK_CONNS > 0)); then
        cat >"$WORK/mix.lua" <<EOF
local paths = { "/SCIM/v2/Users?count=5", "/SCIM/v2/Groups?count=5", "/SCIM/v2/Users/00000000-0000-0000-0000-000000000000" }
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", paths[(n % #paths) + 1], { ["Authorization"] = "Bearer $IDP_TOKEN", ["Host"] = "localhost:$PROXY_PORT" })
end
EOF
        wrk -t1 -c"$SOAK_WRK_CONNS" -d"${SOAK_SECONDS}s" --timeout 10s -s "$WORK/mix.lua" "$BASE" >"$OUT/wrk.txt" 2>&1 &
        PIDS+=($!)
    fi
    local started tsv="$OUT/steady.tsv" row t
    started=$(date +%s)
    : >"$tsv"
    echo
    echo "== steady load: $SOAK_SECONDS s =="
    print_header
    local max_samples=$((SOAK_SECONDS / SOAK_SAMPLE + 2)) s=0
    while ((s < max_samples)); do
        s=$((s + 1))
        t=$(($(date +%s) - started))
        row="$(sample "$t")"
        echo "$row" >>"$tsv"
        print_row "$row"
        (($(date +%s) >= deadline)) && break
        nap "$SOAK_SAMPLE"
    done
    # Workers finish their iteration; wrk stops by itself.
    local waited=0
    while ((waited < 60)) && [[ $(find "$WORK" -name 'worker-*.result' | wc -l) -lt $SOAK_WORKERS ]]; do
        nap 1
        waited=$((waited + 1))
    done
    sleep 2
    row="$(sample "$(($(date +%s) - started))")"
    echo "$row" >>"$tsv"
    print_row "$row"
    local ok=0 bad=0 a b
    for f in "$WORK"/worker-*.result; do
        [[ -f "$f" ]] || continue
        read -r a b <"$f"
        ok=$((ok + a))
        bad=$((bad + b))
    done
    rm -f "$WORK"/worker-*.result
    local wrk_line=""
    # A third of wrk's GETs ask for a user that does not exist: its non-2xx count is those 404s.
    [[ -f "$OUT/wrk.txt" ]] && wrk_line="$(grep -E 'requests in|Non-2xx|Socket errors' "$OUT/wrk.txt" | tr -s ' ' | tr '\n' ';')"
    # First third vs last third of the samples taken under load.
    local stats
    stats="$(awk -F'\t' '{ rss[NR] = $2; fd[NR] = $4 } END {
        n = NR; k = int(n / 3); if (k < 1) k = 1
        for (i = 1; i <= k; i++) { r1 += rss[i]; f1 += fd[i] }
        for (i = n - k + 1; i <= n; i++) { r3 += rss[i]; f3 += fd[i] }
        printf "%.1f %.1f %.1f %.1f", r1 / k, r3 / k, f1 / k, f3 / k }' "$tsv")"
    local r1 r3 f1 f3
    read -r r1 r3 f1 f3 <<<"$stats"
    local growth fdg total errpct
    growth="$(awk "BEGIN{printf \"%+.1f\", $r3 - $r1}")"
    fdg="$(awk "BEGIN{printf \"%+.1f\", $f3 - $f1}")"
    total=$((ok + bad))
    errpct="$(awk "BEGIN{ if ($total > 0) printf \"%.2f\", 100 * $bad / $total; else print 100 }")"
    echo "curl workers: $total requests checked, $bad unexpected ($errpct %); wrk: ${wrk_line:-not run}"
    echo "RSS mean first third $r1 MiB, last third $r3 MiB (growth $growth MiB); fds $f1 -> $f3 (growth $fdg)"
    if awk "BEGIN{exit !($growth <= $SOAK_MAX_RSS_GROWTH_MB && $fdg <= $SOAK_MAX_FD_GROWTH && $errpct <= $SOAK_MAX_ERROR_PCT && $total > 0)}"; then
        verdict PASS steady "RSS $growth MiB (limit +$SOAK_MAX_RSS_GROWTH_MB), fds $fdg (limit $SOAK_MAX_FD_GROWTH), unexpected answers $errpct % (limit $SOAK_MAX_ERROR_PCT)"
    else
        verdict FAIL steady "RSS $growth MiB (limit +$SOAK_MAX_RSS_GROWTH_MB), fds $fdg (limit $SOAK_MAX_FD_GROWTH), unexpected answers $errpct % (limit $SOAK_MAX_ERROR_PCT); see $OUT"
    fi
    stop_servers
}

# ------------------------------------------------------------------------------------------ idle

run_idle() {
    log "idle: $SOAK_IDLE_CONNS TLS connections for $SOAK_IDLE_SECONDS s"
    # The connections must outlive the hold: no header or idle timeout before it ends.
    local hold_limit=$((SOAK_IDLE_SECONDS + 120))
    start_servers "header_read_timeout = \"${hold_limit}s\"
idle_timeout = \"${hold_limit}s\"" idle
    cat >"$WORK/idle.py" <<'EOF'
import select, socket, ssl, sys, time

n, port, ca, hold, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
conns, deadline = [], time.time() + 120
for i in range(n):
    if time.time() > deadline:
        break
    t = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="localhost")
    kind = i % 3
    if kind == 1:  # one request, then idle keep-alive
        t.sendall(f"GET /SCIM/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += t.recv(65536)
        head, body = buf.split(b"\r\n\r\n", 1)
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
        while len(body) < length:
            body += t.recv(65536)
    elif kind == 2:  # slow: half a request head
        t.sendall(b"GET /SCIM/v2/Users HTTP/1.1\r\nHost: loc")
    t.setblocking(False)
    conns.append(t)
print(f"open {len(conns)}", flush=True)
end = time.time() + hold
while time.time() < end:
    time.sleep(0.5)
readable, _, _ = select.select(conns, [], [], 0)
closed = 0
for t in readable:
    try:
        if t.recv(1) == b"":
            closed += 1
    except (ssl.SSLWantReadError, BlockingIOError):
        pass
    except OSError:
        closed += 1
print(f"closed-by-server {closed}", flush=True)
EOF
    local tsv="$OUT/idle.tsv" started row t base_rss base_fd
    : >"$tsv"
    started=$(date +%s)
    echo
    echo "== $SOAK_IDLE_CONNS idle TLS connections =="
    print_header
    row="$(sample 0)"
    echo "$row" >>"$tsv"
    print_row "$row"
    base_rss="$(cut -f2 <<<"$row")"
    base_fd="$(cut -f4 <<<"$row")"
    python3 "$WORK/idle.py" "$SOAK_IDLE_CONNS" "$PROXY_PORT" "$WORK/ca.pem" "$SOAK_IDLE_SECONDS" "$IDP_TOKEN" \
        >"$OUT/idle-client.log" 2>&1 &
    local client=$!
    PIDS+=("$client")
    local i peak_rss="$base_rss" peak_fd="$base_fd" rss fd
    for i in $(seq 1 $(((SOAK_IDLE_SECONDS + 130) / 2))); do
        nap 2
        t=$(($(date +%s) - started))
        row="$(sample "$t")"
        echo "$row" >>"$tsv"
        print_row "$row"
        rss="$(cut -f2 <<<"$row")"
        fd="$(cut -f4 <<<"$row")"
        awk "BEGIN{exit !($rss > $peak_rss)}" && peak_rss="$rss"
        ((fd > peak_fd)) && peak_fd="$fd"
        kill -0 "$client" 2>/dev/null || break
    done
    wait "$client" 2>/dev/null || true
    # Closed by the client: the proxy's fds come back down.
    local after_fd
    for i in $(seq 1 20); do
        sleep 0.5
        after_fd="$(fd_count "$PROXY_PID")"
        ((after_fd <= base_fd + 16)) && break
    done
    row="$(sample $(($(date +%s) - started)))"
    echo "$row" >>"$tsv"
    print_row "$row"
    local opened closed growth
    opened="$(awk '/^open/ { print $2 }' "$OUT/idle-client.log")"
    closed="$(awk '/^closed-by-server/ { print $2 }' "$OUT/idle-client.log")"
    growth="$(awk "BEGIN{printf \"%.1f\", $peak_rss - $base_rss}")"
    echo "client: ${opened:-0} connections opened, ${closed:-?} closed by the server during the hold"
    echo "RSS $base_rss -> peak $peak_rss MiB (growth $growth MiB, $(awk "BEGIN{ if (${opened:-0} > 0) printf \"%.1f\", 1024 * $growth / ${opened:-1}; else print 0 }") KiB per connection); fds $base_fd -> peak $peak_fd -> $after_fd after close"
    if [[ "${opened:-0}" -eq "$SOAK_IDLE_CONNS" && "${closed:-1}" -eq 0 ]] &&
        awk "BEGIN{exit !($growth <= $SOAK_MAX_IDLE_MB)}" && ((after_fd <= base_fd + 16)); then
        verdict PASS idle "$SOAK_IDLE_CONNS connections: RSS +$growth MiB (limit $SOAK_MAX_IDLE_MB), fds back to $after_fd (from $base_fd)"
    else
        verdict FAIL idle "opened ${opened:-0}/$SOAK_IDLE_CONNS, closed early ${closed:-?}, RSS +$growth MiB (limit $SOAK_MAX_IDLE_MB), fds $after_fd after close (from $base_fd); see $OUT"
    fi
    stop_servers
}

# ------------------------------------------------------------------------------------------ body

run_body() {
    log "body: $SOAK_BODY_ROUNDS rounds of a $SOAK_BODY_MB MB User up and down"
    start_servers "max_body = \"$((SOAK_BODY_MB + 8))MiB\"" body
    local tsv="$OUT/body.tsv" started row base_rss base_hwm r code uid out
    : >"$tsv"
    started=$(date +%s)
    echo
    echo "== $SOAK_BODY_MB MB bodies, $SOAK_BODY_ROUNDS rounds =="
    print_header
    row="$(sample 0)"
    echo "$row" >>"$tsv"
    print_row "$row"
    base_rss="$(cut -f2 <<<"$row")"
    base_hwm="$(cut -f3 <<<"$row")"
    local bad=0 transfers=0
    for r in $(seq 1 "$SOAK_BODY_ROUNDS"); do
        python3 -c "
import json, sys
sys.stdout.write(json.dumps({'schemas': ['urn:ietf:params:scim:schemas:core:2.0:User'],
    'userName': 'big-$r@soak.example', 'data': 'x' * ($SOAK_BODY_MB * 1000 * 1000)}))" >"$WORK/big.json"
        out="$("${CURL[@]}" --max-time 120 -H 'Content-Type: application/scim+json' --data-binary @"$WORK/big.json" \
            -o /dev/null -D "$WORK/created.head" -w '%{http_code} %{size_upload} %{size_download}' \
            "$BASE/SCIM/v2/Users" 2>&1)" || true
        # The id from Location (in the body it comes after the big attribute).
        uid="$(tr -d '\r' <"$WORK/created.head" 2>/dev/null | sed -n 's|^[Ll]ocation: .*/Users/\([0-9a-f-]\{36\}\)$|\1|p' | head -1)"
        echo "round $r: POST $out" >>"$OUT/body.log"
        transfers=$((transfers + 1))
        [[ "$out" == 201\ * && -n "$uid" ]] || bad=$((bad + 1))
        row="$(sample $(($(date +%s) - started)))"
        echo "$row" >>"$tsv"
        print_row "$row"
        if [[ -n "$uid" ]]; then
            out="$("${CURL[@]}" --max-time 120 -o /dev/null -w '%{http_code} %{size_download}' "$BASE/SCIM/v2/Users/$uid" 2>&1)" || true
            echo "round $r: GET $out" >>"$OUT/body.log"
            transfers=$((transfers + 1))
            [[ "$out" == 200\ * ]] || bad=$((bad + 1))
            code="$("${CURL[@]}" -o /dev/null -w '%{http_code}' -X DELETE "$BASE/SCIM/v2/Users/$uid" 2>&1)" || true
            [[ "$code" == 204 ]] || bad=$((bad + 1))
        fi
        row="$(sample $(($(date +%s) - started)))"
        echo "$row" >>"$tsv"
        print_row "$row"
    done
    rm -f "$WORK/big.json" "$WORK/created.head"
    local peak growth
    peak="$(cut -f3 "$tsv" | sort -n | tail -1)"
    growth="$(awk "BEGIN{printf \"%.1f\", $peak - $base_rss}")"
    echo "$transfers transfers of $SOAK_BODY_MB MB, $bad failed; peak RSS (VmHWM) $peak MiB vs $base_rss MiB before (growth $growth MiB for $SOAK_BODY_MB MB bodies)"
    if ((bad == 0)) && awk "BEGIN{exit !($growth <= $SOAK_MAX_BODY_MB)}"; then
        verdict PASS body "$SOAK_BODY_MB MB up and down: peak RSS +$growth MiB (limit $SOAK_MAX_BODY_MB)"
    else
        verdict FAIL body "failed transfers $bad, peak RSS +$growth MiB (limit $SOAK_MAX_BODY_MB); see $OUT"
    fi
    stop_servers
}

# ------------------------------------------------------------------------------------------ main

log "results in $OUT"
case "$MODE" in
    steady) run_steady ;;
    idle) run_idle ;;
    body) run_body ;;
    all)
        run_steady
        run_idle
        run_body
        ;;
esac
log "done"
exit "$FAILED"
