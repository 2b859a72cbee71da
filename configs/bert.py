r"""BERT pretraining recipe: the original two-phase schedule, any model size.

    python -m bert_jax.main --config=configs/bert.py:base --workdir=...
    --config=configs/bert.py:L-4_H-256     # any of the 24 small BERTs
    --config=configs/bert.py:large
    --config.phase1.learning_rate=2e-4  # every field can be overridden

Argument: `tiny` (L-2_H-128), `mini` (L-4_H-256), `small` (L-4_H-512),
`medium` (L-8_H-512), `base` (L-12_H-768, the default), `large`
(L-24_H-1024, 16 heads), or `L-{2,4,6,8,10,12}_H-{128,256,512,768}` (heads
H/64, feed-forward 4H). Phase 1 runs 90% of the steps at sequence length 128
with 20 predictions, phase 2 the rest at 512 with 80 (Devlin et al.).
"""

import ml_collections

NAMED = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512),
         "medium": (8, 512), "base": (12, 768)}


def model_size(arg: str) -> tuple[int, int, int]:
  """(layers, hidden, heads) for a preset name."""
  arg = (arg or "base").lower()
  if arg == "large":
    return 24, 1024, 16
  if arg in NAMED:
    layers, hidden = NAMED[arg]
    return layers, hidden, hidden // 64
  try:
    l_part, h_part = arg.upper().split("_")
    layers, hidden = int(l_part[2:]), int(h_part[2:])
  except ValueError as e:
    raise ValueError(f"configs/bert.py: unknown size {arg!r}; use one of "
                     f"{sorted(NAMED) + ['large']} or L-<layers>_H-<hidden>."
                     ) from e
  if layers not in (2, 4, 6, 8, 10, 12) or hidden not in (128, 256, 512, 768):
    raise ValueError(f"configs/bert.py: {arg!r} is not one of the 24 small "
                     "BERTs (L in 2..12 step 2, H in 128/256/512/768).")
  return layers, hidden, hidden // 64


def get_config(arg: str = "base") -> ml_collections.ConfigDict:
  layers, hidden, heads = model_size(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0  # initialisation + dropout and data order, unless split:
  config.init_seed = -1  # parameter init and dropout (-1: seed)
  config.data_seed = -1  # training-data order and dynamic masks (-1: seed)
  config.dropout_prng = "threefry2x32"  # | rbg | unsafe_rbg (faster masks)
  config.init_from = ""  # workdir (a run or `bert_jax.convert import_*`)
  config.init_from_step = -1  # its checkpoint to start from (-1: latest)
  # Dynamic masking's vocab ([MASK], "##" pieces): "" for the one the data's
  # metadata.json names; set it for shards without metadata or moved files.
  config.vocab_file = ""

  config.model = ml_collections.ConfigDict()
  config.model.vocab_size = 30522  # must cover the data's vocabulary
  config.model.hidden_size = hidden  # H
  config.model.num_hidden_layers = layers  # L
  config.model.num_attention_heads = heads  # A = H / 64
  config.model.intermediate_size = 4 * hidden  # feed-forward width
  config.model.hidden_act = "gelu"  # tanh approximation, as Google's
  config.model.hidden_dropout_prob = 0.1  # embeddings and block outputs
  config.model.attention_probs_dropout_prob = 0.1  # attention probabilities
  config.model.max_position_embeddings = 512  # phase 2 needs 512
  config.model.type_vocab_size = 2  # segments A and B
  config.model.initializer_range = 0.02  # σ of the weight initialiser
  # truncated_normal (Google's: within ±2σ, std ≈ 0.88σ) | normal
  # (transformers' plain normal(σ), which learned faster on short runs).
  config.model.initializer = "truncated_normal"
  config.model.dtype = "float32"  # compute dtype (bfloat16 on TPU/GPU)
  config.model.remat = "none"  # none | full | dots
  config.model.attention = "xla"  # xla | dot_product | cudnn
  # Random bits per dropout decision: 16 (Dropout16, rate within 1/65536,
  # 1.03-1.13x per step) | 32 (flax's nn.Dropout masks).
  config.model.dropout_bits = 16
  # Pooler + next-sentence head and loss (False: MLM only, as RoBERTa;
  # pairs with data_prep --nsp=False; export_hf writes BertForMaskedLM).
  config.model.nsp = True

  config.optimizer = ml_collections.ConfigDict()
  # lamb (NVIDIA/MLPerf; configs/fast.py) | adamw_google (Google's
  # original: no bias correction, large first steps, slow on short runs) |
  # adamw (torch/optax: bias-corrected; with schedule=linear and
  # initializer=normal it tracks a torch loop within 0.0025 MLM accuracy).
  config.optimizer.name = "lamb"
  config.optimizer.weight_decay = 0.01  # not on biases / LayerNorm
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.clip_norm = 1.0  # global gradient norm, before the update
  config.optimizer.grad_accum_steps = 1  # micro-batches per update

  total_steps = 1_000_000
  config.phase1 = ml_collections.ConfigDict()
  config.phase1.train_files = ""  # TFRecord glob(s) at seq 128
  config.phase1.eval_files = ""  # held-out shards (data_prep --eval_fraction)
  config.phase1.max_seq_length = 128
  config.phase1.max_predictions_per_seq = 20
  config.phase1.global_batch_size = 256
  config.phase1.num_steps = int(total_steps * 0.9)
  config.phase1.warmup_steps = 10_000
  config.phase1.learning_rate = 1e-4  # peak (reached after warm-up)
  # google (linear decay from step 0, Google's) | linear (Hugging Face's:
  # decay from the peak after warm-up) | wsd (warm-up, stable, decay).
  config.phase1.schedule = "google"
  config.phase1.decay_fraction = 0.2  # wsd: share of steps decaying to 0
  # Pack up to this many examples per row (0: off, as Google). Packed, the
  # batch counts rows: ~1.3-2x more examples per step (eval: eval_packing).
  config.phase1.packing = 0
  # static: the shards' masks (Google's, fixed by data_prep) | dynamic: drawn
  # afresh at each step on the device (RoBERTa/MosaicBERT; shards with or
  # without masks, data_prep --masking=none). The rest apply to dynamic only.
  config.phase1.masking = "static"
  config.phase1.mask_rate = 0.15  # share of tokens predicted (Google's 0.15)
  config.phase1.mask_token_prob = 0.8  # predicted tokens shown as [MASK]
  config.phase1.random_token_prob = 0.1  # ... as a random token (rest: kept)
  config.phase1.whole_word_masking = False  # mask "##" pieces with their word

  config.phase2 = ml_collections.ConfigDict()
  config.phase2.train_files = ""  # TFRecord glob(s) at seq 512
  config.phase2.eval_files = ""
  config.phase2.max_seq_length = 512
  config.phase2.max_predictions_per_seq = 80
  config.phase2.global_batch_size = 256
  config.phase2.num_steps = total_steps - config.phase1.num_steps
  config.phase2.warmup_steps = 1_000
  config.phase2.learning_rate = 1e-4
  config.phase2.schedule = "google"  # as phase1.schedule
  config.phase2.decay_fraction = 0.2  # wsd: share of steps decaying to 0
  config.phase2.packing = 0  # 3 for NVIDIA/MLPerf-style packed phase 2
  config.phase2.masking = "static"  # as phase1.masking
  config.phase2.mask_rate = 0.15
  config.phase2.mask_token_prob = 0.8
  config.phase2.random_token_prob = 0.1
  config.phase2.whole_word_masking = False

  config.phase1.carry_optimizer_state = False  # (phase 1 starts fresh)
  config.phase2.carry_optimizer_state = False  # True: keep LAMB moments
  # ModernBERT only: the phase's rotary θ of global layers (0: the model's
  # global_rope_theta), e.g. 10k at seq 1024, then 160k to extend to 8192.
  config.phase1.global_rope_theta = 0.0
  config.phase2.global_rope_theta = 0.0

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.save_every = 10_000  # periodic checkpoints (steps)
  config.checkpoint.keep_last = 3  # periodic ones kept
  # Kept forever: (until_step, every) rules; MultiBERTs: every 20k to 200k,
  # then every 100k. Override: --config.checkpoint.keep_forever="((1000, 100),)".
  config.checkpoint.keep_forever = ((200_000, 20_000), (2_000_000, 100_000))
  config.checkpoint.async_save = True  # write in the background

  config.log_every = 100  # steps between metric logs
  config.eval_batch_size = 64  # held-out evaluation after each phase
  config.eval_steps = 100  # evaluate eval_steps x eval_batch_size examples
  # Pack up to this many held-out examples per row (0: unpacked): the same
  # examples and per-example results in fewer rows (metrics are sums, then
  # ratios, as Google's streaming means); several times faster on short docs.
  config.eval_packing = 4
  config.eval_every = 0  # also evaluate every N steps (0: at phase ends only)
  # Or every N training examples (MLPerf's grain; a packed row counts each
  # example in it; packed phases then wait for each step's count). Every
  # evaluation is a line of WORKDIR/evals.jsonl.
  config.eval_every_examples = 0
  # Held-out shards without masks (data_prep --masking=none) get Google's
  # masks at this rate from a fixed seed: one yardstick for every recipe.
  config.eval_mask_rate = 0.15
  # Time to accuracy (MLPerf-style): the step, examples and training time
  # (held-out evaluation excluded) of the first evaluation whose MLM accuracy
  # reaches this go to the log and WORKDIR/target.json (0: off); with
  # stop_at_target, training ends there.
  config.target_mlm_accuracy = 0.0
  config.stop_at_target = False
  config.shuffle_buffer = 10_000  # records
  config.pack_open_rows = 32  # rows the packer fills at once (phaseN.packing)
  # Input streams the files are dealt into (-1: one per host). Fixed, the
  # batches no longer depend on the host count (resume on more or fewer hosts).
  config.data_streams = -1
  config.peak_tflops = 0.0  # per-device peak for MFU (0: not reported)
  config.on_nonfinite = "stop"  # NaN/Inf loss or grads: stop | skip the step
  # CPU only: matmul library. auto: oneDNN from hidden size 256 (0.97-1.15x)
  # where a cached per-machine probe shows it works, else XLA's default
  # YNNPACK | ynn | onednn (refused where the probe failed).
  config.cpu_dots = "auto"

  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1  # data parallel (-1: all remaining devices)
  config.mesh.fsdp = 1  # parameter sharding
  config.mesh.tensor = 1  # tensor parallel (heads, mlp, vocab)
  config.mesh.dcn_data = 1  # of `data`, groups across slices/hosts (DCN)
  return config
