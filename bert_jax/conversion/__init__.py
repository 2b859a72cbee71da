"""Checkpoints in other formats: Google's TF-1 and Hugging Face's
(`interop`: names, configs, reading and writing), and whole runs exported
from or imported into workdirs (`releases`). Command line:
`python -m bert_jax.convert`."""
