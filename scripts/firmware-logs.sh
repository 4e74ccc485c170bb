#!/usr/bin/env bash
# The firmware programs' output as data: runs them under QEMU as CI does and writes what each
# prints to bench/firmware/NAME.txt, whose first line names rustc, QEMU, the date and the
# command. docs/embedded.md and docs/embedded-pendulum.md show these files verbatim
# (`bash scripts/check-docs.sh --write` copies them in; CI checks the copies).
#
#   bash scripts/firmware-logs.sh           run, write bench/firmware/*.txt
#   bash scripts/firmware-logs.sh --check   run, compare with bench/firmware/*.txt (header line
#                                           aside); fails with a diff when they differ. Strict
#                                           only with the rustc the headers name: instruction
#                                           counts move with the compiler (else a note, pass)
#
# The files, in firmware-demo/:
#   cartpole-m4f        cargo run --release                 (CartPole adaptation, Cortex-M4F)
#   pendulum-m4f        cargo run --release --bin pendulum  (Pendulum from scratch, Cortex-M4F)
#   minimal-m4f         cargo run --release --bin minimal   (prints nothing: its ELF's sections)
#   pendulum-m33        cd an505 && cargo run --release     (Pendulum on the Cortex-M33)
#   pendulum-blackpill  cd blackpill && cargo build --release (built, not run: its sections)
#   breakout-m4f        cd breakout && cargo run --release  (a conv policy fine-tuned, Cortex-M4F)
#
# Under `-icount shift=0` the programs print nothing that depends on the host or the wall clock
# (instruction counts, not time), so no line needs normalising. What would vary, flash with the
# checkout's path (panic messages name source files), is fixed by building with the paths
# remapped (firmware_env in scripts/firmware-lib.sh; CI builds the same way). A plain
# `cargo run --release` can therefore print a flash figure a few bytes off. What remapping
# cannot fix, code layout following cargo's path hashes, --check tolerates (firmware_same).
# Time on a 2-core VM: about 3.5 minutes when everything is built (mostly QEMU), about 6 from
# partly built target folders.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/firmware-lib.sh
source scripts/firmware-lib.sh

mode=write
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *)
    echo "usage: bash scripts/firmware-logs.sh [--check]" >&2
    exit 2
    ;;
esac

firmware_env
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rustc_version=$(cd firmware-demo && rustc --version)
qemu_version=$(qemu-system-arm --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
today=$(date -u +%F)
names=()

# NAME DIR TIMEOUT CARGO-ARGS…: run `cargo CARGO-ARGS` in DIR, its stdout to $tmp/NAME.txt.
run() {
  local name=$1 dir=$2 limit=$3
  shift 3
  echo "== $name: cd $dir && cargo $*" >&2
  if ! (cd "$dir" && timeout "$limit" cargo "$@") >"$tmp/$name.txt"; then
    echo "firmware-logs: $name: cd $dir && cargo $* failed; its output:" >&2
    cat "$tmp/$name.txt" >&2
    exit 1
  fi
  names+=("$name")
  printf '# %s, QEMU %s, %s: cd %s && cargo %s\n' "$rustc_version" "$qemu_version" "$today" \
    "$dir" "$*" >"$tmp/$name.header"
}

# NAME DIR ELF COMMAND: the sections of DIR/ELF as NAME, after COMMAND made it (for
# minimal-m4f, in place of its run's empty output).
sizes() {
  (cd "$2" && firmware_sizes "$3") >"$tmp/$1.txt"
  [[ " ${names[*]} " == *" $1 "* ]] || names+=("$1")
  printf '# %s, %s: cd %s && %s\n' "$rustc_version" "$today" "$2" "$4" >"$tmp/$1.header"
}

run cartpole-m4f firmware-demo 900 run --release
run pendulum-m4f firmware-demo 600 run --release --bin pendulum
run minimal-m4f firmware-demo 300 run --release --bin minimal
[ -s "$tmp/minimal-m4f.txt" ] && {
  echo "firmware-logs: --bin minimal printed something; this script expects it silent" >&2
  exit 1
}
sizes minimal-m4f firmware-demo target/thumbv7em-none-eabihf/release/minimal \
  "cargo run --release --bin minimal"
run pendulum-m33 firmware-demo/an505 600 run --release
echo "== pendulum-blackpill: cd firmware-demo/blackpill && cargo build --release" >&2
(cd firmware-demo/blackpill && cargo build --release)
sizes pendulum-blackpill firmware-demo/blackpill target/thumbv7em-none-eabihf/release/pendulum \
  "cargo build --release"
run breakout-m4f firmware-demo/breakout 600 run --release

fail=0
for name in "${names[@]}"; do
  if [ "$mode" = check ]; then
    firmware_compare "$name" "$tmp/$name.txt" || fail=1
  fi
done
if [ "$mode" = write ]; then
  mkdir -p bench/firmware
  for name in "${names[@]}"; do
    cat "$tmp/$name.header" "$tmp/$name.txt" >"bench/firmware/$name.txt"
    echo "firmware-logs: wrote bench/firmware/$name.txt"
  done
fi
exit "$fail"
