#!/usr/bin/env bash
# Delete a TPU VM / pod slice, or a queued resource and its TPUs.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

usage() {
  cat <<'USAGE'
Usage: TPU_NAME=NAME ZONE=ZONE [YES=1] launch/tpu/delete_tpu.sh
   or: QUEUED_RESOURCE=ID ZONE=ZONE [YES=1] launch/tpu/delete_tpu.sh

Deletes the TPU VM (gcloud compute tpus tpu-vm delete) or the queued
resource with all its slices (gcloud compute tpus queued-resources delete
--force). Checkpoints in the gs:// workdir are kept; the workers' local
disks (logs, venv) are not.
Settings (environment variables):
  TPU_NAME | QUEUED_RESOURCE   what to delete (one of them, required)
  ZONE, PROJECT     as for create_tpu.sh (ZONE required)
  YES=1             do not ask for confirmation
  ASYNC=1           return without waiting for the deletion
  DRY_RUN=1         print the gcloud command instead of running it
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
(($# == 0)) || die "unexpected arguments: $* (settings are environment variables)."
need_target
need ZONE
flags=()
[[ ${YES:-0} == 1 ]] && flags+=(--quiet)
[[ ${ASYNC:-0} == 1 ]] && flags+=(--async)
if [[ -n ${QUEUED_RESOURCE:-} ]]; then
  gcloud_tpu queued-resources delete "$QUEUED_RESOURCE" --force \
    ${flags[@]+"${flags[@]}"}
else
  gcloud_tpu tpu-vm delete "$TPU_NAME" ${flags[@]+"${flags[@]}"}
fi
