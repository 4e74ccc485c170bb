#!/usr/bin/env bash
# The Breakout firmware's fine-tuning settings across host policies: the committed
# firmware-demo/policy/minatar-breakout.ackp and the small conv preset's seeds 0-9
# (`acktr train --env MinAtar/Breakout-v1 --arch minatar-small --seed S`, 1M env steps, then
# `acktr export`), each fine-tuned on the changed game with the firmware's protocol and
# settings on the host (`core/examples/breakout_finetune.rs`). Writes
# bench/firmware/breakout-policies.txt (a header, then the example's output); extra arguments
# go to the example (e.g. `--kl-clip 0.001`), and then the output goes to stdout only.
# About 80 seconds on 2 vCPUs (ten 1M-step trainings, then 110 fine-tuning runs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
acktr=${ACKTR:-$root/target/release/acktr}
[ -x "$acktr" ] || cargo build --release -p acktr-host --bin acktr >&2
cargo build --release -q -p acktr-core --example breakout_finetune >&2
seeds=${SEEDS:-0 1 2 3 4 5 6 7 8 9}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

policies=("firmware-demo/policy/minatar-breakout.ackp")
for s in $seeds; do
  "$acktr" train --quiet --env MinAtar/Breakout-v1 --arch minatar-small --seed "$s" \
    --checkpoint-every 0 --out "$tmp/small-s$s" >"$tmp/small-s$s.log" 2>&1 ||
    { cat "$tmp/small-s$s.log" >&2; exit 1; }
  "$acktr" export "$tmp/small-s$s" -o "$tmp/small-s$s.ackp" >>"$tmp/small-s$s.log" 2>&1 ||
    { cat "$tmp/small-s$s.log" >&2; exit 1; }
  policies+=("$tmp/small-s$s.ackp")
done

run() {
  target/release/examples/breakout_finetune "$@" "${policies[@]}" |
    sed -e "s|^$tmp/small-s\([0-9]*\)\.ackp|small preset, seed \1|"
}

if [ $# -gt 0 ]; then
  run "$@"
  exit 0
fi
out=bench/firmware/breakout-policies.txt
{
  # The header docs/ captions the file with (scripts/check-docs.sh): "# rustc …, …: command".
  printf '# %s, %s, %s: bash scripts/breakout-policies.sh\n' \
    "$(rustc --version)" "$(date -u +%F)" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  run
} >"$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
