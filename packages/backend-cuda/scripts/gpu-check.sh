#!/usr/bin/env bash
# Runs the CUDA backend's GPU tests and the CUDA bench rows on a machine with an NVIDIA GPU that
# has no Node: give it a Node 20 tarball (node-v20.*-linux-x64.tar.xz) and run it from a checkout
# whose node_modules were installed (pnpm install) on a machine of the same platform.
#
#   bash packages/backend-cuda/scripts/gpu-check.sh /path/to/node-v20.x-linux-x64.tar.xz [timeout-seconds]
#
# Writes its logs and the bench JSON to ${OUT:-./gpu-check-out}. Exit status: that of the tests.
set -uo pipefail
tarball="${1:?usage: gpu-check.sh NODE_TARBALL [TIMEOUT_S]}"
limit="${2:-480}"
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="${OUT:-$root/gpu-check-out}"
mkdir -p "$out"
work="$(mktemp -d)"
tar -xf "$tarball" -C "$work"
export PATH="$(echo "$work"/node-*/bin):$PATH"
cd "$root"
{
  node --version
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo 'nvidia-smi not found'
} | tee "$out/machine.txt"
# The GPU tests: conformance against the CPU oracle, training parity, memory flat, device Philox.
timeout "$((limit * 2 / 3))" node node_modules/vitest/vitest.mjs run --project node \
  packages/backend-cuda/src/gpu.test.ts packages/backend-cuda/src/host.test.ts \
  --reporter=verbose 2>&1 | tee "$out/tests.log"
status=${PIPESTATUS[0]}
# The bench: every registered backend, CUDA among them (GEMM GFLOP/s beside cuBLAS's own, Standard
# and TopK steps at d 768, F 24576, batch 4096). --no-numpy: the GPU machine may have no Python.
if [ -f apps/cli/dist/main.js ]; then
  timeout "$((limit / 3))" node apps/cli/dist/main.js bench --no-numpy --json "$out/bench.json" 2>&1 | tee "$out/bench.log"
else
  echo 'apps/cli/dist/main.js missing: run pnpm build before copying the checkout' | tee "$out/bench.log"
fi
rm -rf "$work"
exit "$status"
