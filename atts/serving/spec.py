"""What to launch: one ``ServerSpec`` per server (role, model, device, parallelism, memory,
port), turned into the SGLang command line and environment. Built by the config
(``ModelConfig.server_spec``) and by the testbed; launched by atts.serving.sglang."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
# --sleep-on-idle: an idle scheduler otherwise busy-polls a whole core, and two servers on a
# 2-core machine then starve each other (measured: 64-token requests 30x slower).
CPU_FLAGS = ("--device", "cpu", "--attention-backend", "torch_native", "--disable-cuda-graph", "--sleep-on-idle")


@dataclass(frozen=True)
class ServerSpec:
    role: str
    model_path: str
    device: str = "cpu"  # cpu | cuda
    host: str = DEFAULT_HOST
    port: int | None = None  # None: a free port
    tp: int = 1
    gpu_ids: str | None = None  # "0" or "1,2" -> CUDA_VISIBLE_DEVICES
    mem_fraction_static: float | None = None
    dtype: str | None = None
    context_length: int | None = None
    max_total_tokens: int | None = None
    extra_args: tuple[str, ...] = ()
    cpu_threads: int | None = None  # OMP_NUM_THREADS of the server (CPU): 1 per server on small machines

    def argv(self, port: int) -> list[str]:
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", self.model_path,
                "--host", self.host, "--port", str(port)]
        if self.device == "cpu":
            argv += list(CPU_FLAGS)
            argv += ["--dtype", self.dtype or "float32"]
            argv += ["--mem-fraction-static", str(self.mem_fraction_static or 0.3)]
            argv += ["--max-total-tokens", str(self.max_total_tokens or 16384)]
        else:
            # deterministic inference: SGLang reads `sampling_seed` only with it, so that seeds are
            # real (issue 13 item 3); CPU refuses it with torch_native attention (atts.runtime.seed_support)
            argv += ["--tp", str(self.tp), "--watchdog-timeout", "600", "--enable-deterministic-inference"]
            if self.dtype:
                argv += ["--dtype", self.dtype]
            if self.mem_fraction_static is not None:
                argv += ["--mem-fraction-static", str(self.mem_fraction_static)]
            if self.max_total_tokens:
                argv += ["--max-total-tokens", str(self.max_total_tokens)]
        if self.context_length:
            argv += ["--context-length", str(self.context_length)]
        return argv + list(self.extra_args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.device == "cpu":
            env["SGLANG_USE_CPU_ENGINE"] = "1"
            if self.cpu_threads:
                env["OMP_NUM_THREADS"] = str(self.cpu_threads)
        if self.gpu_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu_ids
        return env
