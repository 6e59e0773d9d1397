"""What the benchmarks share; each benchmark is one file beside this package (`bench/<name>.py`,
run as `uv run python bench/<name>.py`, which puts bench/ first on the path).

- `results`: where results go (bench/results/*.json), the command line's parser, the machine;
- `stats`: percentiles, latency summaries, sustained rates, ratios to a baseline of the same run;
- `processes`: CPU-seconds and resident memory of processes and process trees, a sampler over
  time, helper processes of a benchmark, waiting for a server to be healthy;
- `stack`: a stack (Kafka, MinIO, PostgreSQL) or the whole platform started for one run, the
  services' processes on it;
- `platform_metrics`: what the platform's consumers do while measured (lag, handler time);
- `records`: records' API on a stack of its own (bench/records.py, bench/resumable.py);
- `revision`: a module as it was at an older commit, for old-against-new benchmarks.

This file imports nothing: a benchmark's worker processes import the benchmark's module again
(translation's checking workers, whose memory is measured), so each module of the harness is
imported only where it is used, and the light ones (`results`, `stats`) need no more than the
standard library.
"""
