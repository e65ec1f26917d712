#!/usr/bin/env bash
# Demo of the one-shot sync: a throwaway repository, two commits, drift repaired.
set -euo pipefail
BIN="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git init -q -b main "$tmp/repo"
cd "$tmp/repo"
mkdir -p app functions/hello
echo "print('hello')" > app/main.py
printf 'runtime = "python3.11"\nhandler = "main.handle"\n' > functions/hello/function.toml
printf 'def handle(event, context):\n    return {"hello": event}\n' > functions/hello/main.py
git add -A && git -c user.name=demo -c user.email=demo@example.invalid commit -qm first
echo "== first sync"
"$BIN/gitops-sync" sync --repo "$tmp/repo" --ref main --workspace "$tmp/ws"
echo "== drift: a file edited by hand, a stray file added"
echo "edited" > "$tmp/ws/app/main.py"; touch "$tmp/ws/stray.txt"
"$BIN/gitops-sync" sync --repo "$tmp/repo" --ref main --workspace "$tmp/ws" --json
echo "== second commit: one function file changes"
echo "# v2" >> functions/hello/main.py
git -c user.name=demo -c user.email=demo@example.invalid commit -qam second
"$BIN/gitops-sync" sync --repo "$tmp/repo" --ref main --workspace "$tmp/ws" --json
