#!/usr/bin/env bash
# The host's copy of the Breakout firmware's protocol (core/examples/breakout_finetune.rs, which
# restates the firmware's constants) must reproduce the device's runs that involve no K-FAC
# rounding: on the committed policy, the return before fine-tuning and every SGD run's final
# return, as bench/firmware/breakout-m4f.txt records them from QEMU. A constant changed on one
# side only shows here. CI runs it (about 2 s once built). DEVICE_LOG=FILE checks another log.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p acktr-core --example breakout_finetune
host=$(target/release/examples/breakout_finetune firmware-demo/policy/minatar-breakout.ackp)
device=${DEVICE_LOG:-bench/firmware/breakout-m4f.txt}
# Host: "...: before 4.35" and "  SGD   [5.25, 3.65, ...] mean ...".
host_before=$(sed -n 's/.*: before \([0-9.-]*\)$/\1/p' <<<"$host")
host_sgd=$(sed -n 's/^ *SGD *\[\([^]]*\)\].*/\1/p' <<<"$host" | tr -d ' ')
# Device: "... changed game 4.35" and "SGD   seed k:   before  half  final".
device_before=$(sed -n 's/^host policy, mean return.*changed game \([0-9.-]*\)$/\1/p' "$device")
device_sgd=$(awk '$1 == "SGD" && $2 == "seed" { print $NF }' "$device" | paste -sd, -)
if [ -z "$host_sgd" ] || [ -z "$device_sgd" ] || [ -z "$host_before" ]; then
  echo "breakout-host-check: could not read the returns (host output or $device changed form)" >&2
  exit 1
fi
if [ "$host_before" != "$device_before" ] || [ "$host_sgd" != "$device_sgd" ]; then
  echo "breakout-host-check: the example and the firmware disagree:" >&2
  echo "  before: host $host_before, device $device_before" >&2
  echo "  SGD finals: host $host_sgd, device $device_sgd" >&2
  exit 1
fi
echo "breakout-host-check: host and device agree (before $host_before; SGD finals $host_sgd)"
