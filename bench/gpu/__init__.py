"""The GPU benchmark of issue 21, run by `python -m bench.gpu_bench` (`bench/device_check.sh bench` on a
lent GPU machine): one module per measurement, and what they share (sizes, the time budget, the output
folder, the inputs, the function under test)."""
