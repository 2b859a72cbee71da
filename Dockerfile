# CPU image for data preparation (the GPU training image comes with the
# launch tooling). Build: docker build -t bert_jax .
# Run:  docker run --rm -v "$PWD/data:/data" bert_jax \
#         --input_file=/data/corpus/*.txt --vocab_file=/data/vocab.txt \
#         --output_dir=/data/seq128 --num_shards=64 --num_workers=0
FROM python:3.11-slim
WORKDIR /opt/bert_jax
COPY setup.py README.md ./
COPY data_prep data_prep
COPY bert_jax bert_jax
RUN pip install --no-cache-dir .
ENTRYPOINT ["python", "-m", "data_prep.create_pretraining_data"]
