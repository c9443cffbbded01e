#!/usr/bin/env bash
# Deploy the SAM2 tracker to the Nuclio of a CVAT installation on Docker (GPU build, function-gpu.yaml).
#   ./deploy_gpu.sh [path/to/function]        (default: this repository)
# Run it on the Docker host with the GPUs: it reads the NVIDIA driver and the GPUs with nvidia-smi and
# builds torch for the CUDA that driver runs (torch 2.13.0 publishes cu126, cu130 and cu132):
#   driver 580 or newer   cu130  CUDA 13.0, Turing to Blackwell (cu126 where a GPU is older than Turing)
#   driver 525 to 579     cu126  CUDA 12.6, Maxwell to Hopper (Blackwell needs driver 580)
# Environment, besides deploy_cpu.sh's (CVAT_FUNCTIONS_REDIS_*, CVAT_NETWORK):
#   SAM2_TORCH_CUDA [from the driver]  cu130 or cu126: the build, for a Docker host that is not this machine
#   SAM2_WORKERS [the GPU count, else 1]  Nuclio workers (maxWorkers); worker i runs on GPU i mod the count
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
function_dir=$(cd "${1:-$here}" && pwd)
function_file="$function_dir/function-gpu.yaml"

fail() {
    echo "error: $*" >&2
    exit 1
}

[ -f "$function_file" ] || fail "$function_file not found: pass the folder of the function (the one with main.py)"

# "<driver>, <compute capability>" per GPU; older nvidia-smi knows no compute_cap
gpus=""
if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi --query-gpu=driver_version,compute_cap --format=csv,noheader 2>/dev/null) \
        || gpus=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null) \
        || gpus=""
fi

build_for_host() {
    local driver major caps oldest newest
    driver=$(head -n 1 <<< "$gpus" | cut -d, -f1 | tr -d ' ')
    major=${driver%%.*}
    [[ $major =~ ^[0-9]+$ ]] || fail "nvidia-smi reported no driver version ('$driver')"
    caps=$(cut -s -d, -f2 <<< "$gpus" | tr -d ' ' | grep -E '^[0-9]+\.[0-9]+$' | sort -t. -k1,1n -k2,2n || true)
    oldest=$(head -n 1 <<< "$caps")
    newest=$(tail -n 1 <<< "$caps")
    if [ "$major" -lt 525 ]; then
        fail "NVIDIA driver $driver is older than 525, the oldest that torch 2.13's CUDA builds run on:" \
             "update the host's driver (580 or newer runs every build)"
    fi
    if [ "$major" -lt 580 ]; then
        if [ -n "$newest" ] && [ "${newest%%.*}" -ge 10 ]; then
            fail "a GPU of compute capability $newest (Blackwell) needs torch's CUDA 13.0 build (cu130)," \
                 "which needs NVIDIA driver 580 or newer; this host has $driver: update the driver"
        fi
        echo "cu126"
        return
    fi
    if [ -n "$oldest" ] && [ "$(tr -d . <<< "$oldest")" -lt 75 ]; then
        if [ "${newest%%.*}" -ge 10 ]; then
            fail "no torch 2.13 build runs on both a GPU of compute capability $oldest and one of $newest:" \
                 "deploy on hosts with one kind of GPU"
        fi
        echo "cu126"
        return
    fi
    echo "cu130"
}

if [ -n "${SAM2_TORCH_CUDA:-}" ]; then
    [[ $SAM2_TORCH_CUDA =~ ^cu[0-9]+$ ]] || fail "SAM2_TORCH_CUDA=$SAM2_TORCH_CUDA: expected cu130 or cu126"
    torch_cuda=$SAM2_TORCH_CUDA
elif [ -n "$gpus" ]; then
    torch_cuda=$(build_for_host)
else
    fail "cannot tell which CUDA build of torch fits this host: nvidia-smi is missing or sees no GPU." \
         "Run this script on the Docker host with the GPUs (where nvidia-smi works), or choose the build:" \
         "SAM2_TORCH_CUDA=cu130 (NVIDIA driver 580 or newer) or SAM2_TORCH_CUDA=cu126 (driver 525 or newer)"
fi
gpu_count=$(grep -c . <<< "$gpus" || true)
workers=${SAM2_WORKERS:-$((gpu_count > 0 ? gpu_count : 1))}
[[ $workers =~ ^[1-9][0-9]*$ ]] || fail "SAM2_WORKERS=$workers: expected a positive integer"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
sed -E -e "s#(download\.pytorch\.org/whl/)cu[0-9]+#\1$torch_cuda#" \
       -e "s#^( *maxWorkers:).*#\1 $workers#" "$function_file" > "$build/function-gpu.yaml"
grep -q "whl/$torch_cuda" "$build/function-gpu.yaml" || fail "$function_file has no download.pytorch.org/whl/cu... line"

echo "torch 2.13.0+$torch_cuda for ${gpu_count:-0} GPU(s) seen here, $workers worker(s)"
FUNCTION_FILE="$build/function-gpu.yaml" "$here/deploy_cpu.sh" "$function_dir"
