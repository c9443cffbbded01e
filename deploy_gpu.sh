#!/usr/bin/env bash
# Deploy the SAM2 tracker to the Nuclio of a CVAT installation on Docker (GPU build, function-gpu.yaml).
#   ./deploy_gpu.sh [path/to/function]        (default: this repository)
# Same environment as deploy_cpu.sh: CVAT_FUNCTIONS_REDIS_HOST [cvat_redis_ondisk],
# CVAT_FUNCTIONS_REDIS_PORT [6666], CVAT_FUNCTIONS_REDIS_PASSWORD, CVAT_FUNCTIONS_REDIS_CLUSTER,
# CVAT_NETWORK [cvat_cvat].
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FUNCTION_FILE=function-gpu.yaml exec "$here/deploy_cpu.sh" "$@"
