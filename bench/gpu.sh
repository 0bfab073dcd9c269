#!/usr/bin/env bash
# Every figure of the paper's configuration on one GPU, in one command (docs/benchmarks.md says how to bring
# the dependencies to a machine without network):
#     bash bench/gpu.sh OUTDIR --quick   # a CUDA machine, about 8 minutes with the GPU tests
#     bash bench/gpu.sh OUTDIR           # the same at full size
#     bash bench/gpu.sh OUTDIR --cpu     # the same steps, tiny, on CPU (tests/test_bench.py runs it)
# Where the project is not installed, WHEELS=DIR names a folder of the wheels it lacks (hydra-core, omegaconf,
# antlr4-python3-runtime, simplejpeg, pydantic's): they are installed into a folder of their own first.
# Writes OUTDIR/results.json and results.txt (bench/gpu.py), profile_trace.json and profile_top40.txt,
# nvidia-smi.txt, end_to_end.log and gpu_tests.txt.
set -uo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash bench/gpu.sh OUTDIR [--quick|--cpu]" >&2
    exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
shift
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
export WANDB_MODE=offline
if [ -n "${WHEELS:-}" ]; then
    "$python" -m pip install -q --no-index --no-deps --target "$out/site" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$out/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # where the project is not pip-installed
{ nvidia-smi 2>&1 || echo "no nvidia-smi here"; } > "$out/nvidia-smi.txt"
"$python" bench/gpu.py "$out" "$@"
figures=$?
# The GPU tests (every test marked gpu): on CPU they are reported as skipped, never as passed. addopts is
# cleared so that no pytest-xdist is needed on the GPU machine.
"$python" -m pytest -o addopts="" -ra -p no:cacheprovider -m gpu tests/ > "$out/gpu_tests.txt" 2>&1
tests=$?
tail -n 3 "$out/gpu_tests.txt"
if [ "$figures" -ne 0 ] || [ "$tests" -ne 0 ]; then
    echo "error: bench/gpu.py exited $figures, the GPU tests $tests (see $out)" >&2
    exit 1
fi
