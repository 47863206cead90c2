#!/bin/sh
# Inside deploy/Dockerfile.tensorrt: export MODEL (a zoo name or a pruned artifact) to ONNX and
# a TensorRT fp16 engine, check the engine against onnxruntime, and benchmark it with foadx's
# trt backend and with trtexec, into one foadx latency report.
#   sh deploy/container_pipeline.sh MODEL OUT_DIR
set -eu
model="$1"
out="${2:-/out}"
mkdir -p "$out"
foadx export "$model" --out "$out/model.onnx" --trt --precision fp16 \
    --min-batch 1 --opt-batch 32 --max-batch 256 --timing-cache "$out/timing.cache" \
    --report "$out/parity.json"
foadx bench "$out/model.engine" --backend trt --batch 1,32,256 --report "$out/latency-trt.json" \
    --markdown "$out/latency-trt.md"
foadx bench "$out/model.onnx" --backend trtexec --precision fp16 --batch 1,32,256 \
    --report "$out/latency-trtexec.json" --markdown "$out/latency-trtexec.md"
echo "reports in $out: parity.json latency-trt.md latency-trtexec.md"
