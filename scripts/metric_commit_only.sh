#!/usr/bin/env bash
# Commit given files' STAGED-ELSEWHERE-SAFE versions: each argument is PATH=FILE, meaning the
# content of FILE becomes PATH in a commit on top of HEAD, built in a private index, so that
# nothing else staged or modified in the shared checkout is touched.
# usage: scripts/metric_commit_only.sh "message" path=file [path=file ...]
set -euo pipefail
msg=$1; shift
export GIT_INDEX_FILE=$(mktemp /tmp/metric-index.XXXXXX)
old=$(git rev-parse HEAD)
git read-tree "$old"
for pf in "$@"; do
  path=${pf%%=*}; file=${pf#*=}
  blob=$(git hash-object -w "$file")
  git update-index --add --cacheinfo 100644,"$blob","$path"
done
tree=$(git write-tree)
new=$(git commit-tree "$tree" -p "$old" -m "$msg")
git update-ref refs/heads/main "$new" "$old"
rm -f "$GIT_INDEX_FILE"
unset GIT_INDEX_FILE
# keep the shared index's entries for these paths in step with the new HEAD
for pf in "$@"; do
  path=${pf%%=*}
  blob=$(git rev-parse "HEAD:$path")
  git update-index --add --cacheinfo 100644,"$blob","$path"
done
git log --oneline -1
