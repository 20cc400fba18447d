# Two entry points on a fresh machine; both set up .venv first (scripts/bootstrap.sh).
.PHONY: demo test bench compare setup

setup:
	@scripts/bootstrap.sh

demo: setup
	.venv/bin/biocodec-jax demo

# Two pytest worker processes (pytest-xdist), a test file each at a time: both cores busy, and no one process
# accumulates the whole suite's compiled programs. TEST_WORKERS=N for a larger machine (each takes ~2-4 GB).
TEST_WORKERS ?= 2

test: setup
	.venv/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

bench: setup
	.venv/bin/python -m experiments.benchmarks.codec_speed
	.venv/bin/python -m experiments.benchmarks.prepare_speed
	.venv/bin/python -m experiments.benchmarks.loader_speed
	.venv/bin/python -m experiments.benchmarks.parallel_speed

# JAX vs PyTorch side by side (installs the [torch] extra; PyTorch's default wheel is large).
compare: setup
	.venv/bin/python -m pip install -q -e ".[torch]"
	.venv/bin/python -m experiments.benchmarks.compare_pytorch
