#!/usr/bin/env bash
# Does the README hold on a fresh machine? Clone HEAD of this repository into a temporary folder
# and run there, exactly as written, the commands of the README's first ```bash block (set-up +
# quickstart, set-up + tests), each timed. The clone builds its own .venv (torch from local disk
# takes ~90 s). Only committed work is checked: uncommitted changes are not in the clone.
#
#   scripts/fresh-check.sh [--tests-only] [--keep]
#     --tests-only  skip the quickstart command (it takes ~20 min on 2 cores)
#     --keep        keep the clone (default: removed at the end)
#
# Exit status: 0 when every command run exits 0, 1 when one fails, 2 on a usage error.
set -euo pipefail

tests_only=0 keep=0
for arg in "$@"; do
  case "$arg" in
    --tests-only) tests_only=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-check: unknown option $arg (--tests-only, --keep)" >&2; exit 2 ;;
  esac
done

repo="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
work="$(mktemp -d "${TMPDIR:-/tmp}/unmask-fresh.XXXXXX")"
clone="$work/unmask"
cleanup() {
  if [ "$keep" = 1 ]; then
    echo "fresh-check: kept $clone"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

git clone -q --no-hardlinks "$repo" "$clone"
echo "fresh-check: clone $clone at $(git -C "$clone" log -1 --format='%h %s')"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "fresh-check: note: $repo has uncommitted changes; they are not checked" >&2
fi

# The commands, read from the clone's README: the lines of its first ```bash block, without
# their trailing comments.
mapfile -t commands < <(awk '/^```bash/ {inside = 1; next} inside && /^```/ {exit}
                             inside && NF {sub(/[ \t]+#.*$/, ""); print}' "$clone/README.md")
if [ "${#commands[@]}" -eq 0 ]; then
  echo "fresh-check: no \`\`\`bash block with commands in README.md" >&2
  exit 1
fi
if ! printf '%s\n' "${commands[@]}" | grep -q "pytest"; then
  echo "fresh-check: README.md's first bash block has no test command" >&2
  exit 1
fi

# a fresh machine has no variables pointing at another install
unset UNMASK_VENV VIRTUAL_ENV PYTHONPATH

failed=0 summary=()
for cmd in "${commands[@]}"; do
  if [ "$tests_only" = 1 ] && [[ "$cmd" == *quickstart* ]]; then
    echo "fresh-check: skipped (--tests-only): $cmd"
    summary+=("skipped        $cmd")
    continue
  fi
  echo "fresh-check: running: $cmd"
  start=$(date +%s)
  set +e
  (cd "$clone" && bash -c "$cmd")
  status=$?
  set -e
  secs=$(( $(date +%s) - start ))
  wall=$(printf '%dm%02ds' $((secs / 60)) $((secs % 60)))
  echo "fresh-check: exit $status after $wall: $cmd"
  summary+=("exit $status $(printf '%9s' "$wall")  $cmd")
  [ "$status" = 0 ] || failed=1
done

echo "fresh-check: summary ($clone)"
printf '  %s\n' "${summary[@]}"
if [ "$failed" = 0 ]; then
  echo "fresh-check: PASS"
else
  echo "fresh-check: FAIL"
fi
exit "$failed"
