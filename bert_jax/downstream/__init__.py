"""What a pretrained checkpoint is used for: classification and regression
fine-tuning (`finetune`, on `tasks`' files) and per-token features
(`features`). Command lines: `python -m bert_jax.finetune`, `python -m
bert_jax.extract_features`."""
