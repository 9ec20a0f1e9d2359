"""What the tests and the benchmarks both use: real servers (SeaweedFS, PostgreSQL, Ray clusters) started on
127.0.0.1, the hostile-input corpus, and Ray task functions. Not part of the installed package; importable from
the repository's root (``python -m pytest`` and ``python bench/...`` put it on the path)."""
