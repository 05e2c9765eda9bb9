#!/usr/bin/env bash
# The concurrency hold-out measured and published in the scratch clone (results/ of main untouched).
set -euo pipefail
cd /tmp/concholdout/repo
git branch -f main holdout
git rev-parse HEAD~3 HEAD~2 HEAD~1 HEAD > hashes.txt
/work/main/.venv/bin/asv run --machine tristore-2core --show-stderr \
    --bench 'coordinated\.CoordinatedWrites\.track_concurrency_ratio' HASHFILE:hashes.txt
/work/main/.venv/bin/python -m tristore_bench.asv_publish publish --html-dir /tmp/concholdout/html
/work/main/.venv/bin/tristore-bench regressions --html-dir /tmp/concholdout/html --since HEAD~3 || true
