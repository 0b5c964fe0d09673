"""Scripts run from the repository root as modules: python -m scripts.benchmark, python -m scripts.gpu_check."""
