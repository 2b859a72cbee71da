"""Statistics over many pretraining seeds: the multi-bootstrap of Sellam et al.
(MultiBERTs, 2021) in `multibootstrap`, plain-numpy metrics in `metrics`, and a
command line (`python -m bert_jax.stats`, see `cli`) over prediction files."""
