#!/usr/bin/env bash
# The docs' checks (CI runs this; a few seconds once `acktr` is built):
# 0. the firmware blocks: every `<!-- firmware: bench/firmware/NAME.txt -->` … `<!-- /firmware -->`
#    region of README.md and docs/*.md is what the file makes (below); `--write` rewrites them;
# 1. the generated pages are what their commands make from the committed data;
# 2. page budgets: README.md at most 150 lines, every page of docs/ at most 300;
# 3. every relative link of README.md, CHANGELOG.md and docs/*.md names a file that exists
#    (and, for `page.md#anchor`, a heading of that page).
#
# Firmware regions (the files are the programs' output: bash scripts/firmware-logs.sh):
#   <!-- firmware: FILE -->                    (FILE from the repository's root, e.g.
#                                              bench/firmware/pendulum-m4f.txt)
#                                              the file without its header line, in a text
#   <!-- firmware: FILE from "A" -->           fence, under a caption made from the header
#   <!-- firmware: FILE from "A" to "B" -->    (command, rustc, QEMU, date); from the first
#   …                                          line starting with A (to the next starting with
#   <!-- /firmware -->                         B), both included
#   <!-- firmware: FILE /REGEX/ -->X<!-- /firmware -->    inline, on one line: X is REGEX's
#                                              first group (or match) in the file
# Usage: bash scripts/check-docs.sh [--write]   (--write rewrites the firmware regions first;
# everything else is only checked)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
write=0
case "${1:-}" in
  "") ;;
  --write) write=1 ;;
  *)
    echo "usage: bash scripts/check-docs.sh [--write]" >&2
    exit 2
    ;;
esac
acktr=${ACKTR:-$root/target/release/acktr}
[ -x "$acktr" ] || cargo build --release -p acktr-host --bin acktr
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# 0. Firmware regions.
python3 - "$write" README.md docs/*.md <<'PY' || fail=1
import difflib, os, re, sys

write = sys.argv[1] == "1"
BLOCK = re.compile(
    r'^<!-- firmware: (\S+)(?: from "([^"]*)"(?: to "([^"]*)")?)? -->\n(.*?)^<!-- /firmware -->$',
    re.S | re.M)
INLINE = re.compile(r'<!-- firmware: (\S+) /((?:[^/\\\n]|\\.)+)/ -->([^\n]*?)<!-- /firmware -->')


class Bad(Exception):
    pass


def load(rel):
    path = rel
    if not os.path.isfile(path):
        raise Bad(f"{rel}: no such file")
    lines = open(path, encoding="utf-8").read().splitlines()
    if not lines or not lines[0].startswith("# rustc ") or ": " not in lines[0]:
        raise Bad(f"{rel}: no header line (# rustc …: command)")
    return lines[0][2:], lines[1:]


def block(page, m):
    rel, start, end = m.group(1), m.group(2), m.group(3)
    header, lines = load(rel)
    if start is not None:
        i = next((k for k, l in enumerate(lines) if l.startswith(start)), None)
        if i is None:
            raise Bad(f'{rel}: no line starts with "{start}"')
        j = len(lines) - 1
        if end is not None:
            j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith(end)), None)
            if j is None:
                raise Bad(f'{rel}: no line after "{start}" starts with "{end}"')
        lines = lines[i : j + 1]
    meta, command = header.split(": ", 1)
    name, link = os.path.basename(rel), os.path.relpath(rel, os.path.dirname(page) or ".")
    caption = f"[`{name}`]({link}){' (excerpt)' if start is not None else ''}: `{command}`; {meta}:"
    body = "\n".join([caption, "```text", *lines, "```"]) + "\n"
    return m.group(0)[: m.start(4) - m.start(0)] + body + "<!-- /firmware -->"


def inline(page, m):
    rel, regex = m.group(1), m.group(2)
    _, lines = load(rel)
    found = re.search(regex, "\n".join(lines), re.M)
    if not found:
        raise Bad(f"{rel}: /{regex}/ matches nothing")
    value = found.group(1) if found.re.groups else found.group(0)
    return f"<!-- firmware: {rel} /{regex}/ -->{value}<!-- /firmware -->"


bad = 0
for page in sys.argv[2:]:
    text = open(page, encoding="utf-8").read()
    try:
        new = BLOCK.sub(lambda m: block(page, m), text)
        new = INLINE.sub(lambda m: inline(page, m), new)
    except Bad as e:
        print(f"check-docs: {page}: {e}", file=sys.stderr)
        bad = 1
        continue
    if new == text:
        continue
    if write:
        open(page, "w", encoding="utf-8").write(new)
        print(f"check-docs: {page}: firmware regions rewritten")
    else:
        print(f"check-docs: {page}: firmware regions differ from bench/firmware/ "
              "(bash scripts/check-docs.sh --write):", file=sys.stderr)
        diff = difflib.unified_diff(text.splitlines(), new.splitlines(), page, "from the files",
                                    lineterm="", n=1)
        print("\n".join(list(diff)[:30]), file=sys.stderr)
        bad = 1
sys.exit(bad)
PY

# 1. Regenerate in a scratch folder with the same relative paths (the pages name their command).
ln -s "$root/bench" "$tmp/bench"
mkdir -p "$tmp/docs"
(
  cd "$tmp"
  "$acktr" benchmark report bench/classic.csv bench/mujoco.csv bench/minatar.csv --notes bench/results-notes.md --out docs/results.md \
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
