#!/usr/bin/env bash
# Create a Cloud TPU VM or pod slice for bert_jax.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

usage() {
  cat <<'USAGE'
Usage: TPU_NAME=NAME ZONE=ZONE [settings] launch/tpu/create_tpu.sh

Creates a TPU VM (v4-8, v5litepod-8, ...) or a pod slice (v4-32,
v5litepod-256, v5p-128, ...) with `gcloud compute tpus tpu-vm create`.
Settings (environment variables):
  TPU_NAME          name of the TPU (required)
  ZONE              zone, e.g. us-central2-b (v4), us-east5-a (v5p) (required)
  PROJECT           Google Cloud project (default: gcloud's configured one)
  ACCELERATOR_TYPE  default v4-8
  TPU_VERSION       runtime version (default: from the accelerator type:
                    v6e-* v2-alpha-tpuv6e, v5p-* v2-alpha-tpuv5,
                    v5litepod-*/v5e-* v2-alpha-tpuv5-lite, else
                    tpu-ubuntu2204-base)
  SPOT=1            a Spot TPU (preemptible; training resumes on restart)
  RESERVED=1        use the project's reserved capacity
  SERVICE_ACCOUNT   service account of the VMs (needs read/write access to
                    the gs:// buckets for data and workdir)
  NETWORK, SUBNETWORK  VPC network / subnetwork (default: "default")
  CREATE_FLAGS      further gcloud flags, space-separated
  DRY_RUN=1         print the gcloud command instead of running it
Then: launch/tpu/setup_workers.sh, launch/tpu/train.sh.
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
(($# == 0)) || die "unexpected arguments: $* (settings are environment variables)."
need TPU_NAME ZONE
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
TPU_VERSION=${TPU_VERSION:-$(default_version "$ACCELERATOR_TYPE")}

flags=(--accelerator-type="$ACCELERATOR_TYPE" --version="$TPU_VERSION")
[[ ${SPOT:-0} == 1 ]] && flags+=(--spot)
[[ ${RESERVED:-0} == 1 ]] && flags+=(--reserved)
[[ -n ${SERVICE_ACCOUNT:-} ]] && flags+=(--service-account="$SERVICE_ACCOUNT")
[[ -n ${NETWORK:-} ]] && flags+=(--network="$NETWORK")
[[ -n ${SUBNETWORK:-} ]] && flags+=(--subnetwork="$SUBNETWORK")
read -ra extra <<< "${CREATE_FLAGS:-}"
gcloud_tpu tpu-vm create "$TPU_NAME" "${flags[@]}" ${extra[@]+"${extra[@]}"}
