#!/bin/sh
# The GPU check from a plain checkout, without `make install` (docs/gpu.md): installs the wheels in
# .whl/ (`make gpu-wheels`: the packages foadx needs that the machine lacks) into a scratch folder
# beside the machine's own torch, puts that folder and the checkout on PYTHONPATH (foadx from the
# checkout; foadx_cli, which lives in cli/, through a link in the scratch folder), then runs
# scripts/gpu_check.py. Usage: scripts/gpu_check.sh OUT [gpu_check.py options]
# PYTHON (default python3) is the interpreter; SITE (default /tmp/foadx-site) the scratch folder.
set -eu
out=${1:?usage: scripts/gpu_check.sh OUT [options]}
shift
python=${PYTHON:-python3}
site=${SITE:-/tmp/foadx-site}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$site"
if ! ls "$here"/.whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check.sh: no wheels in .whl/ (make gpu-wheels); using what $python has" >&2
elif ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    echo "gpu_check.sh: the wheels in .whl/ are for Python 3.12, $python is not: using what it has" >&2
else
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$here"/.whl/*.whl
fi
ln -sfn "$here/cli" "$site/foadx_cli"
export PYTHONPATH="$site:$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
exec "$python" "$here/scripts/gpu_check.py" --out "$out" "$@"
