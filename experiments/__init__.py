"""Programs built on biocodec_jax and data_pipelines: the demo, task programs, benchmarks (nothing imports them)."""
