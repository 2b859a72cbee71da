"""`python -m bert_jax.stats`: see bert_jax/stats/cli.py."""

from bert_jax.stats import cli

if __name__ == "__main__":
  cli.run()
