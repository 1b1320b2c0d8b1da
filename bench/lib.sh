# Sourced by the bench/ scripts that measure a peer (nginx, HAProxy): a figure counts only
# when both servers answered what was asked. A peer that answers 403 to every request (an
# nginx worker, running as nobody, cannot read a 0700 `mktemp -d` folder) is fast at it,
# and its figure would be compared against webstack's real work.

# bench_workdir → a fresh work folder that a server running as nobody can read.
bench_workdir() {
  local dir
  dir=$(mktemp -d)
  chmod 755 "$dir"
  echo "$dir"
}

# require_ok NAME URL BYTES [curl options...]: NAME must answer URL with 200 and a body of
# BYTES bytes, or the benchmark stops here.
require_ok() {
  local name=$1 url=$2 bytes=$3 got
  shift 3
  got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$@" "$url" || true)
  if [ "$got" != "200 $bytes" ]; then
    echo "bench: $name answered $url with '$got' (status, bytes), not '200 $bytes'; no figure from it would be comparable" >&2
    exit 1
  fi
}

# wrk_ok NAME OUTPUT: stops the benchmark when wrk counted an answer other than 2xx/3xx.
wrk_ok() {
  if echo "$2" | grep -q "Non-2xx or 3xx responses"; then
    echo "bench: $1 answered with errors under load:" >&2
    echo "$2" >&2
    exit 1
  fi
}

# median_rows ROWS: ROWS are lines of space-separated fields (the first a name); prints
# one line with the name and, field by field, the median over the lines. Figures on a
# shared machine vary from run to run; alternated rounds and their medians compare the
# two servers under the same conditions.
median_rows() {
  python3 -c '
import re, statistics, sys
rows = [l.split() for l in sys.stdin.read().strip().splitlines()]
def num(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)?", v)
    n = float(m.group(1)); u = m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
out = [rows[0][0]]
for i in range(1, len(rows[0])):
    out.append(f"{statistics.median(num(r[i]) for r in rows):.3f}")
print(" ".join(out))' <<<"$1"
}

# ctx_switches PID → voluntary and involuntary context switches of all its threads so far.
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null \
    | awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}'
}

# syscalls_per_request PID URL: a 2 s wrk run on core 0 under `perf stat` (its syscall
# tracepoint slows the server, so it is a run of its own) → syscalls per request.
syscalls_per_request() {
  local out=$WORK/perf.$RANDOM perf_pid counted sys
  perf stat -e raw_syscalls:sys_enter -p "$1" -o "$out" -- sleep 2 >/dev/null 2>&1 &
  perf_pid=$!
  counted=$(taskset -c 0 wrk -t1 -c64 -d2s -H "Host: www.foobar.com" "$2" | awk '/requests in/ {print $1}')
  wait "$perf_pid" 2>/dev/null || true
  sys=$(awk '/raw_syscalls:sys_enter/ {gsub(",","",$1); print $1}' "$out" 2>/dev/null || true)
  python3 -c "import sys; print(f'{int(sys.argv[1] or 0) / max(int(sys.argv[2] or 0), 1):.2f}')" "${sys:-0}" "${counted:-0}"
}
