"""YAML run configuration, validated into frozen dataclasses.

Every key is checked: an unknown key or a value of the wrong type or range is a
`ConfigError` naming the dotted key (``chunking.max_turns: expected int, got 'x'``).
Policy parameters are validated by the policy's own parameter class
(`atts.policies.POLICIES`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from atts.errors import ConfigError
from atts.method.policies import POLICIES
from atts.paths import REPO_ROOT  # noqa: F401  (re-exported: atts.config.REPO_ROOT keeps working)
from atts.serving.spec import ServerSpec
from atts.tasks.datasets import DATASETS


# ----------------------------------------------------------------------------- sections



def resolve_model(name: str) -> str:
    """A model given as a relative path is looked up in the working directory, then in
    the repository (so `models/tiny-draft` works from anywhere); anything else is
    passed on as it is (a hub id)."""
    p = Path(name).expanduser()
    if p.is_absolute() or p.exists():
        return str(p.resolve()) if p.exists() else name
    if (REPO_ROOT / p).exists():
        return str(REPO_ROOT / p)
    return name


# ----------------------------------------------------------------------------- run identity

IDENTITY = "identity"  # field metadata key: False for a field that does not change what a sample is


def operational(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING):
    """A config field that does not change what a sample is (where servers run, how many,
    how fast, where results go): left out of the run identity, so changing it lets a
    run resume. Every other field, including any new one, is part of the identity."""
    return field(default=default, default_factory=default_factory, metadata={IDENTITY: False})


def identity_dict(cfg: "RunConfig") -> dict:
    """``cfg.to_dict()`` without the operational fields: what a run's hash is made of."""
    return _drop_operational(cfg, cfg.to_dict())


def _drop_operational(obj, d: dict) -> dict:
    for f in dataclasses.fields(obj):
        if f.metadata.get(IDENTITY, True) is False:
            d.pop(f.name, None)
        elif f.name != "policy" and dataclasses.is_dataclass(getattr(obj, f.name)) and isinstance(d.get(f.name), dict):
            _drop_operational(getattr(obj, f.name), d[f.name])
    return d


@dataclass(frozen=True)
class ModelConfig:
    model: str  # local path or hub id
    tokenizer: str | None = None  # defaults to `model`
    launch: bool = operational(False)  # start the server ourselves
    urls: tuple[str, ...] = operational(())  # or use running servers (several: requests are balanced)
    device: Literal["cpu", "cuda"] = operational("cpu")
    tp: int = operational(1)
    gpu_ids: str | None = operational(None)
    mem_fraction_static: float | None = operational(None)
    dtype: str | None = None
    context_length: int | None = None
    max_total_tokens: int | None = operational(None)
    extra_args: tuple[str, ...] = operational(())
    cpu_threads: int | None = operational(None)  # CPU servers: OMP_NUM_THREADS (1 avoids oversubscribing small machines)
    max_concurrency: int = operational(16)
    timeout_s: float = operational(120.0)
    retries: int = operational(4)
    # sglang: SGLang's native API; openai: an OpenAI-compatible server such as vLLM
    # (atts.openai_engine). `launch: true` starts SGLang servers only.
    engine: Literal["sglang", "openai"] = operational("sglang")
    backoff_s: float = operational(0.5)  # first retry delay; doubles per retry (capped at 8 s), with jitter
    on_server_down: Literal["fail", "wait"] = operational("fail")  # a dead server stops the run, or is waited for
    down_wait_s: float = operational(600.0)  # on_server_down: wait: the longest wait for /health to answer again
    # servers started with --api-key: the NAME of the environment variable holding the
    # key (sent as `Authorization: Bearer`; the key is never written anywhere)
    api_key_env: str | None = operational(None)
    served_model_name: str | None = operational(None)  # engine: openai: the `model` of each request (default: the first served)

    @property
    def model_path(self) -> str:
        return resolve_model(self.model)

    @property
    def tokenizer_path(self) -> str:
        return resolve_model(self.tokenizer or self.model)

    def server_spec(self, role: str) -> ServerSpec:
        return ServerSpec(role=role, model_path=self.model_path, device=self.device, tp=self.tp, gpu_ids=self.gpu_ids,
                          mem_fraction_static=self.mem_fraction_static, dtype=self.dtype,
                          context_length=self.context_length, max_total_tokens=self.max_total_tokens,
                          extra_args=self.extra_args, cpu_threads=self.cpu_threads)

    def validate(self, key: str) -> None:
        if not self.launch and not self.urls:
            raise ConfigError(f"{key}: set `launch: true` or give `urls`")
        for u in self.urls:
            if not u.startswith(("http://", "https://")):
                raise ConfigError(f"{key}.urls: {u!r} is not an http(s) URL")
        _positive(f"{key}.max_concurrency", self.max_concurrency)
        _positive(f"{key}.tp", self.tp)
        if self.retries < 0:
            raise ConfigError(f"{key}.retries: must be >= 0")
        if self.launch and self.engine != "sglang":
            raise ConfigError(f"{key}.engine: `launch: true` starts SGLang servers; start the {self.engine} "
                              "server yourself and give its `urls` (docs/deployment.md)")
        if self.backoff_s < 0:
            raise ConfigError(f"{key}.backoff_s: must be >= 0")
        _positive(f"{key}.timeout_s", self.timeout_s)
        _positive(f"{key}.down_wait_s", self.down_wait_s)
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ConfigError(f"{key}.api_key_env: the name of an environment variable, not the key itself "
                              f"(letters, digits and _)")
        if self.served_model_name is not None and self.engine != "openai":
            raise ConfigError(f"{key}.served_model_name: only for `engine: openai` (SGLang's native API names no model)")


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    split: str = "test"
    preset: str | None = None  # a named subset, e.g. the research code's
    limit: int | None = operational(None)  # first N questions
    source: Literal["auto", "local", "hub"] = "auto"
    data_dir: str | None = None  # local JSONL directory (default: $ATTS_DATA_DIR, then ../shared/datasets)
    size: int | None = None  # generated datasets (arith): questions in the split
    seed: int = 0  # choice shuffling (GPQA), generated datasets
    # issue 14, a generic dataset (like an lm-eval task YAML): with `path`, `name` is a free label
    # and the questions come from any hub dataset or local JSONL file (atts.tasks.datasets.GenericSource)
    path: str | None = None  # hub id "org/name", or a local .jsonl file
    subset: str | None = None  # the hub dataset's config name
    revision: str | None = None  # hub commit, tag or branch: pins the data
    problem_field: str = "problem"
    answer_field: str = "answer"  # multiple choice: the correct choice's letter, index or text
    choices_field: str | None = None  # a list of options: the question is multiple choice
    id_field: str | None = None  # default: the row's position

    def validate(self, key: str) -> None:
        if self.path is None and self.name not in DATASETS:
            raise ConfigError(f"{key}.name: unknown dataset {self.name!r}; known: {', '.join(sorted(DATASETS))} "
                              f"(or give {key}.path: a hub dataset or a local JSONL file)")
        if self.path is not None and self.preset is not None:
            raise ConfigError(f"{key}.preset: presets name registry datasets; not with {key}.path")
        if self.limit is not None:
            _positive(f"{key}.limit", self.limit)


@dataclass(frozen=True)
class ChunkingConfig:
    # no stop string by default, as the research code: 500-token chunks, 15 turns. A
    # blank-line stop on real R1 text ends chunks after ~40 tokens and a 15-turn cap
    # then cuts 64% of real solutions off (tests/unit/test_chunk_replay.py)
    stop: tuple[str, ...] = ()
    max_tokens_per_chunk: int = 500
    max_turns: int = 15
    token_budget: int = 8192

    def validate(self, key: str) -> None:
        for k in ("max_tokens_per_chunk", "max_turns", "token_budget"):
            _positive(f"{key}.{k}", getattr(self, k))


@dataclass(frozen=True)
class SamplingConfig:
    draft_temperature: float = 0.8
    target_temperature: float = 0.8
    top_p: float = 1.0
    seed: int = 0

    def validate(self, key: str) -> None:
        for k in ("draft_temperature", "target_temperature"):
            if getattr(self, k) < 0:
                raise ConfigError(f"{key}.{k}: must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"{key}.top_p: must be in (0, 1]")


@dataclass(frozen=True)
class CalibrationConfig:
    path: str | None = None  # default: <output_dir>/calibration.json
    split: str | None = "calibration"  # null: the evaluated split itself (the paper's setting)
    limit: int | None = None
    samples_per_question: int | None = None  # default: the run's K
    min_per_turn: int = 30  # per-turn grouping: from the first turn with fewer chunks, later turns are pooled

    def validate(self, key: str) -> None:
        _positive(f"{key}.min_per_turn", self.min_per_turn)


@dataclass(frozen=True)
class PromptConfig:
    system: str | None = None
    template: str | None = None  # with {problem} (and {choices} for multiple choice); default per dataset


@dataclass(frozen=True)
class PolicyConfig:
    name: str
    params: Any  # the policy's own frozen parameter dataclass


@dataclass(frozen=True)
class RunConfig:
    draft: ModelConfig
    target: ModelConfig
    dataset: DatasetConfig
    policy: PolicyConfig
    name: str = operational("run")
    samples_per_question: int = operational(1)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    calibration: CalibrationConfig = operational(default_factory=CalibrationConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    output_dir: str = operational("results/run")
    server_start_timeout_s: float = operational(600.0)
    grading_workers: int = operational(2)
    # how many samples run at once (None: all, bounded only by each role's max_concurrency);
    # beyond it a sample waits before it starts (atts.runtime.schedule.Concurrent)
    max_in_flight: int | None = operational(None)
    source_path: str | None = field(default=None, compare=False)

    def validate(self) -> None:
        self.draft.validate("draft")
        self.target.validate("target")
        self.dataset.validate("dataset")
        self.chunking.validate("chunking")
        self.sampling.validate("sampling")
        self.calibration.validate("calibration")
        _positive("samples_per_question", self.samples_per_question)
        if self.max_in_flight is not None:
            _positive("max_in_flight", self.max_in_flight)

    @property
    def calibration_path(self) -> Path:
        return Path(self.calibration.path) if self.calibration.path else Path(self.output_dir) / "calibration.json"

    def to_dict(self, public: bool = False) -> dict:
        """The config as plain data; ``public``: without the fields that point at secrets
        (`SECRET_FIELDS`), for what a run writes (manifest, bench meta)."""
        d = _to_plain(self)
        d.pop("source_path", None)
        if public:
            for r in ("draft", "target"):
                for k in SECRET_FIELDS:
                    d[r].pop(k, None)
        d["policy"] = {"name": self.policy.name, **_to_plain(self.policy.params)}
        return d

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


SECRET_FIELDS = ("api_key_env",)  # per role: left out of written configs and of run identity


def _to_plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(_to_plain(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- validation


def _positive(key: str, v) -> None:
    if v is None or v <= 0:
        raise ConfigError(f"{key}: must be > 0, got {v!r}")


def build(cls, data, key: str):
    """Build dataclass ``cls`` from a mapping, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in names or k == "source_path":
            where = f"{key}.{k}" if key else k
            raise ConfigError(f"{where}: unknown key (allowed: {', '.join(sorted(names - {'source_path'}))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = coerce(hints[f.name], data[f.name], f"{key}.{f.name}" if key else f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}.{f.name}: required key missing" if key else f"{f.name}: required key missing")
    return cls(**kwargs)


def coerce(tp, value, key: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def parse_config(data: dict, source_path: str | None = None) -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError("config: expected a mapping at the top level")
    data = dict(data)
    pol = data.pop("policy", None)
    if not isinstance(pol, dict) or "name" not in pol:
        raise ConfigError("policy: required, a mapping with at least `name`")
    pol = dict(pol)
    pname = pol.pop("name")
    if pname not in POLICIES:
        raise ConfigError(f"policy.name: unknown policy {pname!r}; known: {', '.join(sorted(POLICIES))}")
    params = build(POLICIES[pname].Params, pol, "policy")
    if hasattr(params, "validate"):
        params.validate("policy")
    data["policy"] = {"name": pname, "params": params}
    cfg = build(RunConfig, data, "")
    cfg = dataclasses.replace(cfg, source_path=source_path)
    cfg.validate()
    return cfg


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(p: Path, seen: tuple = ()) -> dict:
    """A config file; ``extends: other.yaml`` (relative to this file) merges this file's
    keys over the other's, recursively."""
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    if p.resolve() in seen:
        raise ConfigError(f"{p}: `extends` cycle")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{p}: extends: expected a file name")
    return _deep_merge(_read_yaml(p.parent / parent, seen + (p.resolve(),)), data)


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    data = _read_yaml(p)
    try:
        return parse_config(data, str(p))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def with_overrides(cfg: RunConfig, *, policy: str | None = None, alpha: float | None = None,
                   samples_per_question: int | None = None, limit: int | None = None,
                   output_dir: str | None = None, calibration: str | None = None,
                   sets: list[str] | None = None) -> RunConfig:
    """Apply command-line flags on top of a config (flags win), re-validating.
    ``sets`` are ``dotted.key=yaml_value`` overrides, applied first."""
    d = cfg.to_dict()
    for item in sets or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"--set {key}: {p!r} is not a section")
            node = node[p]
        node[parts[-1]] = value
    if policy is not None and policy != d["policy"]["name"]:
        if policy not in POLICIES:
            raise ConfigError(f"--policy: unknown policy {policy!r}; known: {', '.join(sorted(POLICIES))}")
        # keep the parameters the new policy understands
        keep = {f.name for f in dataclasses.fields(POLICIES[policy].Params)}
        d["policy"] = {"name": policy, **{k: v for k, v in d["policy"].items() if k in keep}}
    if alpha is not None and "alpha" in {f.name for f in dataclasses.fields(_policy_params_cls(d["policy"]["name"]))}:
        d["policy"]["alpha"] = alpha  # policies without alpha (draft_only, ...) ignore it
    if samples_per_question is not None:
        d["samples_per_question"] = samples_per_question
    if limit is not None:
        d["dataset"]["limit"] = limit
    if output_dir is not None:
        d["output_dir"] = output_dir
    if calibration is not None:
        d["calibration"]["path"] = calibration
    return parse_config(d, cfg.source_path)


def _policy_params_cls(name: str):
    return POLICIES[name].Params
