"""PyTorch baselines of the codec itself (side-by-side benchmarks and interop; need the ``[torch]`` extra)."""
