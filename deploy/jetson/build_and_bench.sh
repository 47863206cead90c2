#!/bin/sh
# On a Jetson (JetPack ships TensorRT and trtexec): build the engine on the device from an ONNX
# file that `foadx export` wrote elsewhere, time it with trtexec, and turn the log into a foadx
# latency report. foadx itself is optional on the device: without it the script keeps the log,
# and `foadx bench --trtexec-log LOG --batch N` on any machine makes the report.
#   sh deploy/jetson/build_and_bench.sh model.onnx [BATCH] [fp16|int8|fp32] [OUT_DIR]
# int8 wants the Q/DQ file from `foadx export --precision int8` (model.int8.onnx).
set -eu
onnx="$1"
batch="${2:-1}"
precision="${3:-fp16}"
out="${4:-foadx-jetson}"
trtexec="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"
[ -x "$trtexec" ] || { echo "trtexec not found: install JetPack's TensorRT or set TRTEXEC" >&2; exit 6; }
mkdir -p "$out"
name="$(basename "$onnx" .onnx)"
input="${INPUT_NAME:-input}"
shape="$(python3 -c "import onnx,sys; d=[x.dim_value for x in onnx.load(sys.argv[1], load_external_data=False).graph.input[0].type.tensor_type.shape.dim]; print('x'.join(map(str,d[1:])))" "$onnx" 2>/dev/null || echo 3x112x112)"
flags=""
[ "$precision" = "fp16" ] && flags="--fp16"
[ "$precision" = "int8" ] && flags="--int8 --fp16"
# jetson_clocks pins the clocks so that runs are comparable (needs sudo; skipped when absent).
command -v jetson_clocks >/dev/null 2>&1 && sudo -n jetson_clocks 2>/dev/null || true
"$trtexec" --onnx="$onnx" --minShapes="$input:${batch}x$shape" --optShapes="$input:${batch}x$shape" \
    --maxShapes="$input:${batch}x$shape" $flags --saveEngine="$out/$name.engine" \
    --warmUp=500 --duration=10 --useCudaGraph --shapes="$input:${batch}x$shape" | tee "$out/$name-trtexec.log"
if command -v foadx >/dev/null 2>&1; then
    foadx bench --trtexec-log "$out/$name-trtexec.log" --label "$name-jetson" --batch "$batch" \
        --precision "$precision" --report "$out/$name-latency.json" --markdown "$out/$name-latency.md"
else
    echo "foadx not installed here: copy $out/$name-trtexec.log and run" \
         "foadx bench --trtexec-log $name-trtexec.log --batch $batch --precision $precision --report latency.json"
fi
