#!/usr/bin/env bash
# The docs' checks (CI runs this; a few seconds once `acktr` is built):
# 1. the generated pages are what their commands make from the committed data;
# 2. page budgets: README.md at most 150 lines, every page of docs/ at most 300;
# 3. every relative link of README.md, CHANGELOG.md and docs/*.md names a file that exists
#    (and, for `page.md#anchor`, a heading of that page).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
acktr=${ACKTR:-$root/target/release/acktr}
[ -x "$acktr" ] || cargo build --release -p acktr-host --bin acktr
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# 1. Regenerate in a scratch folder with the same relative paths (the pages name their command).
ln -s "$root/bench" "$tmp/bench"
mkdir -p "$tmp/docs"
(
  cd "$tmp"
  "$acktr" benchmark report bench/classic.csv bench/mujoco.csv --notes bench/results-notes.md --out docs/results.md \
    --img docs/img >/dev/null
  "$acktr" benchmark report bench/hopper-300k.csv --out docs/results-hopper-300k.md \
    --img docs/img/hopper-300k >/dev/null
  "$acktr" benchmark report bench/ablations.csv --out docs/results-ablations.md \
    --img docs/img/ablations >/dev/null
  "$acktr" bench --report bench/performance.json >docs/performance-figures.md
)
for f in docs/results.md docs/results-hopper-300k.md docs/results-ablations.md \
  docs/performance-figures.md docs/img/*.png docs/img/hopper-300k/*.png docs/img/ablations/*.png; do
  if ! cmp -s "$f" "$tmp/$f"; then
    echo "check-docs: $f is not what its command makes from the data; regenerate it" >&2
    diff -u "$f" "$tmp/$f" 2>/dev/null | head -20 >&2 || true
    fail=1
  fi
done

# 2. Budgets.
if [ "$(wc -l <README.md)" -gt 150 ]; then
  echo "check-docs: README.md has $(wc -l <README.md) lines (at most 150)" >&2
  fail=1
fi
for f in docs/*.md; do
  if [ "$(wc -l <"$f")" -gt 300 ]; then
    echo "check-docs: $f has $(wc -l <"$f") lines (at most 300)" >&2
    fail=1
  fi
done

# 3. Links.
python3 - README.md CHANGELOG.md docs/*.md <<'PY' || fail=1
import os, re, sys

def slug(heading):
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")

def anchors(path):
    text = re.sub(r"```.*?```", "", open(path, encoding="utf-8").read(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}

bad = 0
for page in sys.argv[1:]:
    text = re.sub(r"```.*?```", "", open(page, encoding="utf-8").read(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(full):
            print(f"check-docs: {page}: link to {target}: no such file", file=sys.stderr)
            bad = 1
        elif anchor and full.endswith(".md") and anchor not in anchors(full):
            print(f"check-docs: {page}: link to {target}: no such heading", file=sys.stderr)
            bad = 1
sys.exit(bad)
PY

exit "$fail"
