"""The reply adapter: low-rank weights (LoRA) on some linear layers of the frozen LLM, trained once when
the bundle is built (bench/real/replies.py), switched on only while the LLM writes a reply.

Why only for replies: the transcript prompt and every bridge were made for the pretrained LLM as it is
(a bridge records that LLM's identity), and a pulled copy of the same LLM must keep serving them. The
adapter is kept apart from the weights (not merged) so one set of weights serves both, and the switch is
per thread, so a personalization job reading the LLM on its own thread never sees a reply's adapter.

Files, in the directory the manifest's ``reply_adapter`` names:

    adapter.json          {"format", "llm_id", "rank", "alpha", "modules", "recipe", "metrics"}
    adapter.safetensors   "<module path>.lora_a" (rank, in), "<module path>.lora_b" (out, rank)
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from assistant.errors import BridgeMismatchError, ModelFilesError

log = logging.getLogger(__name__)

ADAPTER_JSON = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
FORMAT = "assistant-reply-adapter"


@dataclass(frozen=True)
class AdapterSpec:
    """Which linear layers get low-rank weights, and their size: ``delta W = (alpha / rank) * B @ A``."""

    rank: int
    alpha: float
    modules: tuple[str, ...]  # module paths in the model, e.g. "model.layers.29.self_attn.q_proj"

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not self.modules:
            raise ModelFilesError(f"reply adapter: rank must be >= 1, alpha > 0 and modules not empty "
                                  f"(got rank {self.rank}, alpha {self.alpha}, {len(self.modules)} modules)")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class _Switch(threading.local):
    on = False


class LoraLinear(nn.Module):
    """``base(x)``, plus ``scale * B(A(x))`` while the switch is on in the calling thread."""

    def __init__(self, base: nn.Linear, rank: int, scale: float, switch: _Switch) -> None:
        super().__init__()
        self.base = base
        self.scale = scale
        self.switch = switch
        p = base.weight
        # B starts at zero so an untrained adapter is the pretrained model exactly (LoRA's initialisation)
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features, dtype=p.dtype, device=p.device)
                                   / base.in_features ** 0.5)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=p.dtype, device=p.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.switch.on:
            y = y + (x @ self.lora_a.T) @ self.lora_b.T * self.scale
        return y


class ReplyAdapter:
    """The adapter attached to one model; ``active()`` switches it on for the calling thread."""

    def __init__(self, spec: AdapterSpec, layers: dict[str, LoraLinear], switch: _Switch,
                 info: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.layers = layers
        self._switch = switch
        self.info = info or {}

    @contextmanager
    def active(self) -> Iterator[None]:
        before = self._switch.on
        self._switch.on = True
        try:
            yield
        finally:
            self._switch.on = before

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.lora_a, layer.lora_b)]

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, layer in self.layers.items():
            out[f"{name}.lora_a"] = layer.lora_a.detach().float().cpu().contiguous()
            out[f"{name}.lora_b"] = layer.lora_b.detach().float().cpu().contiguous()
        return out


def top_layer_modules(model: nn.Module, top_layers: int, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """Paths of the linear layers named ``kinds`` (e.g. "q_proj") in the top ``top_layers`` decoder layers."""
    blocks = [name for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and name.endswith("layers")]
    if not blocks:
        raise ModelFilesError("reply adapter: the LLM has no decoder layer list ('...layers')")
    layers: nn.ModuleList = model.get_submodule(blocks[0])
    first = max(0, len(layers) - top_layers)
    out = []
    for i in range(first, len(layers)):
        for name, m in layers[i].named_modules():
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in kinds:
                out.append(f"{blocks[0]}.{i}.{name}")
    if not out:
        raise ModelFilesError(f"reply adapter: no linear layer named {', '.join(kinds)} in the top {top_layers} "
                              "decoder layers")
    return tuple(out)


def attach(model: nn.Module, spec: AdapterSpec, *, seed: int = 0) -> ReplyAdapter:
    """Wrap the spec's linear layers of ``model`` (in place) with new, zero-effect low-rank weights."""
    switch = _Switch()
    layers: dict[str, LoraLinear] = {}
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for path in spec.modules:
            parent_path, _, leaf = path.rpartition(".")
            try:
                parent = model.get_submodule(parent_path)
                base = getattr(parent, leaf)
            except AttributeError as exc:
                raise BridgeMismatchError(f"reply adapter: the LLM has no layer {path}",
                                          fix="use the adapter with the LLM it was trained for") from exc
            if not isinstance(base, nn.Linear):
                raise BridgeMismatchError(f"reply adapter: {path} is not a linear layer of this LLM")
            wrapped = LoraLinear(base, spec.rank, spec.scale, switch)
            setattr(parent, leaf, wrapped)
            layers[path] = wrapped
    finally:
        torch.random.set_rng_state(gen_state)
    return ReplyAdapter(spec, layers, switch)


def save_adapter(directory: str | Path, adapter: ReplyAdapter, *, llm_id: str, recipe: dict[str, Any],
                 metrics: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter.state_dict(), str(directory / ADAPTER_WEIGHTS))
    meta = {"format": FORMAT, "llm_id": llm_id, "rank": adapter.spec.rank, "alpha": adapter.spec.alpha,
            "modules": list(adapter.spec.modules), "recipe": recipe, "metrics": metrics}
    (directory / ADAPTER_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return directory


def load_adapter(directory: str | Path, model: nn.Module, *, llm_id: str) -> ReplyAdapter:
    """Read an adapter, check it was trained for ``llm_id``, attach it to ``model`` with its weights."""
    from safetensors.torch import load_file

    directory = Path(directory)
    try:
        meta = json.loads((directory / ADAPTER_JSON).read_text(encoding="utf-8"))
        weights = load_file(str(directory / ADAPTER_WEIGHTS))
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the reply adapter in {directory}: {exc}",
                              fix="rebuild the bundle, or remove reply_adapter from its manifest") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFilesError(f"{directory / ADAPTER_JSON} is not a reply adapter (format {FORMAT!r} expected)")
    if meta.get("llm_id") != llm_id:
        raise BridgeMismatchError(
            f"the reply adapter in {directory} was trained for LLM {meta.get('llm_id')!r}, the bundle's LLM is "
            f"{llm_id!r}", fix="rebuild the adapter for this LLM (python -m bench.real.build), or remove "
            "reply_adapter from the manifest")
    try:
        spec = AdapterSpec(int(meta["rank"]), float(meta["alpha"]), tuple(str(m) for m in meta["modules"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFilesError(f"{directory / ADAPTER_JSON}: bad rank/alpha/modules: {exc}") from exc
    adapter = attach(model, spec)
    adapter.info = {"recipe": meta.get("recipe", {}), "metrics": meta.get("metrics", {})}
    with torch.no_grad():
        for path, layer in adapter.layers.items():
            for part in ("lora_a", "lora_b"):
                key = f"{path}.{part}"
                target = getattr(layer, part)
                if key not in weights or tuple(weights[key].shape) != tuple(target.shape):
                    raise ModelFilesError(f"the reply adapter in {directory} lacks {key} or has the wrong shape",
                                          fix="rebuild the bundle's reply adapter")
                target.copy_(weights[key].to(target.dtype))
    extra = set(weights) - {f"{p}.{part}" for p in adapter.layers for part in ("lora_a", "lora_b")}
    if extra:
        raise ModelFilesError(f"the reply adapter in {directory} has tensors for no listed layer: "
                              f"{sorted(extra)[:3]}")
    for p in adapter.parameters():
        p.requires_grad_(False)
    log.info("reply adapter: %d layers, rank %d, from %s", len(adapter.layers), spec.rank, directory)
    return adapter
