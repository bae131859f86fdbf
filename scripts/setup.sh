#!/usr/bin/env bash
# Everything deepfpga needs on a fresh Debian 12 / Python 3.11 machine: Debian packages, then
# the package and its tools into .venv at the repo root. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(dataset-fashion-mnist verilator iverilog g++ make)   # g++, make: Verilator builds
missing=()
for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch is pinned to the CPU wheel on this machine's disk; a looser pin pulls a CUDA build.
.venv/bin/pip install -q -e '.[dev]'
