#!/usr/bin/env bash
# Deploy the SAM2 tracker to the Nuclio of a CVAT installation on Docker (CPU build).
#   ./deploy_cpu.sh [path/to/function]        (default: this repository)
# deploy_gpu.sh runs this with FUNCTION_FILE set to its copy of function-gpu.yaml (absolute, or
# relative to the function's folder).
# Environment (defaults in brackets):
#   CVAT_FUNCTIONS_REDIS_HOST [cvat_redis_ondisk]  where tracking states live (Redis or Kvrocks)
#   CVAT_FUNCTIONS_REDIS_PORT [6666]
#   CVAT_FUNCTIONS_REDIS_PASSWORD [none]           passed on only when set
#   CVAT_FUNCTIONS_REDIS_CLUSTER [none]            1: the host is a node of a Redis Cluster (passed on only when set)
#   CVAT_NETWORK [cvat_cvat]                       Docker network of the CVAT containers
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
function_dir=$(cd "${1:-$here}" && pwd)
function_file=${FUNCTION_FILE:-function.yaml}
[[ $function_file == /* ]] || function_file="$function_dir/$function_file"
redis_host=${CVAT_FUNCTIONS_REDIS_HOST:-cvat_redis_ondisk}
redis_port=${CVAT_FUNCTIONS_REDIS_PORT:-6666}
network=${CVAT_NETWORK:-cvat_cvat}

if ! command -v nuctl >/dev/null 2>&1; then
    echo "error: nuctl is not installed: download the Nuclio CLI release that matches your CVAT" \
         "(https://github.com/nuclio/nuclio/releases), make it executable and put it on PATH as nuctl" >&2
    exit 1
fi
if [ ! -f "$function_file" ]; then
    echo "error: $function_file not found: pass the folder of the function (the one with main.py)" >&2
    exit 1
fi

env_args=(--env "CVAT_FUNCTIONS_REDIS_HOST=$redis_host" --env "CVAT_FUNCTIONS_REDIS_PORT=$redis_port")
if [ -n "${CVAT_FUNCTIONS_REDIS_PASSWORD:-}" ]; then
    env_args+=(--env "CVAT_FUNCTIONS_REDIS_PASSWORD=$CVAT_FUNCTIONS_REDIS_PASSWORD")
fi
if [ -n "${CVAT_FUNCTIONS_REDIS_CLUSTER:-}" ]; then
    env_args+=(--env "CVAT_FUNCTIONS_REDIS_CLUSTER=$CVAT_FUNCTIONS_REDIS_CLUSTER")
fi

nuctl get project cvat --platform local >/dev/null 2>&1 || nuctl create project cvat --platform local

echo "Deploying $(basename "$function_file") from $function_dir (states in $redis_host:$redis_port)"
nuctl deploy --project-name cvat --path "$function_dir" --file "$function_file" --platform local \
    "${env_args[@]}" \
    --platform-config "{\"attributes\": {\"network\": \"$network\"}}"

nuctl get function --platform local
