"""Zero-order recipe (MeZO-style SPSA with AdaZeta's growing query count): forward passes only.

Per step, for each of Q queries with a fresh seed s (derived from (seed, step, query)):
  1. theta += eps * z,  z ~ N(0, 1) drawn from ``torch.Generator().manual_seed(s)`` parameter by parameter;
  2. loss+ = f(theta + eps z); theta -= 2 eps z; loss- = f(theta - eps z); theta += eps z (restored);
  3. projected gradient g = (loss+ - loss-) / (2 eps).
Then theta -= lr * g_q * z_q / Q for each query, z_q regenerated from its seed. z is never stored (one
parameter's worth of noise exists at a time), nothing keeps an autograd graph (everything runs under
``torch.no_grad`` with ``requires_grad=False``) and there is no optimizer state: memory stays at the
inference level. f is ``transcript_loss`` (+ the anchor term) on the step's batch.

AdaZeta's schedule: in epoch e (1-based, one epoch = one pass over the training examples)
``Q = min(max(floor(beta * e ** alpha), 1), q_max)`` (beta=1, alpha=0.5, q_max=8): noisy single-query
estimates early, averaged ones later, when noise dominates the remaining progress.

``tt_rank > 0`` perturbs only a small TT-factorised residual adapter on the bridge output (see tt.py;
it is folded into the bridge's final Linear by ``result()``), otherwise every bridge parameter. The
learning rate defaults to ``settings.learning_rate``; SPSA steps scale with the number of perturbed
parameters, so a full-bridge job usually wants a smaller one than Adam's (``learning_rate=`` here).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from assistant.alignment.trainers.backprop import TranscriptObjective
from assistant.alignment.trainers.base import (LabelledExample, MemoryMeter, Progress, StepLoop, TrainSettings,
                                               candidate_of, derived_seed, finished_bridge, growth_of, lr_factor,
                                               module_device, release_memory)
from assistant.alignment.trainers.batches import BatchPlan, BridgeInputs, fingerprint, mean_objective
from assistant.alignment.trainers.state import load_module, module_tensors, read_state, write_state
from assistant.alignment.trainers.tt import TTAdapter, fold_into
from assistant.engine.checkpoint import LoadedBridge

log = logging.getLogger(__name__)


class ZeroOrderRecipe:
    def __init__(self, *, eps: float = 1e-3, alpha: float = 0.5, beta: float = 1.0, q_max: int = 8,
                 tt_rank: int = 0, learning_rate: float | None = None) -> None:
        self.name = "zo"
        self.eps, self.alpha, self.beta, self.q_max = eps, alpha, beta, q_max
        self.tt_rank = tt_rank
        self.lr_override = learning_rate

    # --- protocol -------------------------------------------------------------------------------------
    def setup(self, engine: Any, parent: LoadedBridge, train: Sequence[LabelledExample], settings: TrainSettings,
              *, resume_from: Path | None = None, init: torch.nn.Module | None = None) -> None:
        self.llm = engine.llm
        self.settings = settings
        self.lr = self.lr_override if self.lr_override is not None else settings.learning_rate
        growth = growth_of(engine, parent, settings)  # a grown head is tuned by the perturbations alone
        self.candidate = candidate_of(parent, init, **growth)
        module = self.candidate.module.eval().requires_grad_(False)  # no autograd anywhere in this recipe
        device = module_device(module)
        self.meter = MemoryMeter(device)
        self.data = fingerprint(train)
        self.n_train = len(train)
        self.inputs = BridgeInputs(module, [*train, *settings.replay], device)
        self.plan = BatchPlan(self.inputs.texts, self.inputs.frames, len(train), len(settings.replay),
                              settings.batch_size, settings.replay_share, settings.seed)
        self.adapter: TTAdapter | None = None
        self.anchor: list[torch.Tensor] | None = None
        if self.tt_rank > 0:
            self.adapter = TTAdapter(self.candidate.config.llm_dim, self.tt_rank,
                                     seed=derived_seed(settings.seed, 3)).to(device)
            self.params = [self.adapter.core1, self.adapter.core2]
            log.info("zo: TT adapter %dx%d rank %d, %d parameters", self.adapter.a, self.adapter.b, self.tt_rank,
                     self.adapter.n_params)
        else:
            self.params = list(module.parameters())
            if settings.anchor_weight > 0:
                self.anchor = [p.detach().clone() for p in candidate_of(parent, **growth).module.parameters()]
        self.objective = TranscriptObjective(self.llm, self.inputs, post=self.adapter)
        self.loop = StepLoop(settings.max_steps, self.meter)
        self.queries_done = 0
        if resume_from is not None:
            tensors, meta = read_state(resume_from, recipe=self.name, fingerprint=self.data)
            load_module("bridge", module, tensors)
            if self.adapter is not None:
                load_module("adapter", self.adapter, tensors)
            self.loop.restore(meta)
            self.queries_done = int(meta.get("queries_done", 0))
            log.info("zo: resumed at step %d/%d from %s", self.loop.step, self.loop.total, resume_from)

    def train(self, *, should_pause: Callable[[], bool], on_progress: Callable[[Progress], None]) -> str:
        status = self.loop.run(self._step, should_pause, on_progress, self.name)
        if status == "done":
            log.info("zo: %d steps (%d queries) in %.1f s, last loss %.4f", self.loop.total, self.queries_done,
                     self.loop.seconds, self.loop.last_loss)
        return status

    def save(self, directory: Path) -> Path:
        tensors = module_tensors("bridge", self.candidate.module)
        if self.adapter is not None:
            tensors.update(module_tensors("adapter", self.adapter))
        meta = {"recipe": self.name, "data": self.data, "settings": self.settings.to_json(), "zo": self._zo_json(),
                "rng": {"derived_from": ["seed", "step", "query"], "seed": self.settings.seed},
                "queries_done": self.queries_done, **self.loop.record()}
        return write_state(Path(directory), tensors, meta)

    def result(self) -> LoadedBridge:
        module = self.candidate.module
        if self.adapter is not None:  # the engine loads plain bridges: fold the adapter into a copy
            module = fold_into(copy.deepcopy(module), self.adapter)
        return finished_bridge(self.candidate, module, self.training_record())

    def cleanup(self) -> None:
        for name in ("inputs", "objective", "anchor", "params", "adapter", "plan"):
            self.__dict__.pop(name, None)
        release_memory()

    # --- extras ---------------------------------------------------------------------------------------
    def _zo_json(self) -> dict[str, Any]:
        return {"eps": self.eps, "alpha": self.alpha, "beta": self.beta, "q_max": self.q_max,
                "tt_rank": self.tt_rank, "learning_rate": self.lr}

    def training_record(self) -> dict[str, Any]:
        rec = {"method": self.name, **self.settings.to_json(), "zo": self._zo_json(), "steps_done": self.loop.step,
               "queries": self.queries_done, "n_train": self.n_train, "final_loss": self.loop.last_loss,
               "seconds": round(self.loop.seconds, 2), "extra_memory_mb": self.meter.extra_mb()}
        if self.adapter is not None:
            rec["adapter"] = {"kind": "tt", "rank": self.tt_rank, "factors": [self.adapter.a, self.adapter.b],
                              "merged_into": "final Linear"}
        return rec

    def extra_memory_mb(self) -> float:
        return self.meter.extra_mb()

    def evaluate(self) -> float:
        return mean_objective(self.objective, self.candidate.module, self.plan.eval_batches(self.settings.batch_size))

    def queries(self, step: int) -> int:
        epoch = self.plan.epoch_of(step) + 1
        return min(max(math.floor(self.beta * epoch ** self.alpha), 1), self.q_max)

    @property
    def step(self) -> int:
        return self.loop.step

    def _perturb(self, seed: int, scale: float) -> None:
        """theta += scale * z(seed), regenerating z parameter by parameter in a fixed order."""
        gen = torch.Generator(device=self.params[0].device).manual_seed(seed)
        for p in self.params:
            z = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
            p.add_(z, alpha=scale)

    def _anchor_term(self) -> float:
        w = self.settings.anchor_weight
        if w == 0:
            return 0.0
        if self.adapter is not None:  # the parent is W_a = 0
            return 0.5 * w * float(self.adapter.matrix().pow(2).sum())
        return 0.5 * w * float(sum(((p - a) ** 2).sum() for p, a in zip(self.params, self.anchor or [])))

    def _f(self, idx: Sequence[int]) -> tuple[float, float]:
        obj = float(self.objective(self.candidate.module, idx))
        return obj, obj + self._anchor_term()

    @torch.no_grad()
    def _step(self, step: int) -> float:
        idx = self.plan.batch(step)
        lr = self.lr * lr_factor(step, self.settings.max_steps)
        q = self.queries(step)
        estimates, losses = [], []
        for j in range(q):
            seed = derived_seed(self.settings.seed, step, 7, j)
            self._perturb(seed, self.eps)
            obj_p, f_p = self._f(idx)
            self._perturb(seed, -2 * self.eps)
            obj_m, f_m = self._f(idx)
            self._perturb(seed, self.eps)
            g = (f_p - f_m) / (2 * self.eps)
            if not math.isfinite(g):
                log.warning("zo: non-finite loss at step %d query %d; estimate dropped", step, j)
                continue
            estimates.append((seed, g))
            losses.append(0.5 * (obj_p + obj_m))
        for seed, g in estimates:
            self._perturb(seed, -lr * g / q)
        self.queries_done += q
        return sum(losses) / len(losses) if losses else float("nan")
