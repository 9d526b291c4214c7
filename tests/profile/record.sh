#!/bin/bash
# Profiles a release confab-node under one confab-bench workload and writes a flamegraph.
#
#   tests/profile/record.sh OUT_PREFIX WORKLOAD [confab-bench arguments...]
#
# Starts the node from $CONFAB_NODE (default target/release/confab-node) on 127.0.0.1:0
# with the bench's raised per-session rate limits, samples it with `perf record` (software
# clock at 499 Hz, DWARF call graphs: the release profile keeps line tables) for
# $PERF_SECS seconds (default 15) starting $PERF_DELAY seconds (default 5) into the run,
# and writes OUT_PREFIX.folded (collapsed stacks, `inferno-collapse-perf`) and OUT_PREFIX.svg
# (`inferno-flamegraph`). The bench's figures go to OUT_PREFIX.figures. The .folded files
# are large and not committed (.gitignore).
# Needs: perf (Debian's linux-perf), inferno (`cargo install inferno`).
set -euo pipefail
out=$1; workload=$2; shift 2
here=$(cd "$(dirname "$0")/../.." && pwd)
node=${CONFAB_NODE:-$here/target/release/confab-node}
bench=${CONFAB_BENCH:-$(dirname "$node")/confab-bench}
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/config.toml" <<TOML
[limits]
websocket_frames_per_s = 1000000
websocket_frames_burst = 1000000
requests_per_s_per_user = 1000000
requests_burst_per_user = 1000000
TOML
"$node" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --org-name profile \
    --config "$dir/config.toml" > "$dir/out.log" 2> "$dir/err.log" &
pid=$!
url=
for _ in $(seq 100); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$dir/out.log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "the node did not start: $(cat "$dir/err.log")" >&2; exit 1; }
( sleep "${PERF_DELAY:-5}"
  perf record -F 499 -g --call-graph dwarf,16384 -p "$pid" -o "$dir/perf.data" \
      -- sleep "${PERF_SECS:-15}" 2> /dev/null ) &
perf_job=$!
"$bench" --url "$url" --pid "$pid" --workload "$workload" "$@" > "$out.figures"
wait "$perf_job"
# Symbol hashes dropped, frames narrower than a pixel left out: a flamegraph of ~200 KB.
perf script -i "$dir/perf.data" 2> /dev/null | inferno-collapse-perf \
    | sed -E 's/::h[0-9a-f]{16}//g' > "$out.folded"
inferno-flamegraph --minwidth 1 --title "confab-node, confab-bench --workload $workload $*" \
    < "$out.folded" > "$out.svg"
kill -TERM "$pid"; wait "$pid" || true
echo "wrote $out.svg, $out.folded and $out.figures" >&2
