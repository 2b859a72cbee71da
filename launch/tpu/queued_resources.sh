#!/usr/bin/env bash
# Request TPUs through the queued-resources API (single slice or multislice).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

usage() {
  cat <<'USAGE'
Usage: QUEUED_RESOURCE=ID ZONE=ZONE [settings] launch/tpu/queued_resources.sh [create|describe|list|delete]

create (default) queues a request with `gcloud compute tpus queued-resources
create`; the TPUs exist once `describe` shows state ACTIVE. NODE_COUNT > 1
asks for a multislice: NODE_COUNT slices named NODE_PREFIX-0, NODE_PREFIX-1,
... joined over the data-center network. Then run setup_workers.sh and
train.sh with the same QUEUED_RESOURCE (they reach every slice); train with
--config.mesh.dcn_data=NODE_COUNT (see launch/README.md).
delete removes the request and its TPUs (--force).
Settings (environment variables):
  QUEUED_RESOURCE   ID of the request (required)
  ZONE              zone (required); PROJECT as for create_tpu.sh
  ACCELERATOR_TYPE  per slice, default v4-8
  TPU_VERSION       runtime version (default: from the accelerator type, as
                    in create_tpu.sh)
  NODE_COUNT        slices (default 1)
  NODE_ID           the TPU's name when NODE_COUNT=1 (default: QUEUED_RESOURCE)
  NODE_PREFIX       slice name prefix when NODE_COUNT>1 (default: QUEUED_RESOURCE)
  SPOT=1 | RESERVED=1 | GUARANTEED=1   provisioning model (default: on demand)
  VALID_UNTIL       give up if not provisioned within this duration, e.g. 6h
  SERVICE_ACCOUNT, NETWORK, SUBNETWORK, CREATE_FLAGS   as for create_tpu.sh
  YES=1             delete without asking (see delete_tpu.sh)
  DRY_RUN=1         print the gcloud command instead of running it
USAGE
}

case ${1:-create} in
  -h | --help) usage; exit 0 ;;
  create | describe | list | delete) action=${1:-create} ;;
  *) die "unknown action '$1' (create, describe, list or delete; see --help)." ;;
esac
(($# <= 1)) || die "unexpected arguments: ${*:2} (settings are environment variables)."
need ZONE
if [[ $action == list ]]; then
  gcloud_tpu queued-resources list
  exit 0
fi
need QUEUED_RESOURCE
if [[ $action == describe ]]; then
  gcloud_tpu queued-resources describe "$QUEUED_RESOURCE"
  exit 0
fi
if [[ $action == delete ]]; then
  TPU_NAME="" exec "$here/delete_tpu.sh"
fi

ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
NODE_COUNT=${NODE_COUNT:-1}
[[ $NODE_COUNT =~ ^[1-9][0-9]*$ ]] || die "NODE_COUNT=$NODE_COUNT: not a positive integer."
flags=(--accelerator-type="$ACCELERATOR_TYPE"
  --runtime-version="${TPU_VERSION:-$(default_version "$ACCELERATOR_TYPE")}")
if ((NODE_COUNT > 1)); then
  flags+=(--node-count="$NODE_COUNT"
    --node-prefix="${NODE_PREFIX:-$QUEUED_RESOURCE}")
else
  flags+=(--node-id="${NODE_ID:-$QUEUED_RESOURCE}")
fi
[[ ${SPOT:-0} == 1 ]] && flags+=(--spot)
[[ ${RESERVED:-0} == 1 ]] && flags+=(--reserved)
[[ ${GUARANTEED:-0} == 1 ]] && flags+=(--guaranteed)
[[ -n ${VALID_UNTIL:-} ]] && flags+=(--valid-until-duration="$VALID_UNTIL")
[[ -n ${SERVICE_ACCOUNT:-} ]] && flags+=(--service-account="$SERVICE_ACCOUNT")
[[ -n ${NETWORK:-} ]] && flags+=(--network="$NETWORK")
[[ -n ${SUBNETWORK:-} ]] && flags+=(--subnetwork="$SUBNETWORK")
read -ra extra <<< "${CREATE_FLAGS:-}"
gcloud_tpu queued-resources create "$QUEUED_RESOURCE" "${flags[@]}" \
  ${extra[@]+"${extra[@]}"}
