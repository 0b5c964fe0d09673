"""The benchmark of the project against the blog recipe (python -m scripts.benchmark), in its parts."""
