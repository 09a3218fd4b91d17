"""Benchmark of the pipeline against the raw Kafka client ceiling (`make bench`, `python -m bench --help`)."""
