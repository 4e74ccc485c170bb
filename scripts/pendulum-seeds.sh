#!/usr/bin/env bash
# Pendulum-v1 learned with the microcontroller's network and batch, seeds 0-9: on the host
# (`acktr train --preset mcu`) and on the Cortex-M4F under QEMU (firmware-demo's `pendulum`
# binary, one build per seed). Prints two Markdown tables; save them as data with
#   bash scripts/pendulum-seeds.sh > /tmp/seeds.md
#   target/release/acktr bench --import /tmp/seeds.md --command "bash scripts/pendulum-seeds.sh" \
#     --json bench/performance.json
# A run's return is the final deterministic evaluation's mean over 100 episodes. About 10 min
# (QEMU dominates); needs qemu-system-arm and the thumbv7em-none-eabihf target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
acktr=${ACKTR:-$root/target/release/acktr}
[ -x "$acktr" ] || cargo build --release -p acktr-host --bin acktr >&2
seeds=${SEEDS:-0 1 2 3 4 5 6 7 8 9}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One table: a header row of seeds, a row of returns, then the count at or above -200 and the mean.
table() { # title, label, returns...
  local title=$1 label=$2
  shift 2
  printf '## %s\n\n| seed |' "$title"
  for s in $seeds; do printf ' %s |' "$s"; done
  printf ' ≥ −200 | mean |\n|---|'
  for _ in $seeds; do printf -- '---|'; done
  printf -- '---|---|\n| %s |' "$label"
  for r in "$@"; do printf ' %s |' "${r/-/−}"; done
  python3 -c 'import sys; r=[float(x) for x in sys.argv[1:]]; print(" %d/%d | %s |" % (sum(x >= -200 for x in r), len(r), ("%.2f" % (sum(r)/len(r))).replace("-", "−")))' "$@"
  printf '\n'
}

host=()
for s in $seeds; do
  "$acktr" train --env Pendulum-v1 --preset mcu --seed "$s" --eval-episodes 100 \
    --out "$tmp/host-$s" >"$tmp/host-$s.log" 2>&1
  r=$(sed -n 's/.*deterministic eval (100 episodes) \(-\{0,1\}[0-9.]*\).*/\1/p' "$tmp/host-$s.log" | tail -1)
  [ -n "$r" ] || { echo "pendulum-seeds: no evaluation in the host run of seed $s" >&2; cat "$tmp/host-$s.log" >&2; exit 1; }
  host+=("$r")
done

device=()
for s in $seeds; do
  # The program's exit code is its verdict (1 below -200): the return is what is recorded here.
  (cd firmware-demo && PENDULUM_SEED=$s cargo run --release --bin pendulum) >"$tmp/dev-$s.log" 2>&1 || true
  r=$(sed -n 's/^evaluation: mean return of 100 deterministic episodes after [0-9]* device env steps: \(-\{0,1\}[0-9.]*\)$/\1/p' "$tmp/dev-$s.log")
  [ -n "$r" ] || { echo "pendulum-seeds: no evaluation in the device run of seed $s" >&2; tail -20 "$tmp/dev-$s.log" >&2; exit 1; }
  device+=("$r")
done

table "Pendulum-v1 with the microcontroller's net on the host: acktr train --env Pendulum-v1 --preset mcu --seed S --eval-episodes 100" \
  "return (100 deterministic episodes)" "${host[@]}"
table "Pendulum-v1 learned on the Cortex-M4F under QEMU: cd firmware-demo && PENDULUM_SEED=S cargo run --release --bin pendulum" \
  "return (100 deterministic episodes)" "${device[@]}"
