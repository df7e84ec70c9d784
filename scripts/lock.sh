#!/usr/bin/env bash
# Regenerate requirements-lock-cpu.txt from the current .venv (after changing requirements).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
{ echo "# Exact versions CI tested on CPU machines (pip freeze of .venv made by scripts/install.sh),"
  echo "# applied as constraints by scripts/install.sh. torch, sglang and our third_party shims are"
  echo "# pinned by install.sh itself. Regenerate: scripts/lock.sh"
  "$ROOT/.venv/bin/python" -m pip freeze --exclude-editable \
    | grep -v -E "^(atts|sgl-kernel|sgl_kernel|torchvision|torch|sglang)(==| @)"; } > "$ROOT/requirements-lock-cpu.txt"
