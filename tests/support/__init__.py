"""What the tests and the benchmarks share: synthetic videos and random-weight checkpoints, the
official predictor as oracle, real redis-server and local-server processes, CVAT request bodies.

The tests and `bench/` import from here and never from each other. Run from the repository root
(pytest's `pythonpath` and `python -m bench.<name>` put it on `sys.path`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
