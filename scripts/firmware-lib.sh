# Functions for the firmware programs' logs (bench/firmware/*.txt), sourced by
# scripts/firmware-logs.sh and by .ci/run's firmware section, so both build and compare alike.
#
#   firmware_env            remap the checkout's and cargo's paths in the firmware builds
#   firmware_sizes ELF      the ELF's allocated sections, flash and static RAM (as llvm-size -A)
#   firmware_compare NAME OUTPUT
#                           OUTPUT (what a program printed, no header) against
#                           bench/firmware/NAME.txt without its header line; strict only when
#                           this rustc is the one the header names (else a note, and success)

FIRMWARE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

# Panic messages name their source files, so flash (.rodata) would change with the length of the
# checkout's path and of $CARGO_HOME. Remapping both to fixed names makes the firmware's flash
# figure the same on every machine. Cargo joins these variables to the rustflags of
# .cargo/config.toml (they do not replace them); the last matching prefix wins, so $CARGO_HOME
# inside the checkout still becomes /cargo.
firmware_env() {
  local home=${CARGO_HOME:-${HOME:-}/.cargo} flags
  [ -d "$home" ] && home=$(cd "$home" && pwd -P)
  flags="--remap-path-prefix=$FIRMWARE_ROOT=/acktr --remap-path-prefix=$home=/cargo"
  export CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUSTFLAGS="${CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUSTFLAGS:+$CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUSTFLAGS }$flags"
  export CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS="${CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS:+$CARGO_TARGET_THUMBV8M_MAIN_NONE_EABIHF_RUSTFLAGS }$flags"
}

# Flash: the allocated sections with contents (vector table, .text, .rodata, .data's initial
# values); static RAM: the writable ones (.data, .bss, .uninit). No LLVM tools needed.
firmware_sizes() {
  python3 - "$1" <<'PY'
import struct, sys

path = sys.argv[1]
d = open(path, "rb").read()
assert d[:4] == b"\x7fELF" and d[4] == 1 and d[5] == 1, f"{path}: not a 32-bit little-endian ELF"
shoff = struct.unpack_from("<I", d, 0x20)[0]
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x2E)
secs = [struct.unpack_from("<IIIIII", d, shoff + i * shentsize) for i in range(shnum)]
strtab = secs[shstrndx][4]

def name(off):
    return d[strtab + off : d.index(b"\0", strtab + off)].decode()

SHF_WRITE, SHF_ALLOC, SHT_NOBITS = 0x1, 0x2, 8
flash = ram = 0
print(f"sections of {path}, bytes (as llvm-size -A; empty ones left out)")
for sh_name, sh_type, sh_flags, _addr, _off, size in secs:
    if not sh_flags & SHF_ALLOC or size == 0:
        continue
    print(f"{name(sh_name):<16}{size:>8}")
    if sh_type != SHT_NOBITS:
        flash += size
    if sh_flags & SHF_WRITE:
        ram += size
print(f"flash {flash} (vector table, .text, .rodata, .data's initial values)")
print(f"static RAM {ram} (.data, .bss, .uninit)")
PY
}

# Whether two outputs are the same but for code-layout figures. cargo hashes a path
# dependency's absolute path into its -C metadata (no remapping reaches it), and rustc's
# codegen follows those hashes in places (the order of items, hence some inlining and register
# choices), so another checkout's build can differ by a few bytes of .text and, where a hot
# function compiles differently, by a few instructions per update: CI's clone measured an
# ACKTR update of the Breakout program 704 instructions (0.016%) cheaper than /work/main's, and
# another clone its stack high-water mark 104 bytes (0.15%) deeper, which moved the headroom
# and the flash line's percentage with it. So a number of 1000 or more may differ by 256 or by
# 0.5% of itself, whichever is larger; on a line where such a number moved, its other numbers
# may move too (integers as much, one-decimal percentages by 0.2). Every other number (returns,
# ratios, seeds) and all text must be equal.
firmware_same() {
  python3 - "$1" "$2" <<'PY'
import re, sys
a, b = (open(p).read().splitlines() for p in sys.argv[1:3])
num = re.compile(r"\d+(?:\.\d+)?")
def big(p, q):
    # Code-layout figures (flash, instruction counts, stack): integers of 1000 or more.
    return "." not in p + q and min(int(p), int(q)) >= 1000
def near(p, q, layout):
    if p == q:
        return True
    if "." in p or "." in q:
        # A percentage derived from the line's layout figures: its last digit may follow them.
        return layout and abs(float(p) - float(q)) <= 0.2
    x, y = int(p), int(q)
    return (layout or min(x, y) >= 1000) and abs(x - y) <= max(256, max(x, y) // 200)
def close(x, y):
    nx, ny = num.findall(x), num.findall(y)
    if num.sub("#", x) != num.sub("#", y):
        return False
    # A line whose layout figures moved may move its other numbers with them (headroom, shares).
    layout = any(p != q and big(p, q) for p, q in zip(nx, ny))
    return all(near(p, q, layout) for p, q in zip(nx, ny))
ok = len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
if ok and a != b:
    print("firmware-logs: code-layout figures (flash, instructions, stack) within max(256, 0.5%)"
          " of the committed ones (checkout-dependent symbol hashes)")
sys.exit(0 if ok else 1)
PY
}

firmware_compare() {
  local name=$1 output=$2 committed="$FIRMWARE_ROOT/bench/firmware/$1.txt" have want
  if [ ! -f "$committed" ]; then
    echo "firmware-logs: bench/firmware/$name.txt is missing: run bash scripts/firmware-logs.sh" >&2
    return 1
  fi
  have=$(cd "$FIRMWARE_ROOT/firmware-demo" && rustc --version)
  want=$(sed -n '1s/^# \(rustc [^)]*)\).*/\1/p' "$committed")
  if [ "$have" != "$want" ]; then
    echo "firmware-logs: $name: not compared: bench/firmware/$name.txt is from $want, this is" \
      "$have (instruction counts move with the compiler)"
    return 0
  fi
  if ! firmware_same <(tail -n +2 "$committed") "$output" &&
    ! diff -u --label "bench/firmware/$name.txt" --label "$name, this run" \
      <(tail -n +2 "$committed") "$output" >&2; then
    echo "firmware-logs: $name: the output differs from bench/firmware/$name.txt (above); if" \
      "that is intended, run bash scripts/firmware-logs.sh and bash scripts/check-docs.sh --write" >&2
    return 1
  fi
  echo "firmware-logs: $name: the same as bench/firmware/$name.txt"
}
