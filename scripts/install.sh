#!/usr/bin/env bash
# Creates .venv in the repository root with atts and what it needs, on top of the extras
# declared in pyproject.toml (distribution atts-runtime). Idempotent: a second run on an
# installed tree checks a stamp and an import and returns in seconds.
#
#   scripts/install.sh            a machine that runs SGLang servers, with atts[report,test]
#     CUDA: checks the machine first (Python >= 3.11, glibc >= 2.34, NVIDIA driver R580+
#           for CUDA 13, nvcc 13 for FlashInfer's first-use compilation), then
#           `pip install -e .[server,report,test]` constrained by requirements-lock-cuda.txt;
#           sglang==0.5.23's own pin chooses torch.
#     CPU:  torch 2.13.0+cpu, sglang installed --no-deps with its dependencies minus the
#           CUDA-only ones (third_party/sglang-cpu-deps.txt), our sgl_kernel CPU shim and
#           torchvision import stub (third_party/), then .[report,test] and the rest of the
#           server extra, everything constrained by requirements-lock-cpu.txt.
#   scripts/install.sh --client   only the orchestrator, for machines that run atts against
#                                 remote servers: atts[report], no torch, no sglang
#   scripts/install.sh --check    only the machine checks: one line per failure, exit 2
#   scripts/install.sh --inputs-hash   the hash that the up-to-date stamp compares
#
# Output: one line per phase; pip's full output goes to $ATTS_VENV/install.log, and its
# last lines are printed when a phase fails. A failed check exits 2, a failed phase 1.
#
# Environment: ATTS_VENV (default .venv), ATTS_DEVICE=cpu|cuda (default: cuda when
#              nvidia-smi is on PATH), PYTHON (default python3), ATTS_TORCH_CPU_INDEX
#              (PyTorch's CPU wheel index, used when torch==2.13.0+cpu is not already
#              reachable from pip's indexes), ATTS_SKIP_CHECKS=1 (install without the checks),
#              CUDA_HOME (where nvcc is, when it is not on PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATTS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
SGLANG_VERSION="0.5.23"            # = pyproject.toml's server extra (test_packaging checks)
TORCH_CPU_VERSION="2.13.0"         # the CPU wheel that SGLang's CPU path was proven with
TORCH_CPU_INDEX="${ATTS_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
CUDA_DEFAULT_HOME="${ATTS_CUDA_DEFAULT_HOME:-/usr/local/cuda}"  # where FlashInfer also looks
IMAGE="lmsysorg/sglang:v$SGLANG_VERSION"  # SGLang's container image: CUDA 13 toolkit inside
# What sglang 0.5.23's wheels need (see README, "GPU prerequisites"):
MIN_PYTHON="3.11"   # cp311 wheels only
MIN_GLIBC="2.34"    # manylinux_2_34 wheels only
MIN_DRIVER="580"    # torch 2.14.1 from PyPI is a CUDA 13.0 build: driver R580 or later
MIN_NVCC="13.0"     # FlashInfer compiles its kernels on first use with the CUDA 13 toolkit

usage() { sed -n '6,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

MODE=server
ACTION=install
for arg in "$@"; do
  case "$arg" in
    --client) MODE=client ;;
    --check) ACTION=check ;;
    --inputs-hash) ACTION=inputs-hash ;;  # print the up-to-date stamp's hash (tests, debugging)
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [[ "$MODE" == client ]]; then
  TARGET=client
else
  if [[ -z "${ATTS_DEVICE:-}" ]]; then
    # nvidia-smi present means a GPU machine, even when it fails: the driver check says why.
    if command -v nvidia-smi >/dev/null 2>&1; then ATTS_DEVICE=cuda; else ATTS_DEVICE=cpu; fi
  fi
  case "$ATTS_DEVICE" in
    cpu|cuda) TARGET="$ATTS_DEVICE" ;;
    *) echo "install.sh: ATTS_DEVICE=$ATTS_DEVICE: use cpu or cuda" >&2; exit 2 ;;
  esac
fi

# ---- machine checks: each failure is one line with its fix -------------------------------
version_ge() {  # version_ge A B: A >= B, compared field by field as numbers
  [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" == "$2" ]]
}

FAILED=0
FOUND=()
fail() { echo "install.sh: $1" >&2; FAILED=1; }

check_python() {
  local py="$PYTHON" where="PYTHON=$PYTHON" fix v
  fix="install Python $MIN_PYTHON or later and rerun with PYTHON=python$MIN_PYTHON"
  if [[ -x "$VENV/bin/python" ]]; then
    py="$VENV/bin/python"; where="the venv $VENV"; fix="remove $VENV and rerun with PYTHON=python$MIN_PYTHON"
  fi
  if ! v="$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" || [[ -z "$v" ]]; then
    fail "no working Python at $where: $fix"
    return
  fi
  if version_ge "$v" "$MIN_PYTHON"; then FOUND+=("Python $v"); return; fi
  fail "Python $v ($where) is too old: atts and sglang $SGLANG_VERSION need Python >= $MIN_PYTHON (pip finds no sglang $SGLANG_VERSION for $v): $fix"
}

check_glibc() {
  local v
  v="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')" || v=""
  if [[ -z "$v" ]]; then
    fail "no glibc found (getconf GNU_LIBC_VERSION): sglang $SGLANG_VERSION ships manylinux_2_34 wheels only, which need glibc >= $MIN_GLIBC: use a glibc distribution (Ubuntu 22.04+, Debian 12+, RHEL 9+) or SGLang's container image $IMAGE"
  elif version_ge "$v" "$MIN_GLIBC"; then
    FOUND+=("glibc $v")
  else
    fail "glibc $v is too old: sglang $SGLANG_VERSION ships manylinux_2_34 wheels only, which need glibc >= $MIN_GLIBC: upgrade the OS (Ubuntu 22.04+, Debian 12+, RHEL 9+) or use SGLang's container image $IMAGE"
  fi
}

check_driver() {
  local v
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    fail "no NVIDIA driver (nvidia-smi not on PATH): install driver R$MIN_DRIVER or later (CUDA 13), or install for CPU with ATTS_DEVICE=cpu, or only the orchestrator with --client"
    return
  fi
  v="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')" || v=""
  if [[ -z "$v" ]]; then
    fail "nvidia-smi sees no GPU or driver (nvidia-smi --query-gpu=driver_version failed): load NVIDIA driver R$MIN_DRIVER or later and check that nvidia-smi lists the GPUs"
  elif version_ge "$v" "$MIN_DRIVER"; then
    FOUND+=("driver $v")
  else
    fail "NVIDIA driver $v is too old: torch 2.14.1 (sglang $SGLANG_VERSION's pin) is a CUDA 13 build, which needs driver R$MIN_DRIVER or later: upgrade the driver"
  fi
}

check_nvcc() {
  local nvcc v
  nvcc="$(command -v nvcc 2>/dev/null)" || nvcc=""
  [[ -z "$nvcc" && -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/nvcc" ]] && nvcc="$CUDA_HOME/bin/nvcc"
  [[ -z "$nvcc" && -x "$CUDA_DEFAULT_HOME/bin/nvcc" ]] && nvcc="$CUDA_DEFAULT_HOME/bin/nvcc"
  if [[ -z "$nvcc" ]]; then
    fail "nvcc not found (PATH, \$CUDA_HOME/bin, $CUDA_DEFAULT_HOME/bin): FlashInfer compiles its kernels on first use: install the CUDA $MIN_NVCC toolkit and export CUDA_HOME=/usr/local/cuda-13.0, or use SGLang's container image $IMAGE"
    return
  fi
  v="$("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\).*/\1/p' | head -n 1)" || v=""
  if [[ -n "$v" ]] && version_ge "$v" "$MIN_NVCC"; then
    FOUND+=("nvcc $v")
  else
    fail "nvcc ${v:-of unknown version} at $nvcc is older than CUDA $MIN_NVCC, torch 2.14.1's CUDA, which FlashInfer compiles against on first use: install the CUDA $MIN_NVCC toolkit and export CUDA_HOME=/usr/local/cuda-13.0, or use SGLang's container image $IMAGE"
  fi
}

run_checks() {
  check_python
  if [[ "$TARGET" != client ]]; then check_glibc; fi
  if [[ "$TARGET" == cuda ]]; then check_driver; check_nvcc; fi
  if [[ "$FAILED" != 0 ]]; then
    echo "install.sh: this machine is not ready for the $TARGET install (nothing was installed; ATTS_SKIP_CHECKS=1 installs anyway)" >&2
    exit 2
  fi
  local found
  found="$(printf '%s, ' "${FOUND[@]}")"
  echo "install.sh: checks passed ($TARGET): ${found%, }"
}

if [[ "$ACTION" == check ]]; then run_checks; exit 0; fi

# ---- up to date? ---------------------------------------------------------------------------
inputs_hash() {  # source files only: build output under third_party/*/build never counts
  (cd "$ROOT" && {
     cat scripts/install.sh pyproject.toml requirements-lock-cpu.txt requirements-lock-cuda.txt \
       third_party/sglang-cpu-deps.txt 2>/dev/null || true
     find third_party -path '*/build' -prune -o -type f \( -name '*.py' -o -name pyproject.toml \) -print0 \
       | LC_ALL=C sort -z | xargs -0 cat
     echo "$TARGET"
   }) | sha256sum | cut -d' ' -f1
}
case "$TARGET" in
  client) PROBE="import atts" ;;
  cpu) PROBE="import atts, sglang, torch" ;;
  cuda) PROBE="import atts, sglang, sgl_kernel, flashinfer, torch; assert torch.cuda.is_available(), 'torch sees no GPU'" ;;
esac
STAMP="$VENV/.atts-install-stamp"
WANT="$(inputs_hash)"
if [[ "$ACTION" == inputs-hash ]]; then echo "$WANT"; exit 0; fi
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VENV/bin/python" -c "$PROBE" 2>/dev/null; then
  echo "install.sh: $VENV is up to date ($TARGET)"
  exit 0
fi

if [[ "${ATTS_SKIP_CHECKS:-0}" == 1 ]]; then echo "install.sh: checks skipped (ATTS_SKIP_CHECKS=1)"; else run_checks; fi

# ---- install, one line per phase -----------------------------------------------------------
mkdir -p "$VENV"
LOG="$VENV/install.log"
: > "$LOG"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
echo "install.sh: installing into $VENV for $TARGET (full log: $LOG)"

phase() {  # phase LABEL COMMAND...: run it into the log; on failure show the log's tail
  local label="$1" t0=$SECONDS
  shift
  printf 'install.sh: %s ... ' "$label"
  printf '\n==> %s\n' "$label" >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
  else
    echo "FAILED"
    echo "install.sh: $label failed; the last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}

VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check)

make_venv() {
  if [[ ! -x "$VPY" ]]; then "$PYTHON" -m venv "$VENV" || return 1; fi
  # The distribution was called `atts` before atts-runtime: a venv made then holds both.
  if "$VPY" -c 'import importlib.metadata as md; md.distribution("atts")' 2>/dev/null; then
    "${PIP[@]}" uninstall -y atts || return 1
  fi
  "${PIP[@]}" install --upgrade "pip>=24" "setuptools>=77" wheel
}

server_extra_rest() {  # pyproject's server extra without sglang itself (installed its own way on CPU)
  "$VPY" -c 'import sys, tomllib
for r in tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["server"]:
    if not r.replace(" ", "").startswith("sglang=="):
        print(r)' "$ROOT/pyproject.toml"
}

cpu_torch() {  # a local or mirrored 2.13.0+cpu wheel when pip can see one, else PyTorch's CPU index
  if "$VPY" -c "import torch, sys; sys.exit(torch.__version__ != '$TORCH_CPU_VERSION+cpu')" 2>/dev/null; then
    echo "torch $TORCH_CPU_VERSION+cpu already installed"
    return 0
  fi
  "${PIP[@]}" install "torch==$TORCH_CPU_VERSION+cpu" \
    || "${PIP[@]}" install "torch==$TORCH_CPU_VERSION+cpu" --index-url "$TORCH_CPU_INDEX"
}

cpu_sglang_deps() {
  # The stubs go in first, so that timm's `torchvision` requirement is met by the stub and
  # pip never fetches the CUDA torchvision wheel. Built from a copy: no build/ in the tree.
  cp -r "$ROOT/third_party/sgl_kernel_cpu" "$ROOT/third_party/torchvision_stub" "$STAGE/" \
    && rm -rf "$STAGE/sgl_kernel_cpu/build" "$STAGE/torchvision_stub/build" \
    && "${PIP[@]}" install --no-deps --no-build-isolation "$STAGE/sgl_kernel_cpu" "$STAGE/torchvision_stub" \
    && "${PIP[@]}" install -c "$ROOT/requirements-lock-cpu.txt" \
         -r "$ROOT/third_party/sglang-cpu-deps.txt" "torch==$TORCH_CPU_VERSION+cpu"
}

cpu_atts() {
  local out rest=()
  out="$(server_extra_rest)" || return 1
  [[ -n "$out" ]] && mapfile -t rest <<< "$out"
  "${PIP[@]}" install -c "$ROOT/requirements-lock-cpu.txt" --no-build-isolation \
    -e "${ROOT}[report,test]" "${rest[@]}" "torch==$TORCH_CPU_VERSION+cpu"
}

phase "Python venv, pip and setuptools" make_venv
case "$TARGET" in
  client)
    phase "atts[report] (orchestrator only: no torch, no sglang)" \
      "${PIP[@]}" install -c "$ROOT/requirements-lock-cpu.txt" --no-build-isolation -e "${ROOT}[report]"
    ;;
  cuda)
    phase "sglang $SGLANG_VERSION, its torch and atts[server,report,test] (CUDA, locked)" \
      "${PIP[@]}" install -c "$ROOT/requirements-lock-cuda.txt" --no-build-isolation -e "${ROOT}[server,report,test]"
    ;;
  cpu)
    phase "torch $TORCH_CPU_VERSION+cpu" cpu_torch
    phase "sglang's CPU dependencies and our third_party shims" cpu_sglang_deps
    phase "sglang $SGLANG_VERSION (--no-deps)" "${PIP[@]}" install --no-deps "sglang==$SGLANG_VERSION"
    phase "atts[report,test] and the rest of the server extra" cpu_atts
    ;;
esac
phase "import check ($PROBE)" "$VPY" -c "$PROBE"

"$VPY" - <<'EOF'
import importlib.metadata as md
found = []
for dist in ("atts-runtime", "torch", "sglang"):
    try:
        found.append(f"{dist} {md.version(dist)}")
    except md.PackageNotFoundError:
        pass
print("install.sh: ok:", ", ".join(found))
EOF
echo "$WANT" > "$STAMP"
