"""The recipe protocol every bridge trainer follows, its settings, and the pieces all recipes share.

A recipe (like a torchtune recipe) is driven by the scheduler in five calls::

    recipe.setup(engine, parent, train, settings, resume_from=None)   # candidate = deep copy of parent
    status = recipe.train(should_pause=..., on_progress=...)          # "done" | "paused"
    recipe.save(directory)                                            # resumable checkpoint (paused jobs)
    candidate = recipe.result()                                       # a NEW LoadedBridge; parent untouched
    recipe.cleanup()

Only the bridge is trained. The frozen LLM (``engine.llm``) is the serving model itself, shared and
never copied: recipes never write its weights and restore any mode they change. ``should_pause`` is
checked between steps, so a pause takes effect within one step.

Every random draw a recipe makes (batch order, replay picks, ZO directions) is derived from
``(settings.seed, step)``, so "the RNG state" of a checkpoint is just the seed and the step: a resumed
job draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import gc
import logging
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

from assistant.engine.bridge import with_personal_head, with_personal_top
from assistant.engine.checkpoint import LoadedBridge
from assistant.engine.encoder import EncoderOutput

log = logging.getLogger(__name__)


class LabelledExample(Protocol):
    """What a trainer needs from one example (``alignment.data.Example``, ``RegressionItem``...)."""

    @property
    def encoded(self) -> EncoderOutput: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class TrainSettings:
    max_steps: int = 200
    learning_rate: float = 1e-3
    batch_size: int = 16
    seed: int = 0
    anchor_weight: float = 0.0  # 0.5 * w * ||theta - theta_parent||^2, against forgetting generic speech
    replay: Sequence[Any] = ()  # generic labelled examples (e.g. the regression set) mixed into batches
    replay_share: float = 0.25  # share of each batch drawn from ``replay`` (when it is not empty)
    personal_head: bool = False  # ctc bridges: grow a personal CTC head (+ adapter) and train it too
    adapter_dim: int = 256  # the personal residual adapter's width (0: head only)
    adapter_kernel: int = 1  # frames it sees around each frame (odd; 1: per frame)
    adapter_dropout: float = 0.0  # on its hidden units, in training
    ctc_weight: float = 1.0  # weight of the personal head's CTC loss next to the recipe's objective
    parent_lr_scale: float = 1.0  # learning-rate factor for the weights the parent already had (0: frozen);
    #   the grown head/adapter always get the full rate: small steps keep what the parent knew
    micro_batch_size: int = 0  # gradient recipes: run each batch in parts of this many examples and add their
    #   gradients (activation memory / batch_size * micro; 0: the whole batch at once)
    voice_routing: bool = False  # the result's personal head serves only the user's voice (routed_by_voice)
    personal_top: bool = False  # with a personal head: also train a copy of the encoder's top (EncoderTop)
    top_lr_scale: float = 0.5  # the personal top's learning-rate factor (its pretrained layers move slowly)
    top_rank: int = 0  # > 0: the top's Whisper layers stay shared and train a LoRA update of this rank

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("max_steps >= 0, batch_size >= 1 and learning_rate > 0 are required")
        if not 0 <= self.replay_share < 1 or self.anchor_weight < 0:
            raise ValueError("replay_share must be in [0, 1) and anchor_weight >= 0")
        if self.adapter_kernel < 1 or self.adapter_kernel % 2 == 0 or not 0 <= self.adapter_dropout < 1:
            raise ValueError("adapter_kernel must be odd and >= 1, adapter_dropout in [0, 1)")
        if self.adapter_dim < 0 or self.ctc_weight < 0 or self.parent_lr_scale < 0 or self.micro_batch_size < 0 \
                or self.top_lr_scale < 0 or self.top_rank < 0:
            raise ValueError("adapter_dim, ctc_weight, parent_lr_scale, micro_batch_size, top_lr_scale and top_rank "
                             "must be >= 0")

    def to_json(self) -> dict[str, Any]:
        """JSON-able summary (replay examples are data, so only their count)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "replay"}
        return {**d, "replay": len(self.replay)}


@dataclass
class Progress:
    step: int  # steps done (1-based after the first step)
    total: int
    loss: float  # the recipe's objective on this step's batch (without the anchor term)
    seconds: float  # training time so far, over all resumes
    extra_memory_mb: float = 0.0  # best-effort peak memory added by training (see MemoryMeter)


@runtime_checkable
class Recipe(Protocol):
    name: str

    def setup(self, engine: Any, parent: LoadedBridge, train: Sequence[LabelledExample], settings: TrainSettings,
              *, resume_from: Path | None = None) -> None: ...

    def train(self, *, should_pause: Callable[[], bool], on_progress: Callable[[Progress], None]) -> str: ...

    def save(self, directory: Path) -> Path: ...

    def result(self) -> LoadedBridge: ...

    def cleanup(self) -> None: ...


def candidate_of(parent: LoadedBridge, init: torch.nn.Module | None = None, *,
                 encoder_head: torch.nn.Module | None = None, adapter_dim: int = 0, adapter_kernel: int = 1,
                 adapter_dropout: float = 0.0, seed: int = 0,
                 encoder_top: Callable[[int], torch.nn.Module] | None = None, top_layers: int = 0,
                 top_rank: int = 0) -> LoadedBridge:
    """A trainable deep copy of the serving ``parent`` (its module is never touched).

    ``encoder_head`` (ctc bridges): the copy grows a personal CTC head started from it and a residual
    adapter of ``adapter_dim`` / ``adapter_kernel`` / ``adapter_dropout`` (``bridge.with_personal_head``); it
    still computes what the parent does. ``encoder_top`` (with a head): the copy also owns a personal top,
    a fresh one of the encoder's (``top_layers`` pretrained layers and the CTC module's layers, copied, or
    shared with a LoRA update of ``top_rank``; ``bridge.with_personal_top``); a parent that owns one keeps its
    own.
    ``init`` (optional) supplies starting weights other than the parent's, e.g. the previous stage of a
    sequential recipe; version bookkeeping still names the real parent. The grown adapter's random
    initialisation comes from ``seed``: the same job grows the same candidate (and its anchor is that
    very starting point), without touching the global RNG.
    """
    module = copy.deepcopy(parent.module)
    changes: dict[str, Any] = {}
    if encoder_head is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(seed, 0x6E0))
            module = with_personal_head(module, encoder_head, adapter_dim, adapter_kernel, adapter_dropout)
        ad = module.adapter
        changes = {"adapter_dim": ad.down.out_features if ad is not None else 0,
                   "adapter_kernel": ad.kernel_size if ad is not None else 1,
                   "adapter_dropout": float(ad.drop.p) if ad is not None else 0.0,
                   "head_vocab": module.head.out_features}
        if encoder_top is not None and module.top is None:
            with torch.random.fork_rng(devices=[]):  # a LoRA update's random start, seeded like the adapter's
                torch.manual_seed(derived_seed(seed, 0x709))
                module = with_personal_top(module, encoder_top(top_rank))
            changes.update(top_layers=top_layers, top_rank=top_rank)
    if init is not None:
        module.load_state_dict(init.state_dict())
    cfg = dataclasses.replace(parent.config, version="candidate", parent_version=parent.version, metrics={},
                              training={}, created_at="", sha256="", **changes)
    return LoadedBridge(module=module, config=cfg)


def anchor_of(parent: LoadedBridge, growth: dict[str, Any], module: torch.nn.Module, encoder: Any
              ) -> list[torch.Tensor]:
    """What the anchor pulls ``module``'s parameters (in their order) toward: the grown parent's values.
    A personal top's are the frozen weights it was copied from (the parent's own top, or the encoder's),
    referenced rather than copied: a copy would add 28 MB to the job; a fresh LoRA update's are its start."""
    names = [n for n, _ in module.named_parameters()]
    top = getattr(parent.module, "top", None) or (encoder.frozen_top() if "encoder_top" in growth else None)
    frozen = dict(top.named_parameters()) if top is not None else {}
    referenced = lambda n: n.startswith("top.") and n[4:] in frozen  # noqa: E731
    if all(referenced(n) or not n.startswith("top.") for n in names):  # no top to grow again: cheaper start
        growth = {k: v for k, v in growth.items() if k not in ("encoder_top", "top_layers", "top_rank")}
    start = dict(candidate_of(parent, **growth).module.named_parameters())
    return [frozen[n[4:]].detach() if referenced(n) else start[n].detach().clone() for n in names]


def growth_of(engine: Any, parent: LoadedBridge, settings: TrainSettings) -> dict[str, Any]:
    """``candidate_of`` keywords for ``settings.personal_head``: empty when the bridge cannot own a head
    (a conv bridge, or an encoder without CTC)."""
    head = getattr(getattr(engine, "encoder", None), "ctc_head", None)
    if not settings.personal_head or parent.kind != "ctc" or head is None:
        return {}
    grow = {"encoder_head": head, "adapter_dim": settings.adapter_dim, "adapter_kernel": settings.adapter_kernel,
            "adapter_dropout": settings.adapter_dropout, "seed": settings.seed}
    encoder = engine.encoder
    if settings.personal_top or getattr(parent.module, "owns_top", False):
        if not getattr(encoder, "top_layers", 0):
            raise ValueError(f"a personal top needs an encoder that offers one; {encoder.identity} does not "
                             "(alignment.personal_top = false)")
        grow.update(encoder_top=encoder.personal_top, top_layers=encoder.top_layers, top_rank=settings.top_rank)
    return grow


def routed_by_voice(bridge: LoadedBridge, user: Sequence[torch.Tensor], generic: Sequence[torch.Tensor]
                    ) -> LoadedBridge:
    """``bridge`` with voice routing (bridge.CtcBridge.set_voice): its personal head and adapter serve an
    utterance only when the ratio of its mean encoder frame's distances to the mean of ``user`` (the
    training utterances' frames) and to that of ``generic`` (the replay set's) is below a threshold set
    from those same utterances; other speakers get the parent's path, so what the user's voice taught
    the head costs them little. Unchanged without a head or either set."""
    from assistant.engine.bridge import CtcBridge

    m = bridge.module
    if not (isinstance(m, CtcBridge) and m.owns_head and user and generic):
        return bridge
    means = lambda xs: torch.stack([x.detach().float().mean(0) for x in xs])  # noqa: E731
    ref = next(m.parameters())
    m.set_voice(means(user).mean(0).to(ref.device, ref.dtype), means(generic).mean(0).to(ref.device, ref.dtype))
    # the threshold halfway between the user's 95th-percentile ratio and generic speech's 5th: the few
    # utterances between the two voices go to the parent's path rather than cost generic accuracy
    ratios = lambda xs: torch.tensor([m.voice_ratio(x) for x in xs])  # noqa: E731
    q = torch.tensor([0.95, 0.05])
    threshold = 0.5 * (float(torch.quantile(ratios(user), q[0])) + float(torch.quantile(ratios(generic), q[1])))
    m.set_voice(m.voice_user, m.voice_generic, threshold)
    # the training record copies the trainer's settings, whose voice_routing is False when the gate (not
    # the trainer) routes: the written JSON must not say "voice_routing": false anywhere for a routed bridge
    training = {**bridge.config.training, "voice_routing": True}
    return LoadedBridge(module=m, config=dataclasses.replace(bridge.config, voice_routing=True, training=training))


def finished_bridge(candidate: LoadedBridge, module: torch.nn.Module, training: dict[str, Any]) -> LoadedBridge:
    """The result handed to the scheduler: a copy, frozen, in eval mode, with the training record."""
    module = copy.deepcopy(module).eval().requires_grad_(False)
    cfg = dataclasses.replace(candidate.config, training={**candidate.config.training, **training})
    return LoadedBridge(module=module, config=cfg)


def lr_factor(step: int, total: int) -> float:
    """Short linear warm-up then cosine decay to 10 %; a pure function of the step, so resumes match."""
    warm = max(1, min(10, total // 10))
    if step < warm:
        return (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, step, query...): cheap, stable across runs and platforms."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


def _rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class MemoryMeter:
    """Best-effort extra peak memory of a training job.

    Host: the growth of the process's peak RSS (``ru_maxrss``) since setup. A peak reached before setup
    (e.g. loading the models) hides training memory below it, so this is a lower bound. GPU: the growth
    of ``torch.cuda.max_memory_allocated`` since setup. tracemalloc is not used: it does not see
    torch's allocations and slows every step.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.rss0 = _rss_mb()
        self.gpu0 = torch.cuda.max_memory_allocated(device) / 2**20 if self.cuda else 0.0
        self.device = device

    def extra_mb(self) -> float:
        extra = max(0.0, _rss_mb() - self.rss0)
        if self.cuda:
            extra += max(0.0, torch.cuda.max_memory_allocated(self.device) / 2**20 - self.gpu0)
        return round(extra, 1)


class StepLoop:
    """Counts steps and time, checks for a pause between steps, reports progress."""

    def __init__(self, total: int, meter: MemoryMeter) -> None:
        self.total = total
        self.step = 0
        self.seconds = 0.0
        self.last_loss = float("nan")
        self.meter = meter

    def run(self, step_fn: Callable[[int], float], should_pause: Callable[[], bool],
            on_progress: Callable[[Progress], None], name: str) -> str:
        while self.step < self.total:
            if should_pause():
                log.info("%s: paused after step %d/%d", name, self.step, self.total)
                return "paused"
            t0 = time.perf_counter()
            loss = step_fn(self.step)
            self.seconds += time.perf_counter() - t0
            self.step += 1
            self.last_loss = loss
            on_progress(Progress(self.step, self.total, loss, self.seconds, self.meter.extra_mb()))
        return "done"

    def record(self) -> dict[str, Any]:
        loss = None if math.isnan(self.last_loss) else self.last_loss  # strict JSON has no NaN
        return {"step": self.step, "seconds": self.seconds, "last_loss": loss}

    def restore(self, meta: dict[str, Any]) -> None:
        self.step, self.seconds = int(meta["step"]), float(meta["seconds"])
        loss = meta.get("last_loss")
        self.last_loss = float("nan") if loss is None else float(loss)


def release_memory() -> None:
    """Give the memory a finished job freed back to the system: CUDA's cache, and glibc's heap, which on
    its own keeps what a job's varying tensor sizes left free (measured: +474 MB kept after a personal-top
    job's cleanup, -57 MB after ``malloc_trim``; bench/RESULTS.md). A no-op where neither applies."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
