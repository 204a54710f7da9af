"""Bridge trainers (assistant/alignment/trainers): loss goes down, the serving parent stays untouched,
ZO builds no autograd graph, preemption + resume equals an uninterrupted run, checkpoints hold no pickle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import noise_wave

from assistant.alignment.trainers import BackpropRecipe, Recipe, TrainSettings, ZeroOrderRecipe, make_recipe
from assistant.alignment.trainers.backprop import TranscriptObjective, checkpointing_enabled
from assistant.alignment.trainers.batches import BatchPlan, BridgeInputs, mean_objective
from assistant.alignment.trainers.embed import resample
from assistant.alignment.trainers.tt import TTAdapter, factor_pair, fold_into
from assistant.engine.checkpoint import LoadedBridge, save_bridge
from assistant.engine.encoder import EncoderOutput
from assistant.errors import ModelFilesError

TEXTS = ["turn on the light", "what time is it", "call mom", "play some music", "stop", "set a timer for ten minutes"]
# (method, learning rate, steps) that give a clear decrease on the tiny bundle in well under a second
# (zo: more steps, and SPSA on every bridge parameter wants a smaller step than Adam)
RUNS = {"backprop": (1e-2, 30), "embed": (1e-2, 30), "zo": (1e-3, 60)}


@dataclass(frozen=True)
class Ex:
    encoded: EncoderOutput
    text: str


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a long job shares this machine; tiny models gain nothing from threads
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def examples(tiny_engine) -> list[Ex]:
    waves = [noise_wave(0.6 + 0.1 * i, 100 + i) for i in range(12)]
    return [Ex(e, TEXTS[i % len(TEXTS)]) for i, e in enumerate(tiny_engine.encoder.encode_many(waves))]


@pytest.fixture(scope="module")
def parents(tiny_engine, tiny_bundle) -> dict[str, LoadedBridge]:
    ctc = tiny_engine.load_bridge_for(tiny_bundle / "bridge" / "ctc", tiny_engine.encoder, tiny_engine.llm)
    return {"conv": tiny_engine.bridge, "ctc": ctc}


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def run(recipe, engine, parent, examples, settings, *, pause_after: int | None = None, resume_from=None):
    steps: list[int] = []
    recipe.setup(engine, parent, examples, settings, resume_from=resume_from)
    status = recipe.train(should_pause=lambda: pause_after is not None and len(steps) >= pause_after,
                          on_progress=lambda p: steps.append(p.step))
    return status, steps


@pytest.mark.parametrize("kind", ["conv", "ctc"])
@pytest.mark.parametrize("method", list(RUNS))
def test_training_lowers_its_objective_and_leaves_the_parent(method, kind, tiny_engine, parents, examples, tmp_path):
    parent = parents[kind]
    before_parent = snapshot(parent.module)
    lr, steps = RUNS[method]
    recipe = make_recipe(method)
    recipe.setup(tiny_engine, parent, examples, TrainSettings(max_steps=steps, learning_rate=lr, batch_size=8))
    before = recipe.evaluate()
    progress = []
    assert recipe.train(should_pause=lambda: False, on_progress=progress.append) == "done"
    after = recipe.evaluate()
    assert after < before * 0.9, (method, kind, before, after)
    assert [p.step for p in progress] == list(range(1, steps + 1)) and progress[-1].total == steps
    assert all(p.seconds >= 0 and p.extra_memory_mb >= 0 for p in progress)

    result = recipe.result()
    recipe.cleanup()
    assert same(snapshot(parent.module), before_parent)  # the serving bridge never moved
    assert result.module is not parent.module and not same(snapshot(result.module), before_parent)
    assert result.version == "candidate" and result.config.parent_version == parent.version
    assert result.config.training["method"] == method and result.config.training["steps_done"] == steps
    assert not any(p.requires_grad for p in result.module.parameters()) and not result.module.training
    # the engine can store, load and serve the candidate
    save_bridge(result, tmp_path / "cand")
    loaded = tiny_engine.load_bridge_for(tmp_path / "cand", tiny_engine.encoder, tiny_engine.llm)
    assert same(snapshot(loaded.module), snapshot(result.module), atol=1e-7)
    text, *_ = tiny_engine.transcribe_encoded(examples[0].encoded, 1.0, bridge=loaded)
    assert isinstance(text, str)


def test_zo_builds_no_autograd_graph(tiny_engine, parents, examples):
    grad_modes: list[bool] = []
    hook = lambda module, args, out: grad_modes.append(torch.is_grad_enabled())  # noqa: E731
    recipe = ZeroOrderRecipe()
    recipe.setup(tiny_engine, parents["conv"], examples, TrainSettings(max_steps=6, learning_rate=1e-3, batch_size=8))
    handles = [tiny_engine.llm.model.register_forward_hook(hook), recipe.candidate.module.register_forward_hook(hook)]
    try:
        assert recipe.train(should_pause=lambda: False, on_progress=lambda p: None) == "done"
    finally:
        for h in handles:
            h.remove()
    assert grad_modes and not any(grad_modes)
    assert all(p.grad is None and not p.requires_grad for p in recipe.candidate.module.parameters())
    assert all(p.grad is None for p in tiny_engine.llm.model.parameters())
    # AdaZeta: 12 examples in batches of 8 = 2 steps per epoch; Q = floor(sqrt(epoch)), at most q_max
    assert [recipe.queries(s) for s in (0, 1, 2, 7, 8, 10_000)] == [1, 1, 1, 2, 2, 8]


def test_zo_tt_adapter_trains_and_folds_exactly(tiny_engine, parents, examples):
    assert factor_pair(896) == (28, 32) and factor_pair(64) == (8, 8) and factor_pair(7) == (1, 7)
    parent = parents["ctc"]
    recipe = ZeroOrderRecipe(tt_rank=2, learning_rate=3e-2)
    recipe.setup(tiny_engine, parent, examples, TrainSettings(max_steps=40, batch_size=8))
    assert recipe.adapter is not None and recipe.adapter.n_params == (8 * 8 + 8 * 8) * 2
    before = recipe.evaluate()
    assert abs(before - mean_objective(TranscriptObjective(tiny_engine.llm, recipe.inputs), parent.module,
                                       recipe.plan.eval_batches(8))) < 1e-6  # W_a = 0 at the start
    recipe.train(should_pause=lambda: False, on_progress=lambda p: None)
    after = recipe.evaluate()
    assert after < before * 0.95, (before, after)
    folded = recipe.result()
    assert result_record_ok(folded)
    plain = mean_objective(TranscriptObjective(tiny_engine.llm, recipe.inputs), folded.module,
                           recipe.plan.eval_batches(8))
    assert abs(plain - after) < 1e-4  # the folded bridge computes what bridge + adapter computed


def result_record_ok(bridge: LoadedBridge) -> bool:
    return bridge.config.training.get("adapter", {}).get("merged_into") == "final Linear"


def test_fold_is_the_residual_adapter():
    torch.manual_seed(0)
    from assistant.engine.bridge import CtcBridge

    bridge = CtcBridge(6, 12, 5, blank_id=0)
    adapter = TTAdapter(12, 3)
    with torch.no_grad():
        adapter.core2.normal_()
    x = torch.randn(4, 6)
    want = adapter(bridge.forward_segments(x))
    got = fold_into(bridge, adapter).forward_segments(x)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("method,options,pause_after", [
    ("backprop", {}, 4), ("zo", {}, 5), ("zo", {"tt_rank": 2}, 6), ("embed", {}, 4), ("ctc", {}, 4)])
def test_pause_save_resume_equals_an_uninterrupted_run(method, options, pause_after, tiny_engine, parents, examples,
                                                       tmp_path):
    kind = "ctc" if method in ("embed", "ctc") else "conv"
    settings = TrainSettings(max_steps=10, learning_rate=1e-2 if method != "zo" else 1e-3, batch_size=5, seed=3,
                             anchor_weight=0.1, replay=tuple(examples[:4]), replay_share=0.4,
                             personal_head=method == "ctc", adapter_dim=8 if method == "ctc" else 0)
    train = examples[4:]
    whole = make_recipe(method, **options)
    status, steps = run(whole, tiny_engine, parents[kind], train, settings)
    assert status == "done" and steps == list(range(1, 11))
    full = snapshot(whole.result().module)

    first = make_recipe(method, **options)
    status, steps = run(first, tiny_engine, parents[kind], train, settings, pause_after=pause_after)
    assert status == "paused" and steps == list(range(1, pause_after + 1))  # stopped within one step
    ckpt = first.save(tmp_path / "job")
    first.cleanup()
    files = [p for p in Path(ckpt).rglob("*") if p.is_file()]
    assert files and all(p.suffix in (".safetensors", ".json") for p in files), files  # no pickle, ever

    second = make_recipe(method, **options)
    status, steps = run(second, tiny_engine, parents[kind], train, settings, resume_from=ckpt)
    assert status == "done" and steps == list(range(pause_after + 1, 11))
    assert same(snapshot(second.result().module), full, atol=1e-6)  # bitwise on CPU in practice


def test_resume_refuses_another_job(tiny_engine, parents, examples, tmp_path):
    settings = TrainSettings(max_steps=4, batch_size=4)
    recipe = make_recipe("backprop")
    run(recipe, tiny_engine, parents["conv"], examples, settings, pause_after=2)
    recipe.save(tmp_path / "job")
    with pytest.raises(ModelFilesError, match="embed"):
        make_recipe("embed").setup(tiny_engine, parents["conv"], examples, settings, resume_from=tmp_path / "job")
    with pytest.raises(ModelFilesError, match="another set"):
        make_recipe("backprop").setup(tiny_engine, parents["conv"], examples[:6], settings,
                                      resume_from=tmp_path / "job")


def test_gradient_checkpointing_is_only_on_during_steps(tiny_engine, parents, examples):
    model = tiny_engine.llm.model
    seen: list[bool] = []
    layer = model.model.layers[0]
    handle = layer.register_forward_hook(lambda m, a, o: seen.append(checkpointing_enabled(model) and m.training))
    settings = TrainSettings(max_steps=5, learning_rate=1e-2, batch_size=6)
    try:
        with_gc = BackpropRecipe(gradient_checkpointing=True)
        run(with_gc, tiny_engine, parents["conv"], examples, settings)
    finally:
        handle.remove()
    assert seen and all(seen)
    assert not checkpointing_enabled(model) and not model.training  # the serving model is as it was
    assert not getattr(model, "_require_grads_hooks", None)
    plain = BackpropRecipe()
    run(plain, tiny_engine, parents["conv"], examples, settings)
    assert same(snapshot(with_gc.result().module), snapshot(plain.result().module), atol=1e-5)


def test_anchor_keeps_the_candidate_near_its_parent(tiny_engine, parents, examples):
    parent = snapshot(parents["conv"].module)

    def distance(weight: float) -> float:
        recipe = make_recipe("backprop")
        run(recipe, tiny_engine, parents["conv"], examples,
            TrainSettings(max_steps=15, learning_rate=1e-2, batch_size=6, anchor_weight=weight))
        got = snapshot(recipe.result().module)
        return sum(float((got[k] - parent[k]).pow(2).sum()) for k in parent)

    assert distance(50.0) < 0.5 * distance(0.0)


def test_batches_are_length_bucketed_seeded_and_mix_replay():
    texts = [("x" * n) for n in (1, 9, 2, 8, 3, 7, 4, 6, 5, 10)] + ["r1", "r2", "r3"]
    frames = list(range(len(texts)))
    plan = BatchPlan(texts, frames, 10, 3, batch_size=4, replay_share=0.25, seed=1)
    assert plan.train_k == 3 and plan.replay_k == 1 and plan.steps_per_epoch == 4
    epoch = [plan.batch(s) for s in range(4)]
    assert sorted(i for b in epoch for i in b if i < 10) == list(range(10))  # each example once per epoch
    assert all(sum(i >= 10 for i in b) == 1 for b in epoch)
    again = BatchPlan(texts, frames, 10, 3, batch_size=4, replay_share=0.25, seed=1)
    assert [again.batch(s) for s in range(8)] == [plan.batch(s) for s in range(8)]
    for b in epoch:  # one pool of 8 batches covers the whole epoch here, so batches are sorted runs
        lens = [len(texts[i]) for i in b if i < 10]
        assert lens == sorted(lens)


def test_resample_aligns_endpoints():
    t = torch.arange(6.0).view(3, 2)
    assert torch.equal(resample(t, 3), t)
    r = resample(t, 5)
    assert r.shape == (5, 2) and torch.equal(r[0], t[0]) and torch.equal(r[-1], t[-1])
    assert torch.equal(resample(t[:1], 4), t[:1].expand(4, 2))
    assert resample(t, 1).shape == (1, 2)


def test_make_recipe_methods():
    import assistant.alignment.trainers as trainers

    assert make_recipe("default").name == trainers.DEFAULT_METHOD == "ctc"
    assert all(isinstance(make_recipe(m), Recipe) for m in ("backprop", "zo", "embed", "ctc"))
    assert {make_recipe(m).name for m in ("backprop", "zo", "embed", "ctc")} == {
        "backprop", "zo", "embed", "ctc"}
    with pytest.raises(ValueError):
        make_recipe("sgd")


def test_inputs_need_ctc_logits_for_a_ctc_bridge(parents, examples):
    enc = examples[0].encoded
    bare = Ex(EncoderOutput(enc.features, None, enc.frame_rate_hz), "hi")
    with pytest.raises(ValueError, match="CTC logits"):
        BridgeInputs(parents["ctc"].module, [bare], torch.device("cpu"))


@pytest.mark.parametrize("method", ["backprop", "embed"])
def test_personal_head_grows_trains_with_ctc_and_serves(method, tiny_engine, parents, examples, tmp_path):
    parent = parents["ctc"]
    settings = TrainSettings(max_steps=30, learning_rate=1e-2, batch_size=8, personal_head=True, adapter_dim=16)
    recipe = make_recipe(method)
    recipe.setup(tiny_engine, parent, examples, settings)
    assert recipe.inputs.dynamic and recipe.inputs.ctc_targets is not None
    assert recipe.objective.ctc_weight == settings.ctc_weight
    with torch.no_grad():
        ctc_before = float(recipe.inputs.ctc_loss(recipe.candidate.module, range(len(examples))))
    before = recipe.evaluate()
    assert recipe.train(should_pause=lambda: False, on_progress=lambda p: None) == "done"
    assert recipe.evaluate() < before * 0.9
    with torch.no_grad():
        ctc_after = float(recipe.inputs.ctc_loss(recipe.candidate.module, range(len(examples))))
    assert ctc_after < ctc_before * 0.9, (ctc_before, ctc_after)  # the head learned the user's labels
    result = recipe.result()
    recipe.cleanup()
    assert not parent.module.owns_head  # the serving bridge was copied, never grown in place
    assert result.config.head_vocab == tiny_engine.encoder.ctc_head.out_features and result.config.adapter_dim == 16
    save_bridge(result, tmp_path / "cand")
    loaded = tiny_engine.load_bridge_for(tmp_path / "cand", tiny_engine.encoder, tiny_engine.llm)
    assert loaded.module.owns_head
    text, *_ = tiny_engine.transcribe_encoded(examples[0].encoded, 1.0, bridge=loaded, speculative=True)
    assert isinstance(text, str)


def test_personal_head_is_not_grown_on_a_conv_bridge(tiny_engine, parents, examples):
    recipe = make_recipe("backprop")
    recipe.setup(tiny_engine, parents["conv"], examples, TrainSettings(max_steps=1, personal_head=True))
    assert not recipe.inputs.dynamic and recipe.inputs.ctc_targets is None and recipe.candidate.config.head_vocab == 0
    recipe.cleanup()


def test_parent_lr_scale_zero_trains_only_the_grown_head(tiny_engine, parents, examples):
    parent = parents["ctc"]
    recipe = make_recipe("backprop")
    recipe.setup(tiny_engine, parent, examples, TrainSettings(max_steps=10, learning_rate=1e-2, batch_size=8,
                                                              personal_head=True, adapter_dim=8,
                                                              parent_lr_scale=0.0))
    assert recipe.train(should_pause=lambda: False, on_progress=lambda p: None) == "done"
    result = recipe.result()
    recipe.cleanup()
    before, after = snapshot(parent.module), snapshot(result.module)
    assert all(torch.equal(before[k], after[k]) for k in before)  # everything the parent had is untouched
    assert not torch.equal(after["head.weight"], tiny_engine.encoder.ctc_head.weight.float())
    assert after["adapter.up.weight"].abs().sum() > 0


@pytest.mark.parametrize("kind", ["conv", "ctc"])
def test_micro_batches_give_the_whole_batch_gradient(kind, tiny_engine, parents, examples):
    """Equal-length transcripts: parts weighed by examples add up to the whole batch's gradient."""
    same_text = [Ex(e.encoded, "call mom") for e in examples[:8]]
    grads, losses = [], []
    for micro in (0, 3):
        recipe = make_recipe("backprop")
        recipe.setup(tiny_engine, parents[kind], same_text,
                     TrainSettings(max_steps=1, learning_rate=1e-2, batch_size=8, micro_batch_size=micro,
                                   personal_head=kind == "ctc", parent_lr_scale=0.5, anchor_weight=0.1))
        recipe.train(should_pause=lambda: False, on_progress=lambda p: losses.append(p.loss))
        module = recipe.candidate.module  # the step's (clipped) gradients are still on its parameters
        grads.append({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-4, msg=n)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_a_grown_head_is_seeded_and_its_anchor_is_its_start(tiny_engine, parents, examples):
    def grown(seed):
        recipe = make_recipe("backprop")
        recipe.setup(tiny_engine, parents["ctc"], examples,
                     TrainSettings(max_steps=1, personal_head=True, seed=seed, anchor_weight=0.1))
        return recipe

    a, b, c = grown(1), grown(1), grown(2)
    assert same(snapshot(a.candidate.module), snapshot(b.candidate.module))
    assert not same(snapshot(a.candidate.module), snapshot(c.candidate.module))
    assert all(torch.equal(p, q) for p, q in zip(a.candidate.module.parameters(), a.anchor))


def test_ctc_recipe_trains_the_personal_head_without_the_llm(tiny_engine, parents, examples, tmp_path):
    parent = parents["ctc"]
    calls = []
    handle = tiny_engine.llm.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        recipe = make_recipe("ctc")
        recipe.setup(tiny_engine, parent, examples, TrainSettings(max_steps=30, learning_rate=1e-2, batch_size=8,
                                                                  personal_head=True, adapter_dim=16))
        before = recipe.evaluate()
        grown = snapshot(recipe.candidate.module)
        assert recipe.train(should_pause=lambda: False, on_progress=lambda p: None) == "done"
        assert recipe.evaluate() < before * 0.9
        result = recipe.result()
        recipe.cleanup()
    finally:
        handle.remove()
    assert not calls  # the LLM never ran: not in setup, not in a step
    after = snapshot(result.module)
    moved = {k for k in after if not torch.equal(after[k], grown[k])}
    # only what the CTC loss sees moves: the adapter and the head; the projection and label table stay
    assert moved and all(k.startswith(("adapter.", "head.")) for k in moved), moved
    save_bridge(result, tmp_path / "cand")
    loaded = tiny_engine.load_bridge_for(tmp_path / "cand", tiny_engine.encoder, tiny_engine.llm)
    assert loaded.module.owns_head and result.config.training["method"] == "ctc"


def test_ctc_recipe_refuses_a_bridge_without_a_personal_head(tiny_engine, parents, examples):
    from assistant.errors import BridgeMismatchError

    with pytest.raises(BridgeMismatchError, match="personal CTC head") as err:
        make_recipe("ctc").setup(tiny_engine, parents["conv"], examples, TrainSettings(max_steps=1, personal_head=True))
    assert "personal_head" in err.value.fix


def test_default_method_resolves_by_what_the_bridge_can_do():
    import assistant.alignment.trainers as trainers

    ok = dict(bridge_kind="ctc", encoder_has_ctc=True, personal_head=True)
    assert trainers.resolve_method("default", **ok) == trainers.DEFAULT_METHOD == "ctc"
    for missing in ({"bridge_kind": "conv"}, {"encoder_has_ctc": False}, {"personal_head": False}):
        lacking = {**ok, **missing}  # no personal CTC head possible: the fallback
        assert trainers.resolve_method("default", **lacking) == trainers.FALLBACK_METHOD == "backprop"
        # a named method stays as it is (ctc on such a bridge is refused by the recipe's setup, tested above)
        assert trainers.resolve_method("zo", **lacking) == "zo"
        assert trainers.resolve_method("ctc", **lacking) == "ctc"


def test_voice_routing_is_set_from_the_training_and_replay_frames(tiny_engine, parents, examples):
    train, replay = examples[:6], examples[6:]
    recipe = make_recipe("ctc")
    recipe.setup(tiny_engine, parents["ctc"], train, TrainSettings(
        max_steps=3, batch_size=4, personal_head=True, adapter_dim=8, replay=tuple(replay), replay_share=0.3,
        voice_routing=True))
    recipe.train(should_pause=lambda: False, on_progress=lambda p: None)
    result = recipe.result()
    recipe.cleanup()
    m = result.module
    assert result.config.voice_routing and m.voice_routing
    means = lambda xs: torch.stack([e.encoded.features.float().mean(0) for e in xs]).mean(0)  # noqa: E731
    assert torch.allclose(m.voice_user, means(train), atol=1e-5) and torch.allclose(m.voice_generic, means(replay),
                                                                                     atol=1e-5)
    assert float(m.voice_threshold) > 0
    # without generic speech to tell the user's voice from, there is no routing
    plain = make_recipe("ctc")
    plain.setup(tiny_engine, parents["ctc"], train, TrainSettings(max_steps=1, personal_head=True, voice_routing=True))
    plain.train(should_pause=lambda: False, on_progress=lambda p: None)
    assert not plain.result().config.voice_routing
    plain.cleanup()


def test_settings_for_takes_the_methods_own_steps_and_the_routing_mode(tmp_path):
    """[alignment] max_steps / learning_rate = 0 mean the method's own; voice_routing "on" routes in the
    trainer, "auto" leaves it to the gate (both ways), and the old booleans still read."""
    from assistant.alignment.trainers import settings_for, step_defaults
    from assistant.config import AlignmentConfig, load_config
    from assistant.errors import ConfigError

    ctc = settings_for(AlignmentConfig(), "ctc", seed=3)
    assert (ctc.max_steps, ctc.learning_rate) == step_defaults("ctc") == (600, 3e-3)
    assert (ctc.adapter_kernel, ctc.adapter_dropout, ctc.voice_routing) == (9, 0.3, False)
    bp = settings_for(AlignmentConfig(max_steps=7, voice_routing="on"), "backprop", seed=3)
    assert (bp.max_steps, bp.learning_rate, bp.voice_routing) == (7, 1e-3, True)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[alignment]\nvoice_routing = true\n")
    assert load_config(cfg).alignment.voice_routing == "on"
    for bad, key in (("voice_routing = \"sometimes\"", "alignment.voice_routing"),
                     ("adapter_kernel = 4", "alignment.adapter_kernel"),
                     ("lexicon_spot_margin = nan", "alignment.lexicon_spot_margin"),
                     ("lexicon_spot_margin = -1000.0", "alignment.lexicon_spot_margin")):
        cfg.write_text(f"[alignment]\n{bad}\n")
        with pytest.raises(ConfigError, match=key):
            load_config(cfg)
    cfg.write_text("[alignment]\nlexicon_spot_margin = -20.0\n")  # negative: a prior for the user's words
    assert load_config(cfg).alignment.lexicon_spot_margin == -20.0
    cfg.write_text("[engine]\nstream_lookahead_s = -1.0\n")
    with pytest.raises(ConfigError, match="engine.stream_lookahead_s"):
        load_config(cfg)


def test_the_job_gates_a_voice_routed_twin_without_touching_the_candidate(tiny_engine, parents, examples):
    from assistant.alignment.personalize import voice_routed as _voice_routed

    train, replay = examples[:6], examples[6:]
    recipe = make_recipe("ctc")
    recipe.setup(tiny_engine, parents["ctc"], train, TrainSettings(max_steps=2, batch_size=4, personal_head=True,
                                                                   adapter_dim=8, adapter_kernel=3))
    recipe.train(should_pause=lambda: False, on_progress=lambda p: None)
    cand = recipe.result()
    recipe.cleanup()
    before = snapshot(cand.module)
    (twin,) = _voice_routed(cand, train, replay)
    assert twin.config.voice_routing and twin.module is not cand.module and not cand.config.voice_routing
    assert not cand.module.voice_routing and same(before, snapshot(cand.module))
    assert _voice_routed(cand, train, []) == [] and _voice_routed(parents["ctc"], train, replay) == []
