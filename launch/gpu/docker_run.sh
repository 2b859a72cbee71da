#!/usr/bin/env bash
# Train on one multi-GPU host with the image from launch/gpu/Dockerfile.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: WORKDIR=DIR|gs://... [settings] launch/gpu/docker_run.sh [TRAINER_FLAGS...]

Runs `python -m bert_jax.main --config=$CONFIG --workdir=... [data flags]
TRAINER_FLAGS...` in the GPU image on all GPUs of this host: one process,
a (data, fsdp, tensor) mesh over the local GPUs. Rerun the same command to
resume from the latest checkpoint.
Settings (environment variables):
  WORKDIR    checkpoints + TensorBoard (required): gs://... or a local
             directory (mounted at /workdir; files are written as your user)
  DATA_DIR   directory with seq128/ and seq512/ from data_prep: gs://... or
             local (mounted read-only at /data). Optional: otherwise pass
             --config.phaseN.{train,eval}_files flags
  CONFIG     default configs/bert.py:base
  IMAGE      default bert_jax:gpu (docker build -f launch/gpu/Dockerfile -t bert_jax:gpu .)
  GPUS       docker --gpus value (default all; e.g. '"device=0,1"')
  SHM_SIZE   /dev/shm size for tf.data and NCCL (default 16g)
  NAME       container name (default bert_jax)
  DETACH=1   run in the background (docker logs -f $NAME to follow)
  STOP_TIMEOUT  seconds `docker stop` waits for the checkpoint (default 300);
             stop with `docker stop $NAME` (SIGTERM: checkpoint, then exit)
  XLA_PYTHON_CLIENT_MEM_FRACTION  GPU memory JAX may take (default 0.9)
  XLA_FLAGS  default --xla_gpu_enable_latency_hiding_scheduler=true
  GOOGLE_APPLICATION_CREDENTIALS  key/ADC file for gs:// off Google Cloud
             (mounted read-only); on GCE the VM's service account is used
  DOCKER_FLAGS  further `docker run` flags, space-separated
  DRY_RUN=1  print the docker command instead of running it
USAGE
}

die() { echo "error: $*" >&2; exit 1; }
[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
[[ -n ${WORKDIR:-} ]] || die "WORKDIR is not set (see $(basename "$0") --help)."
CONFIG=${CONFIG:-configs/bert.py:base}
IMAGE=${IMAGE:-bert_jax:gpu}
NAME=${NAME:-bert_jax}

# `docker stop` sends SIGTERM: the trainer checkpoints, then exits; allow it
# the time to write (docker's default is 10 s before SIGKILL).
flags=(--rm --name "$NAME" --gpus "${GPUS:-all}" --shm-size "${SHM_SIZE:-16g}"
  --stop-timeout "${STOP_TIMEOUT:-300}"
  --ulimit memlock=-1 --ulimit stack=67108864
  -e XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
  -e XLA_FLAGS="${XLA_FLAGS:---xla_gpu_enable_latency_hiding_scheduler=true}")
if [[ ${DETACH:-0} == 1 ]]; then
  flags+=(--detach)
elif [[ -t 0 ]]; then
  flags+=(--tty --interactive)
fi

workdir=$WORKDIR
if [[ $WORKDIR != gs://* ]]; then
  [[ ${DRY_RUN:-0} == 1 ]] || mkdir -p "$WORKDIR"
  flags+=(-v "$(realpath -m "$WORKDIR"):/workdir"
    --user "$(id -u):$(id -g)" -e HOME=/tmp)
  workdir=/workdir
fi
data=${DATA_DIR:-}
if [[ -n $data && $data != gs://* ]]; then
  [[ -d $data ]] || die "DATA_DIR=$data: no such directory."
  flags+=(-v "$(realpath "$data"):/data:ro")
  data=/data
fi
if [[ -n ${GOOGLE_APPLICATION_CREDENTIALS:-} ]]; then
  flags+=(-v "$GOOGLE_APPLICATION_CREDENTIALS:/secrets/gcp.json:ro"
    -e GOOGLE_APPLICATION_CREDENTIALS=/secrets/gcp.json)
fi
read -ra extra <<< "${DOCKER_FLAGS:-}"

args=(--config="$CONFIG" --workdir="$workdir")
if [[ -n $data ]]; then
  for p in 1:seq128 2:seq512; do
    for split in train eval; do
      args+=("--config.phase${p%%:*}.${split}_files=${data%/}/${p#*:}/$split-*")
    done
  done
fi

cmd=(docker run "${flags[@]}" ${extra[@]+"${extra[@]}"} "$IMAGE" "${args[@]}" "$@")
if [[ ${DRY_RUN:-0} == 1 ]]; then
  printf -v line '%q ' "${cmd[@]}"
  echo "${line% }"
else
  exec "${cmd[@]}"
fi
