"""What the tests share that is not a fixture (those are in tests/conftest.py): tiny checkpoints, the commands as a
user runs them, a tiny run's overrides, hand-made run directories and task records, and the tools some tests start
(a SLURM cluster on localhost, a reader of W&B's offline files, imitations of the paper's released checkpoints)."""
