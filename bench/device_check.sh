#!/usr/bin/env bash
# On a lent GPU machine, whose image has Python 3.12 with torch (CUDA), numpy, pillow, opencv,
# safetensors and pytest, but not sam2 and what it needs, nor Redis: the CUDA tests
# (tests/test_cuda.py) and the GPU benchmark (bench/gpu_bench.py, docs/performance.md#gpu).
#   bench/device_check.sh prepare   here: those packages as wheels into .whl/ (all pure Python; sam2
#                                   built without its CUDA extension, as dev.sh builds it), and this
#                                   machine's redis-server with its libraries into .whl/redis/
#   bench/device_check.sh run       there, with .whl carried (the device tool's run, carry [".whl"]):
#                                   install them beside the image's torch, print the card and torch,
#                                   run the tests (their figures are printed)
#   bench/device_check.sh bench [ARGS]
#                                   there, likewise: python3 -m bench.gpu_bench --out "$OUT" ARGS
#                                   (default --budget-s 300), then the figures as text
#                                   (bench.gpu_report --print); without $OUT into bench/results/gpu
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 PATH="$PWD/.whl/redis:$PATH"
    redis-server --version
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
}

case "${1:-}" in
prepare)
    rm -rf .whl && mkdir -p .whl/redis/lib
    SAM2_BUILD_CUDA=0 .venv/bin/pip wheel --quiet --no-deps --no-build-isolation -w .whl sam2==1.1.0
    # sdists only on PyPI; pure Python
    .venv/bin/pip wheel --quiet --no-deps -w .whl antlr4-python3-runtime==4.9.3 iopath==0.1.10
    .venv/bin/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux2014_x86_64 -d .whl \
        hydra-core==1.3.2 omegaconf==2.3.0 redis==5.2.1 nuclio-sdk==0.6.3
    # redis-server and the libraries it links beyond glibc's, behind a wrapper that points the
    # loader at them (the GPU machine's Python keeps its own libssl)
    server=$(readlink -f "$(command -v redis-server)")
    cp "$server" .whl/redis/redis-server.bin
    ldd "$server" | awk '$3 ~ /^\// {print $3}' \
        | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' \
        | xargs -I{} cp -L {} .whl/redis/lib/
    # shellcheck disable=SC2016  # the wrapper's own expansions, made when it runs
    printf '#!/bin/sh\nhere=$(dirname "$(readlink -f "$0")")\nLD_LIBRARY_PATH="$here/lib" exec "$here/redis-server.bin" "$@"\n' \
        > .whl/redis/redis-server
    chmod +x .whl/redis/redis-server
    ls .whl .whl/redis/lib
    ;;
run)
    install
    python3 -m pytest -q -s -p no:cacheprovider tests/test_cuda.py
    ;;
bench)
    install
    shift
    out=${OUT:-bench/results/gpu}
    # sam2's progress bars would fill the output's tail, which the device tool brings back
    TQDM_DISABLE=1 python3 -m bench.gpu_bench --out "$out" --budget-s 300 "$@"
    python3 -m bench.gpu_report "$out" --print
    ;;
*)
    echo "usage: $0 prepare|run|bench [bench/gpu_bench.py's arguments]" >&2
    exit 2
    ;;
esac
