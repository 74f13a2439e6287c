#!/usr/bin/env bash
# One prepared check of rtseg on a GPU: the `cuda`-marked tests and the engine bench (rtseg's
# StreamingPredictor against sam2's SAM2VideoPredictor), results as JSON and a log.
#
# On the GPU machine (no network; ../shared/bin/device-wheels prepared .device-wheels/ here):
#   carry [".device-wheels"], command: bash tools/gpu_check.sh
# Here, a quick end-to-end dry run on the CPU with tiny settings:
#   PYTHON=.venv/bin/python bash tools/gpu_check.sh --device cpu --out /tmp/gpu-check
#
# Writes into the output folder (--out, default $OUT): gpu_check.json (settings, environment,
# every step's exit status and seconds, test counts, bench results; tools/gpu_check_report.py),
# gpu_check.log (everything printed), cuda-tests.xml (JUnit), bench-<model>-<objects>.json per
# bench run (each written as soon as it ends, so a run cut by the budget loses only itself) and
# sam2_ext.log when sam2's extension was built. Exit status 1 when a step failed, 2 on bad arguments.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: tools/gpu_check.sh [options]
  --device cuda|cpu        where to run (default: cuda; cpu is a dry run with tiny defaults)
  --out DIR                output folder (default: $OUT, else ./gpu-check-out)
  --models LIST            bench models (default: sam2.1_hiera_t,sam2.1_hiera_l)
  --objects LIST           bench object counts (default: 1,4; cpu: 1)
  --cameras LIST           bench camera counts, each run of every object count (default: 1)
  --compile MODE           rtseg's step in the bench: off, default or graphs (CUDA graphs) (default: off)
  --frames N               bench frames per run (default: 300; cpu: 4)
  --warmup N               bench warm-up frames (default: 10; cpu: 1)
  --source-size WxH        synthetic source size (default: 1920x1080; cpu: 320x240)
  --image-size N           model input size (default: the model's 1024; cpu: 256)
  --install auto|yes|no    source .device-wheels/install.sh (auto: when rtseg's dependencies are missing)
  --no-tests               skip the cuda-marked tests
  --no-bench               skip the bench
  --budget S               seconds for the whole check; a step gets what is left (default: 450; cpu: 1800)
  --plan                   print the resolved settings as JSON and exit
  -h, --help               this text
USAGE
}

die() {
  echo "gpu_check: $*" >&2
  echo "run tools/gpu_check.sh --help for the options" >&2
  exit 2
}

need_value() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value"; }

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

device=cuda out=${OUT:-gpu-check-out} models=sam2.1_hiera_t,sam2.1_hiera_l
objects="" frames="" warmup="" source_size="" image_size="" budget="" cameras=1 compile=off
install=auto run_tests=1 run_bench=1 plan=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) need_value "$@"; device=$2; shift 2 ;;
    --out) need_value "$@"; out=$2; shift 2 ;;
    --models) need_value "$@"; models=$2; shift 2 ;;
    --objects) need_value "$@"; objects=$2; shift 2 ;;
    --cameras) need_value "$@"; cameras=$2; shift 2 ;;
    --compile) need_value "$@"; compile=$2; shift 2 ;;
    --frames) need_value "$@"; frames=$2; shift 2 ;;
    --warmup) need_value "$@"; warmup=$2; shift 2 ;;
    --source-size) need_value "$@"; source_size=$2; shift 2 ;;
    --image-size) need_value "$@"; image_size=$2; shift 2 ;;
    --install) need_value "$@"; install=$2; shift 2 ;;
    --budget) need_value "$@"; budget=$2; shift 2 ;;
    --no-tests) run_tests=0; shift ;;
    --no-bench) run_bench=0; shift ;;
    --plan) plan=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

case $device in
  cuda) : "${objects:=1,4}" "${frames:=300}" "${warmup:=10}" "${source_size:=1920x1080}" "${budget:=450}" ;;
  cpu) : "${objects:=1}" "${frames:=4}" "${warmup:=1}" "${source_size:=320x240}" "${image_size:=256}" "${budget:=1800}" ;;
  *) die "--device must be cuda or cpu, got '$device'" ;;
esac
[[ $objects =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--objects must be counts like 1,4, got '$objects'"
[[ $cameras =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--cameras must be counts like 1,4, got '$cameras'"
case $compile in off|default|graphs) ;; *) die "--compile must be off, default or graphs, got '$compile'" ;; esac
[[ $models =~ ^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$ ]] || die "--models must be names like sam2.1_hiera_t, got '$models'"
is_count "$frames" || die "--frames must be a positive integer, got '$frames'"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup must be an integer >= 0, got '$warmup'"
((frames >= warmup + 2)) || die "--frames $frames leaves no timed frame after --warmup $warmup"
[[ $source_size =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || die "--source-size must be WIDTHxHEIGHT, got '$source_size'"
[[ -z $image_size ]] || is_count "$image_size" || die "--image-size must be a positive integer, got '$image_size'"
is_count "$budget" || die "--budget must be a positive number of seconds, got '$budget'"
case $install in auto|yes|no) ;; *) die "--install must be auto, yes or no, got '$install'" ;; esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-python3}
cuda_tests=(tests/engine tests/pipeline/test_segmenter_device.py)

settings_json() {
  "$py" - "$device" "$out" "$models" "$objects" "$frames" "$warmup" "$source_size" "$image_size" \
    "$install" "$run_tests" "$run_bench" "$budget" "$cameras" "$compile" <<'PY'
import json, sys
keys = ("device", "out", "models", "objects", "frames", "warmup", "source_size", "image_size",
        "install", "tests", "bench", "budget_s", "cameras", "compile")
v = dict(zip(keys, sys.argv[1:]))
v["models"] = v["models"].split(",")
v["objects"] = [int(x) for x in v["objects"].split(",")]
v["cameras"] = [int(x) for x in v["cameras"].split(",")]
for k in ("frames", "warmup", "budget_s"):
    v[k] = int(v[k])
v["image_size"] = int(v["image_size"]) if v["image_size"] else None
v["tests"], v["bench"] = v["tests"] == "1", v["bench"] == "1"
print(json.dumps(v, indent=2))
PY
}

if ((plan)); then
  settings_json
  exit 0
fi

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
deadline_ms=$(($(now_ms) + budget * 1000))
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/steps.tsv"
exec > >(tee -a "$out/gpu_check.log") 2>&1
tee_pid=$!
export PYTHONUNBUFFERED=1
settings_json >"$work/settings.json"
echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(tr -d '\n' <"$work/settings.json")"

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$(awk -v ms="$3" 'BEGIN { printf "%.3f", ms / 1000 }')" >>"$work/steps.tsv"; }

# step NAME CMD...: run CMD in what is left of the budget; record its exit status and seconds
step() {
  local name=$1 start left rc
  shift
  start=$(now_ms)
  left=$(((deadline_ms - start) / 1000))
  if ((left < 10)); then
    echo "=== $name: skipped, the budget of ${budget} s is spent"
    record "$name" 124 0
    return
  fi
  echo "=== $name ($left s left): $*"
  set +e
  timeout --kill-after=10 "$left" "$@"
  rc=$?
  set -e
  record "$name" "$rc" $(($(now_ms) - start))
  echo "=== $name: exit $rc"
}

have_deps() { "$py" -c "import sam2, zmq, pydantic, rtseg" 2>/dev/null; }
if [[ $install == yes ]] || { [[ $install == auto ]] && ! have_deps; }; then
  [[ -f .device-wheels/install.sh ]] || { echo "gpu_check: .device-wheels/install.sh missing: run ../shared/bin/device-wheels here first"; exit 1; }
  if [[ $device == cuda ]]; then export RTSEG_DEVICE_BUILD_EXT=${RTSEG_DEVICE_BUILD_EXT:-1}; fi
  start=$(now_ms)
  # shellcheck source=/dev/null
  source .device-wheels/install.sh
  record install 0 $(($(now_ms) - start))
  if [[ -f /tmp/sam2_ext.log ]]; then cp /tmp/sam2_ext.log "$out/"; fi
fi

step environment "$py" - "$work/environment.json" <<'PY'
import dataclasses, json, platform, sys
import torch
from rtseg.engine import holes
from rtseg.engine.build import CudaProbe

probe = CudaProbe.read()
env = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
       "probe": dataclasses.asdict(probe), "unusable_reason": probe.reason() or None,
       "gpus": [{"index": i, "name": torch.cuda.get_device_name(i),
                 "capability": list(torch.cuda.get_device_capability(i))} for i in range(probe.device_count)],
       "hole_filling": {"cuda": holes.backend(torch.device("cuda")), "cpu": holes.backend(torch.device("cpu"))}}
print(json.dumps(env, indent=2))
open(sys.argv[1], "w").write(json.dumps(env))
PY

if ((run_tests)); then
  # the folders holding the cuda tests: the rest of the suite imports packages the GPU machine lacks
  step cuda-tests "$py" -m pytest -m cuda "${cuda_tests[@]}" -q -p no:cacheprovider --junitxml "$out/cuda-tests.xml"
fi

if ((run_bench)); then
  IFS=, read -r -a model_list <<<"$models"
  IFS=, read -r -a object_counts <<<"$objects"
  for m in "${model_list[@]}"; do
    for n in "${object_counts[@]}"; do
      args=(--device "$device" --models "$m" --objects "$n" --cameras "$cameras" --compile "$compile"
            --frames "$frames" --warmup "$warmup" --source-size "$source_size" --json "$out/bench-$m-$n.json")
      if [[ -n $image_size ]]; then args+=(--image-size "$image_size"); fi
      step "bench-$m-$n" "$py" -m rtseg.cli bench "${args[@]}"
    done
  done
fi

rc=0
"$py" tools/gpu_check_report.py "$work" "$out" || rc=$?
exec >&- 2>&-
wait "$tee_pid" || true  # the log is complete when the script ends
exit "$rc"
