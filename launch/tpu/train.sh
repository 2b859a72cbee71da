#!/usr/bin/env bash
# Start `python -m bert_jax.main` on every TPU worker.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_common.sh
source "$here/_common.sh"

usage() {
  cat <<'USAGE'
Usage: TPU_NAME=NAME ZONE=ZONE WORKDIR=gs://... [settings] launch/tpu/train.sh [TRAINER_FLAGS...]
   or: QUEUED_RESOURCE=ID ZONE=ZONE WORKDIR=gs://... launch/tpu/train.sh [TRAINER_FLAGS...]

Runs, on every worker at once (all slices of a queued resource):
  python -m bert_jax.main --config=$CONFIG --workdir=$WORKDIR \
    [the four --config.phaseN.{train,eval}_files flags from DATA_DIR] TRAINER_FLAGS...
in SRC_DIR with VENV (see setup_workers.sh). Each worker sets
JAX_COORDINATOR_ADDRESS to worker 0 of slice 0 (from the TPU metadata), so
bert_jax.main calls jax.distributed.initialize(). Rerun the same command to
resume from the latest checkpoint in WORKDIR.
Settings (environment variables):
  TPU_NAME | QUEUED_RESOURCE   the machines (one of them, required)
  ZONE, PROJECT     as for create_tpu.sh (ZONE required)
  WORKDIR           checkpoints + TensorBoard, gs://BUCKET/... (required;
                    every worker must see it)
  DATA_DIR          gs:// directory with seq128/ and seq512/ from data_prep
                    (optional: otherwise pass --config.phaseN.*_files flags)
  CONFIG            default configs/bert.py:base
  LOG_DIR           per-worker logs on each worker (default ~/bert_jax_logs);
                    the log is LOG_DIR/RUN_NAME/slice<S>-worker<W>.log
  RUN_NAME          default: the last component of WORKDIR
  DETACH            1 (default): start in the background under nohup and
                    return; 0: stream all workers' output here (tee'd to logs)
  COORDINATOR_PORT  default 8482
  LIBTPU_INIT_ARGS, XLA_FLAGS, JAX_COMPILATION_CACHE_DIR  forwarded if set
  SSH_FLAGS         extra gcloud ssh flags, e.g. --internal-ip
  DRY_RUN=1         print the gcloud command instead of running it
Logs:  gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=0 \
         --command='tail -f ~/bert_jax_logs/RUN_NAME/*.log'
Stop (SIGTERM: the trainer checkpoints, then exits):
       gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all \
         --command='kill $(cat ~/bert_jax_logs/RUN_NAME/*.pid)'
USAGE
}

[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
need_target
need ZONE WORKDIR
[[ $WORKDIR == gs://* ]] ||
  echo "warning: WORKDIR=$WORKDIR is not on gs://; all workers must see it." >&2
CONFIG=${CONFIG:-configs/bert.py:base}
LOG_DIR=${LOG_DIR:-bert_jax_logs}
RUN_NAME=${RUN_NAME:-$(basename "$WORKDIR")}
DETACH=${DETACH:-1}
COORDINATOR_PORT=${COORDINATOR_PORT:-8482}
FORWARD=""
for v in LIBTPU_INIT_ARGS XLA_FLAGS JAX_COMPILATION_CACHE_DIR; do
  [[ -n ${!v:-} ]] && FORWARD+="$v=$(shq "${!v}") "
done

args=(--config="$CONFIG" --workdir="$WORKDIR")
if [[ -n ${DATA_DIR:-} ]]; then
  for p in 1:seq128 2:seq512; do
    for split in train eval; do
      args+=("--config.phase${p%%:*}.${split}_files=${DATA_DIR%/}/${p#*:}/$split-*")
    done
  done
fi

remote=$(remote_script VENV SRC_DIR LOG_DIR RUN_NAME DETACH COORDINATOR_PORT \
  FORWARD -- "${args[@]}" "$@" <<'REMOTE'
cd ~
VENV=$(realpath -m "$VENV")
LOG_DIR=$(realpath -m "$LOG_DIR/$RUN_NAME")
md() {  # GCE metadata of this TPU VM (what jax's GceTpuCluster reads)
  curl -sf -H 'Metadata-Flavor: Google' \
    "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1"
}
tpu_env() { md tpu-env | sed -n "s/^$1: *'\{0,1\}\([^':]*\).*/\1/p"; }
worker=$(md agent-worker-number)
slice=$(tpu_env MEGASCALE_SLICE_ID)
coordinator=$(tpu_env MEGASCALE_COORDINATOR_ADDRESS)  # multislice
if [[ -z $coordinator ]]; then
  coordinator=$(md worker-network-endpoints | cut -d, -f1 | awk -F: '{print $NF}')
fi
export JAX_COORDINATOR_ADDRESS=$coordinator:$COORDINATOR_PORT
[[ -z $FORWARD ]] || eval "export $FORWARD"
log=$LOG_DIR/slice${slice:-0}-worker$worker.log
pid_file=${log%.log}.pid
mkdir -p "$LOG_DIR"
if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2> /dev/null; then
  echo "$(hostname): $RUN_NAME is already running ($pid_file)" >&2
  exit 1
fi
cd "$SRC_DIR"
if [[ $DETACH == 1 ]]; then
  nohup "$VENV/bin/python" -m bert_jax.main "$@" > "$log" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  echo "$(hostname): started (pid $!), log $log"
else
  (echo "$BASHPID" > "$pid_file"
    exec "$VENV/bin/python" -m bert_jax.main "$@") 2>&1 | tee "$log"
fi
REMOTE
)
to_workers ssh --command="$remote"
