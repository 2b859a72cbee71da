# shellcheck shell=bash
# Helpers shared by launch/tpu/*.sh (sourced, not run). The scripts take their
# settings from environment variables; DRY_RUN=1 prints the gcloud commands
# instead of running them. Bash 3.2 (macOS) or newer.

die() { echo "error: $*" >&2; exit 1; }

# need VAR...: stop with a clear message if a required setting is empty.
need() {
  local v
  for v in "$@"; do
    [[ -n ${!v:-} ]] || die "$v is not set (see $(basename "$0") --help)."
  done
}

# run CMD...: run it, or with DRY_RUN=1 print it shell-quoted.
run() {
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    local line
    printf -v line '%q ' "$@"
    echo "${line% }"
  else
    "$@"
  fi
}

# gcloud_tpu ARGS...: `gcloud compute tpus ARGS` in $ZONE (and $PROJECT).
gcloud_tpu() {
  need ZONE
  run gcloud compute tpus "$@" --zone="$ZONE" ${PROJECT:+"--project=$PROJECT"}
}

# The machines: a TPU VM or pod slice ($TPU_NAME), or all slices of a queued
# resource ($QUEUED_RESOURCE, multislice included).
need_target() {
  [[ -n ${TPU_NAME:-} || -n ${QUEUED_RESOURCE:-} ]] ||
    die "set TPU_NAME or QUEUED_RESOURCE (see $(basename "$0") --help)."
  [[ -z ${TPU_NAME:-} || -z ${QUEUED_RESOURCE:-} ]] ||
    die "set only one of TPU_NAME and QUEUED_RESOURCE."
}

# to_workers VERB ARGS...: `VERB` (ssh or scp) on every worker of the target,
# with $SSH_FLAGS (e.g. --internal-ip) appended.
# For scp, write the remote side as @:PATH.
to_workers() {
  local verb=$1 target=${QUEUED_RESOURCE:-${TPU_NAME:-}} a args=() extra=()
  shift
  [[ $verb == ssh ]] && args+=("$target")
  for a in "$@"; do args+=("${a/#@:/$target:}"); done
  read -ra extra <<< "${SSH_FLAGS:-}"
  if [[ -n ${QUEUED_RESOURCE:-} ]]; then
    gcloud_tpu queued-resources "$verb" "${args[@]}" --node=all --worker=all \
      ${extra[@]+"${extra[@]}"}
  else
    gcloud_tpu tpu-vm "$verb" "${args[@]}" --worker=all ${extra[@]+"${extra[@]}"}
  fi
}

# shq STRING: STRING quoted for any POSIX shell.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# remote_script VAR... [-- ARG...] < BODY: prints a `bash -c '...'` command
# line that sets each VAR to its local value and the positional parameters to
# ARG..., then runs BODY (read from stdin) under `set -euo pipefail`.
remote_script() {
  local pre="set -euo pipefail" a
  while (($#)) && [[ $1 != -- ]]; do
    pre+=$'\n'"$1=$(shq "${!1}")"
    shift
  done
  if (($#)); then
    shift
    pre+=$'\n'"set --"
    for a in "$@"; do pre+=" $(shq "$a")"; done
  fi
  printf 'bash -c %s' "$(shq "$pre"$'\n'"$(cat)")"
}

# default_version ACCELERATOR_TYPE: the TPU runtime (software) version for JAX.
default_version() {
  case $1 in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    *) echo tpu-ubuntu2204-base ;;
  esac
}

# Where bert_jax lives on the workers (relative paths: in the home directory).
VENV=${VENV:-bert_jax_venv}
SRC_DIR=${SRC_DIR:-bert_jax}
