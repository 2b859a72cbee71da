#!/usr/bin/env bash
# Install bert_jax[tpu] into a virtual environment on every TPU worker.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

usage() {
  cat <<'USAGE'
Usage: TPU_NAME=NAME ZONE=ZONE [settings] launch/tpu/setup_workers.sh
   or: QUEUED_RESOURCE=ID ZONE=ZONE [settings] launch/tpu/setup_workers.sh

On every worker (all slices of a queued resource): puts the source in
SRC_DIR, creates the virtual environment VENV and runs `pip install '.[tpu]'`
there. Run it again after changing the code; it replaces SRC_DIR.
Settings (environment variables):
  TPU_NAME | QUEUED_RESOURCE   the machines (one of them, required)
  ZONE, PROJECT     as for create_tpu.sh (ZONE required)
  GIT_URL           clone this repository (and check out GIT_REF, default
                    main); otherwise an sdist is copied to the workers:
  SDIST             sdist (.tar.gz) to copy (default: built from the checkout
                    this script is in with `python3 setup.py sdist`)
  SRC_DIR           source directory on the workers (default ~/bert_jax)
  VENV              virtual environment on the workers (default ~/bert_jax_venv)
  PYTHON            interpreter for the venv (default: python3 if >= 3.11,
                    else python3.11, installed with apt if missing)
  EXTRAS            pip extras (default tpu)
  SSH_FLAGS         extra gcloud ssh/scp flags, e.g. --internal-ip
  DRY_RUN=1         print the gcloud commands instead of running them
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
(($# == 0)) || die "unexpected arguments: $* (settings are environment variables)."
need_target
need ZONE
GIT_URL=${GIT_URL:-}
GIT_REF=${GIT_REF:-main}
PYTHON=${PYTHON:-}
EXTRAS=${EXTRAS:-tpu}
ARCHIVE=bert_jax_sdist.tar.gz  # the sdist's name on the workers

if [[ -z $GIT_URL ]]; then
  if [[ -z ${SDIST:-} ]]; then
    repo=$(cd "$here/../.." && pwd)
    [[ -f $repo/setup.py ]] || die "no setup.py in $repo; set SDIST or GIT_URL."
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir "$tmp/egg"
    (cd "$repo" && run python3 setup.py -q egg_info --egg-base "$tmp/egg" \
      sdist --dist-dir "$tmp") ||
      die "cannot build an sdist of $repo (setuptools?); set SDIST or GIT_URL."
    version=$(cd "$repo" && python3 setup.py --version 2> /dev/null)
    SDIST=$tmp/bert_jax-$version.tar.gz
  fi
  [[ ${DRY_RUN:-0} == 1 || -f $SDIST ]] || die "SDIST=$SDIST: no such file."
  to_workers scp "$SDIST" "@:$ARCHIVE"
fi

remote=$(remote_script VENV SRC_DIR GIT_URL GIT_REF PYTHON EXTRAS ARCHIVE <<'REMOTE'
cd ~
VENV=$(realpath -m "$VENV")
SRC_DIR=$(realpath -m "$SRC_DIR")
if [[ -z $PYTHON ]]; then
  PYTHON=python3.11
  if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    PYTHON=python3
  fi
fi
if ! "$PYTHON" -c 'import ensurepip' 2> /dev/null; then
  sudo apt-get -qq update
  sudo DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
    "$PYTHON" "$PYTHON-venv" git
fi
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
rm -rf "$SRC_DIR"
if [[ -n $GIT_URL ]]; then
  git clone -q "$GIT_URL" "$SRC_DIR"
  git -C "$SRC_DIR" checkout -q "$GIT_REF"
else
  mkdir -p "$SRC_DIR"
  tar -xzf "$ARCHIVE" --strip-components=1 -C "$SRC_DIR"
fi
cd "$SRC_DIR"
"$VENV/bin/pip" install -q ".[$EXTRAS]"
"$VENV/bin/python" -c 'import jax, bert_jax; print(f"{jax.__version__=}")' |
  sed "s/^/$(hostname): /"
REMOTE
)
to_workers ssh --command="$remote"
