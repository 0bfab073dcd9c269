#!/usr/bin/env bash
# Every figure of the paper's configuration on one GPU, in one command (docs/benchmarks.md says how to bring
# the dependencies to a machine without network):
#     bash bench/gpu.sh OUTDIR          # a CUDA machine, about 10 minutes
#     bash bench/gpu.sh OUTDIR --cpu    # the same steps, tiny, on CPU (CI runs it)
# Writes OUTDIR/results.json and results.txt (bench/gpu.py), nvidia-smi.txt, end_to_end.log, gpu_tests.txt.
set -uo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash bench/gpu.sh OUTDIR [--cpu]" >&2
    exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
shift
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export WANDB_MODE=offline
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # where the project is not pip-installed
{ nvidia-smi 2>&1 || echo "no nvidia-smi here"; } > "$out/nvidia-smi.txt"
"$python" bench/gpu.py "$out" "$@"
figures=$?
# The GPU tests: on CPU they are reported as skipped, never as passed. addopts is cleared so that no
# pytest-xdist is needed on the GPU machine.
"$python" -m pytest -o addopts="" -ra -p no:cacheprovider -m gpu tests/test_gpu.py > "$out/gpu_tests.txt" 2>&1
tests=$?
tail -n 3 "$out/gpu_tests.txt"
if [ "$figures" -ne 0 ] || [ "$tests" -ne 0 ]; then
    echo "error: bench/gpu.py exited $figures, the GPU tests $tests (see $out)" >&2
    exit 1
fi
