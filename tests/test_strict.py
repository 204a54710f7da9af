"""The one strict reader (assistant/strict.py) behind manifests and bridge configs, and the one bridge
compatibility check (checkpoint.check_compatible) behind loading and swapping."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

import pytest

from assistant.bundle import load_bundle
from assistant.errors import BridgeMismatchError, ModelFilesError
from assistant.strict import from_dict


@dataclass(frozen=True)
class Inner:
    name: str
    size: int = 1


@dataclass(frozen=True)
class Outer:
    inner: Inner
    rate: float = 1.0
    words: tuple[str, ...] = ()
    parent: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


def test_from_dict_reads_nested_values_as_their_types():
    got = from_dict(Outer, {"inner": {"name": "a"}, "rate": 2, "words": ["x", "y"], "parent": None,
                            "extra": {"k": 3}}, error=ModelFilesError)
    assert got == Outer(Inner("a"), 2.0, ("x", "y"), None, {"k": 3}) and isinstance(got.rate, float)


@pytest.mark.parametrize("data, message", [
    ({"inner": {"name": "a", "sise": 2}}, "unknown manifest key inner.sise in m.json; allowed here: name, size"),
    ({"inner": {"name": "a", "size": "2"}}, "manifest key inner.size in m.json must be int, got str '2'"),
    ({"inner": {"size": 2}}, "manifest key inner.name is missing in m.json"),
    ({}, "manifest key inner is missing in m.json"),
    ({"inner": "a"}, "manifest key inner in m.json must be a table, got str 'a'"),
    ({"inner": {"name": "a"}, "parent": 3}, "manifest key parent in m.json must be str or null, got int 3"),
    ({"inner": {"name": "a"}, "words": "xy"}, "manifest key words in m.json must be a list of str"),
    ({"inner": {"name": "a"}, "extra": {"k": "3"}}, "manifest key extra in m.json must be a table"),
    ({"inner": {"name": "a"}, "rate": True}, "manifest key rate in m.json must be float, got bool True"),
])
def test_from_dict_names_the_exact_key_with_the_callers_error(data, message):
    with pytest.raises(ModelFilesError) as err:
        from_dict(Outer, data, error=ModelFilesError, noun="manifest key", source="m.json")
    assert str(err.value).startswith(message), str(err.value)


def test_a_manifest_names_the_bad_key(tiny_bundle, tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    good = json.loads((bundle / "manifest.json").read_text())
    for change, key in (({"prompt": {**good["prompt"], "respons": "chat"}}, "unknown manifest key prompt.respons"),
                        ({"llm": {"path": "llm"}}, "manifest key llm.id is missing"),
                        ({"prompt": {**good["prompt"], "history_turns": "3"}}, "manifest key prompt.history_turns")):
        (bundle / "manifest.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(ModelFilesError, match=key):
            load_bundle(bundle)


def test_a_bridge_config_names_the_bad_key(tmp_path):
    from assistant.engine.checkpoint import new_bridge, read_bridge_config, save_bridge

    save_bridge(new_bridge("conv", encoder_dim=8, llm_dim=6, encoder_id="e@1", llm_id="l@1", hidden_dim=4), tmp_path)
    good = json.loads((tmp_path / "bridge.json").read_text())
    assert read_bridge_config(tmp_path).lexicon == ()
    for change, key in (({"encoder_dimm": 8}, "unknown bridge config key encoder_dimm"),
                        ({"encoder_dim": "8"}, "bridge config key encoder_dim .*must be int"),
                        ({"lexicon": ["ok", 3]}, "bridge config key lexicon .*must be a list of str")):
        (tmp_path / "bridge.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(ModelFilesError, match=key):
            read_bridge_config(tmp_path)


def test_check_compatible_names_everything_that_differs():
    from assistant.engine.checkpoint import ModelFacts, check_compatible, new_bridge

    cfg = new_bridge("ctc", encoder_dim=8, llm_dim=6, encoder_id="e@1", llm_id="l@1", ctc_blank_id=0).config
    check_compatible(cfg, ModelFacts("e@1", 8, 0), ModelFacts("l@1", 6))
    with pytest.raises(BridgeMismatchError) as err:
        check_compatible(cfg, ModelFacts("e@2", 9, 1), ModelFacts("l@2", 7))
    msg = str(err.value)
    for part in ("bridge base does not fit", "encoder dim: bridge 8, loaded encoder 9",
                 "LLM dim: bridge 6, loaded LLM 7", "trained for e@1, loaded encoder is e@2",
                 "trained for l@1, loaded LLM is l@2", "CTC blank id: bridge 0, loaded encoder 1"):
        assert part in msg, msg
    with pytest.raises(BridgeMismatchError, match="no CTC head.*conv bridge"):
        check_compatible(cfg, ModelFacts("e@1", 8, None), ModelFacts("l@1", 6))
    check_compatible(cfg, ModelFacts("e@2", 8, 0), ModelFacts("l@2", 6), check_ids=False)


def test_loading_and_swapping_refuse_alike(tiny_bundle, tmp_path):
    """The same bridge is refused with the same reasons from disk and as a swap."""
    from assistant.engine.checkpoint import load_bridge, new_bridge, save_bridge
    from assistant.engine.engine import Engine

    engine = Engine.from_bundle(tiny_bundle, device="cpu")
    c = engine.bridge.config
    other = new_bridge("conv", encoder_dim=c.encoder_dim, llm_dim=c.llm_dim + 1, encoder_id=c.encoder_id,
                       llm_id="another-llm@1", version="v0009")
    save_bridge(other, tmp_path / "v")
    with pytest.raises(BridgeMismatchError) as swapped:
        engine.swap_bridge(other)
    with pytest.raises(BridgeMismatchError) as loaded:
        Engine.load_bridge_for(tmp_path / "v", engine.encoder, engine.llm)
    with pytest.raises(BridgeMismatchError):
        load_bridge(tmp_path / "v", encoder_id=c.encoder_id, llm_id=c.llm_id, encoder_dim=c.encoder_dim,
                    llm_dim=c.llm_dim, ctc_blank_id=None)
    assert swapped.value.problem.split(" does not fit: ")[1] == loaded.value.problem.split(" does not fit: ")[1]
    assert engine.bridge.config is c
