#!/usr/bin/env bash
# The steps of a pull-request review, the same in CI (.github/workflows/review.yml) and locally:
#   1. fetch the base revision's results from the DVC remote: the outputs holding its metrics and plots,
#      metrics/<task>/{train,eval}, predictions.parquet included (the review reads another revision's
#      outputs from the DVC cache, and pairs the two revisions' test events);
#   2. get the pull request's results: `dvc pull`, or `dvc repro` here when they are not all in the
#      remote or are out of date with the PR's code and params;
#   3. `make review BASE=<base>`: review/report.md (the tasks whose results changed) and review/plots/*.png;
#   4. post review/report.md as one PR comment (CML), which later pushes update in place.
#
#   scripts/pr_review.sh [BASE]     BASE: git revision, default origin/$GITHUB_BASE_REF (or origin/main)
#
# Environment:
#   E2E_REVIEW_POST=0        never post (posting also needs GitHub Actions and REPO_TOKEN or GITHUB_TOKEN)
#   DVC_REMOTE_URL           use this DVC remote instead of .dvc/config's (added to .dvc/config.local as `ci`);
#   DVC_REMOTE_ENDPOINT_URL  its S3 endpoint for non-AWS storage; AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as usual
set -euo pipefail

WATERMARK="e2e pipeline review"  # marks our comment, so that later runs update it instead of adding one

die() { echo "error: $*" >&2; exit 1; }

resolve_base() {  # the commit to compare with: where the PR branched off the base branch
  local ref=$1 tip fork
  tip=$(git rev-parse --verify --quiet "$ref^{commit}") || die "unknown base ref: $ref"
  fork=$(git merge-base HEAD "$tip") || die "HEAD and $ref have no common history (a shallow clone? fetch-depth: 0)"
  if [[ $fork == "$tip" ]]; then
    echo "$ref"  # keep the readable name for the report's columns
  else  # the base branch moved on since the PR branched: compare with the fork point, not with newer base commits
    echo "note: $ref moved on since this branch left it; comparing with the fork point ${fork:0:12}" >&2
    echo "${fork:0:12}"
  fi
}

configure_remote() {  # CI's remote comes from secrets, not from .dvc/config
  [[ -n ${DVC_REMOTE_URL:-} ]] || return 0
  dvc remote add --local --force --default ci "$DVC_REMOTE_URL"
  [[ -z ${DVC_REMOTE_ENDPOINT_URL:-} ]] || dvc remote modify --local ci endpointurl "$DVC_REMOTE_ENDPOINT_URL"
}

fetch_base() {  # no CLI command fetches one other revision (`dvc fetch` has no --rev): the Python API does
  echo "== fetching the metrics and plots of $1 from the DVC remote"
  python - "$1" <<'PY'
import sys
from dvc.repo import Repo
from dvc_data.index.index import DataIndexError

def errors(node, where=()):
    """Every (place, message) that DVC's loaders reported in a show() result."""
    if isinstance(node, dict):
        if isinstance(node.get("error"), (str, BaseException)):
            yield "/".join(where), str(node["error"])
        for key, value in node.items():  # name files, not the "data"/"sources" levels of the result
            yield from errors(value, where if key in ("data", "sources", "definitions") else (*where, str(key)))

rev = sys.argv[1]

def missing(why):
    sys.exit(f"error: the results of {rev} are not in the DVC remote ({why}); push them from {rev} "
             "(`dvc push`) or set DVC_REMOTE_URL")

with Repo() as repo:
    # the outputs holding metrics and plots only (whole: eval's predictions.parquet comes too); the base's
    # data and models are not needed to compare results. They are named here, inside the switch to rev:
    # `fetch(types=...)` of DVC 3.67 picks them lazily, after it has switched back to the workspace, and
    # fails on an output of this branch that is not in the remote yet
    outs = set()
    try:
        for _ in repo.brancher(revs=[rev], workspace=False):
            outs |= {out.def_path for out in repo.index.targets_view(None, types=["metrics", "plots"]).outs}
    except DataIndexError as exc:  # listing a plots folder needs its output's directory object
        missing(exc)
    repo.fetch(targets=sorted(outs), revs=[rev], workspace=False)
    # a missing file is only a warning to fetch, so check that the base's results load now
    found = [*errors(repo.metrics.show(revs=[rev]).get(rev, {})), *errors(repo.plots.show(revs=[rev]).get(rev, {}))]
if found:
    where, message = found[0]
    missing(f"{len(found)} unreadable, first {where}: {message}")
PY
}

pr_results() {
  echo "== getting this revision's results"
  if dvc pull && dvc status -q; then
    HOW="pulled from the DVC remote"
  else  # not pushed, partly pushed, or dvc.lock out of date with the code and params: compute them here
    echo "== the results are not all in the DVC remote or are out of date: dvc repro"
    dvc repro
    HOW="reproduced by the review run (not found up to date in the DVC remote)"
  fi
}

post() {
  local why=""
  if [[ ${E2E_REVIEW_POST:-1} == 0 ]]; then why="E2E_REVIEW_POST=0"
  elif [[ ${GITHUB_ACTIONS:-} != true ]]; then why="not in GitHub Actions"
  elif [[ -z ${REPO_TOKEN:-${GITHUB_TOKEN:-}} ]]; then why="no REPO_TOKEN or GITHUB_TOKEN"
  fi
  if [[ -n $why ]]; then echo "not posting the report ($why): review/report.md"; return; fi
  command -v cml >/dev/null || die "cml is not installed (the workflow's iterative/setup-cml step)"
  # --publish uploads the PNGs the report links (review/plots/, relative to the report) so they show
  # in the comment; update: edit the comment carrying our watermark, or create it on the first run
  cml comment update --target=pr --publish --watermark-title="$WATERMARK" review/report.md
}

main() {
  (($# <= 1)) || die "usage: scripts/pr_review.sh [BASE]"
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # the project's venv first, as `make` does: stage commands call `python`, and dvc lives there
  [[ ! -x .venv/bin/python ]] || export PATH="$PWD/.venv/bin:$PATH"
  local base
  base=$(resolve_base "${1:-origin/${GITHUB_BASE_REF:-main}}")
  configure_remote
  fetch_base "$base"
  pr_results
  echo "== make review BASE=$base"
  make review BASE="$base"
  printf '\n_Results of this revision: %s._\n' "$HOW" >> review/report.md
  post
}

main "$@"
