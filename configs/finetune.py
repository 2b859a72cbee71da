r"""Fine-tuning recipe: Google's `run_classifier.py` defaults (GLUE tasks).

    python -m bert_jax.finetune --config.init_checkpoint=RUN \
        --config.task_dir=glue/SST-2 --config.output_dir=out/sst2/seed0 \
        --config.text_a=sentence --config.seed=0

`--config=configs/finetune.py` is the default and may be left out; every field
can be overridden. Column options take a header name, a JSONL key, or a
0-based column number for headerless TSV/CSV (`has_header=False`).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.init_checkpoint = ""  # workdir: a training run or a convert import_*
  config.init_step = -1  # its checkpoint step to start from (-1: latest)
  config.task_dir = ""  # train.{tsv,csv,jsonl}, dev.*, optional test.*
  config.task_name = ""  # name recorded in the outputs ("": task_dir's name)
  config.output_dir = ""  # predictions.jsonl, predictions.meta.json, ...

  config.text_a = "sentence"  # first text column (name, key or index)
  config.text_b = ""  # second text column for pair tasks ("": single text)
  config.label = "label"  # label column (name, key or index)
  config.has_header = True  # TSV/CSV: the first row names the columns
  config.test_has_header = "auto"  # test file: auto (as has_header)|true|false
  config.test_text_a = ""  # test file's text_a where it differs ("": same)
  config.test_text_b = ""  # test file's text_b where it differs ("": same)
  config.labels = ""  # comma list fixing label ids ("": sorted train labels)
  config.regression = False  # float targets: one output, mean squared error
  # auto: GLUE's (regression: pearson+spearman; two classes: accuracy+f1;
  # more: accuracy) | accuracy | f1 (labels[1] positive) | matthews |
  # pearson | spearman
  config.metric = "auto"

  config.max_seq_length = 128  # tokens incl. [CLS]/[SEP]; pairs truncated
  config.batch_size = 32  # global; a multiple of the local device count
  config.learning_rate = 2e-5  # peak, after the linear warm-up
  config.num_epochs = 3.0  # passes over train (fractions allowed)
  config.warmup_proportion = 0.1  # share of steps warming up, then decay to 0
  config.weight_decay = 0.01  # AdamW decay, not on LayerNorm / biases
  config.clip_norm = 1.0  # global gradient norm clip (0: none)
  config.dropout = 0.1  # encoder and classifier dropout (-1: checkpoint's)
  config.pooling = "cls"  # ModernBERT: cls (first token) | mean; BERT: cls
  config.seed = 0  # fine-tuning seed: classifier init, dropout, data order

  config.vocab_file = ""  # "": the checkpoint's recorded vocab
  config.do_lower_case = "auto"  # auto (the checkpoint's) | true | false
  config.dtype = ""  # compute dtype ("": the checkpoint's, e.g. bfloat16)
  config.cpu_dots = "auto"  # XLA:CPU matmuls: auto | ynn | onednn (README)
  return config
