#!/usr/bin/env bash
# Regenerate the policy file the firmware demo embeds, firmware-demo/policy/cartpole.ackp:
# train CartPole-v1 with the host trainer's native backend (acktr-core itself, no libtorch, no
# Python) from seed 0 until a 20-episode deterministic evaluation averages 475, then write the
# policy with `acktr export`.
#
#   bash scripts/regenerate-policy.sh [DIR]      (DIR defaults to firmware-demo/policy)
#
# It also writes DIR/cartpole-16x16.ackp, a valid file of another shape (4-16-16, one update of
# training) that the `bad-policy-shape` build of the firmware embeds: the core must refuse it,
# and DIR/minatar-breakout.ackp, the conv policy the Breakout firmware (firmware-demo/breakout/)
# embeds: `--arch minatar-small` (conv 4 filters 4x4 stride 2, a shared 32-32 ReLU trunk)
# trained natively on MinAtar/Breakout-v1 for 1M env steps from seed 0, ACKTR with the paper's
# settings (the core's Config::default(), each passed explicitly) and 16 envs x 5 steps, then
# exported as a version-2 policy file (about 10-20 s).
#
# Every setting is passed explicitly on top of `--preset fast` (whose critic options are off:
# one joint trust region, as a shared trunk needs), so a later change to the CartPole preset
# does not change the file; the run is deterministic (the same bytes every time: check with `cmp`). The values
# are the CartPole preset as it was when the file was first made: 16 envs × 20 steps, a shared
# tanh 32-32 trunk, ACKTR with kl_clip 0.01 and value_coef 0.05, factor statistics from every
# sample (stat_stride 1), the rest the paper's defaults (cold_lr, the one setting the CLI does
# not take, is the core's default 0.01). The firmware is compiled for SharedActorCritic<4, 32, 2>:
# a file of another shape is refused at run time (`DeserializeShapeMismatch`).
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${1:-firmware-demo/policy}"
mkdir -p "$dir"
cargo build --release -p acktr-host --quiet
run="$(mktemp -d)"
trap 'rm -rf "$run"' EXIT

target/release/acktr train --out "$run/run" \
  --env CartPole-v1 --backend native --algo acktr --preset fast --seed 0 \
  --arch mlp --hidden 32,32 --separate false --activation tanh \
  --num-envs 16 --num-steps 20 --total-steps 200000 \
  --lr 0.25 --lr-schedule constant --kl-clip 0.01 --damping 0.01 --momentum 0.9 \
  --stat-decay 0.99 --inverse-every 10 --stat-stride 1 --cold-iters 10 \
  --ent-coef 0.01 --vf-coef 0.05 --gamma 0.99 --gae-lambda 1 --max-grad-norm 0.5 \
  --weight-decay 0 \
  --eval-episodes 20 --eval-every 3200 --stop-at 475 --checkpoint-every 0

target/release/acktr export "$run/run" -o "$dir/cartpole.ackp"

target/release/acktr train --quiet --out "$run/shape" \
  --env CartPole-v1 --backend native --algo acktr --preset fast --seed 0 \
  --arch mlp --hidden 16,16 --separate false --activation tanh \
  --num-envs 16 --num-steps 20 --total-steps 320 --checkpoint-every 0 --eval-episodes 0
target/release/acktr export "$run/shape" -o "$dir/cartpole-16x16.ackp"

target/release/acktr train --quiet --out "$run/minatar" \
  --env MinAtar/Breakout-v1 --backend native --algo acktr --seed 0 \
  --arch minatar-small --num-envs 16 --num-steps 5 --total-steps 1000000 \
  --lr 0.25 --lr-schedule constant --kl-clip 0.001 --damping 0.01 --momentum 0.9 \
  --stat-decay 0.99 --inverse-every 10 --stat-stride 1 --cold-iters 10 \
  --ent-coef 0.01 --vf-coef 0.5 --gamma 0.99 --gae-lambda 1 --max-grad-norm 0.5 \
  --weight-decay 0 --normalize-obs false --normalize-advantage false \
  --eval-episodes 20 --checkpoint-every 0
target/release/acktr export "$run/minatar" -o "$dir/minatar-breakout.ackp"
