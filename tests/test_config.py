"""The config: every invalid value is refused with an error that names exactly the offending key."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import pytest

import assistant.config
from assistant.config import METHODS
from assistant.config import Config, load_config
from assistant.errors import ConfigError
from conftest import REPO

# (section, TOML line, the key the error must name): one row per check in assistant/config.py; a check
# on two keys at once is two rows, one key wrong in each
CHECKS = [
    ("audio", "min_duration_s = 0.0", "audio.min_duration_s"),
    ("audio", "max_duration_s = 0.05", "audio.max_duration_s"),
    ("engine", "bridge_kind = \"qformer\"", "engine.bridge_kind"),
    ("engine", "stream_chunk_s = 0.2", "engine.stream_chunk_s"),
    ("engine", "stream_context_s = -1.0", "engine.stream_context_s"),
    ("engine", "stream_lookahead_s = -1.0", "engine.stream_lookahead_s"),
    ("engine", "device = \"tpu\"", "engine.device"),
    ("engine", "threads = -1", "engine.threads"),
    ("vad", "frame_ms = 15", "vad.frame_ms"),
    ("vad", "aggressiveness = 4", "vad.aggressiveness"),
    ("vad", "preroll_ms = -1", "vad.preroll_ms"),
    ("vad", "hangover_ms = 20", "vad.hangover_ms"),  # < frame_ms (30)
    ("vad", "start_frames = 0", "vad.start_frames"),
    ("vad", "min_utterance_s = 0.0", "vad.min_utterance_s"),
    ("vad", "max_utterance_s = 0.2", "vad.max_utterance_s"),  # < min_utterance_s (0.3)
    ("source", "kind = \"tape\"", "source.kind"),
    ("source", "kind = \"file\"", "source.path"),  # a file source without a path
    ("source", "reopen_interval_s = 0.0", "source.reopen_interval_s"),
    ("api", "port = 70000", "api.port"),
    ("api", "max_upload_mb = 0.0", "api.max_upload_mb"),
    ("api", "max_json_kb = 0.0", "api.max_json_kb"),
    ("api", "allowed_hosts = [\"box.local\", \"  \"]", "api.allowed_hosts"),
    ("store", "retention_days = -1.0", "store.retention_days"),
    ("store", "retention_max_mb = -1.0", "store.retention_max_mb"),
    ("daemon", "activation = \"sometimes\"", "daemon.activation"),
    ("daemon", "queue_max = 0", "daemon.queue_max"),
    ("daemon", "queue_policy = \"drop_all\"", "daemon.queue_policy"),
    ("daemon", "followup_s = 121.0", "daemon.followup_s"),
    ("daemon", "listen_window_s = 0.0", "daemon.listen_window_s"),
    ("daemon", "shutdown_timeout_s = 0.0", "daemon.shutdown_timeout_s"),
    ("actions", "ring_seconds = 0.0", "actions.ring_seconds"),
    ("actions", "handoff = \"carrier_pigeon\"", "actions.handoff"),
    ("actions", "handoff = \"webhook\"", "actions.handoff_url"),  # a hand-off without a URL
    ("actions", "handoff_timeout_s = 0.0", "actions.handoff_timeout_s"),
    ("output", "echo_share = 1.0", "output.echo_share"),
    ("output", "voice = \"nope:xx\"", "output.voice"),
    ("wyoming", "port = -1", "wyoming.port"),
    ("alignment", "micro_batch_size = -1", "alignment.micro_batch_size"),
    ("alignment", "voice_routing = \"sometimes\"", "alignment.voice_routing"),
    ("alignment", "lexicon_bonus = -1.0", "alignment.lexicon_bonus"),
    ("alignment", "lexicon_spot_margin = nan", "alignment.lexicon_spot_margin"),
    ("alignment", "adapter_dim = -1", "alignment.adapter_dim"),
    ("alignment", "personal_head = false\npersonal_top = true", "alignment.personal_top"),
    ("alignment", "top_rank = -1", "alignment.top_rank"),
    ("alignment", "parent_lr_scale = -0.1", "alignment.parent_lr_scale"),
    ("alignment", "anchor_weight = -0.1", "alignment.anchor_weight"),
    ("alignment", "replay_share = 1.0", "alignment.replay_share"),
    ("alignment", "method = \"magic\"", "alignment.method"),
    ("alignment", "idle_s = -1.0", "alignment.idle_s"),
    ("alignment", "min_new_labels = -1", "alignment.min_new_labels"),
    ("alignment", "window = \"01:00\"", "alignment.window"),
    ("alignment", "heldout_share = 0.0", "alignment.heldout_share"),
    ("alignment", "min_heldout = 0", "alignment.min_heldout"),
    ("alignment", "min_improvement = -0.1", "alignment.min_improvement"),
    ("alignment", "generic_tolerance = -0.1", "alignment.generic_tolerance"),
    ("alignment", "max_steps = -1", "alignment.max_steps"),
    ("alignment", "batch_size = 0", "alignment.batch_size"),
    ("alignment", "learning_rate = -0.001", "alignment.learning_rate"),
    ("alignment", "adapter_kernel = 4", "alignment.adapter_kernel"),
    ("alignment", "adapter_dropout = 1.0", "alignment.adapter_dropout"),
]


def _load(tmp_path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("section, line, key", CHECKS, ids=[c[2] for c in CHECKS])
def test_each_check_names_exactly_its_key(tmp_path, section, line, key):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"[{section}]\n{line}\n")
    msg = str(err.value)
    assert msg.startswith(f"config key {key} is invalid"), msg
    others = {k for _, _, k in CHECKS if k != key and f"config key {k} " in msg}
    assert not others, msg


def test_every_check_in_the_config_module_has_a_row():
    """A new ``_check`` (or a key's own ConfigError) in assistant/config.py needs its row in CHECKS."""
    tree = ast.parse(inspect.getsource(assistant.config))
    keys = {node.args[1].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_check"}
    assert keys | {"output.voice"} == {k for _, _, k in CHECKS}


def test_each_half_of_a_two_key_check_is_accepted_alone(tmp_path):
    """The values that used to share one check are valid one by one (the checks are separate)."""
    cfg = _load(tmp_path, "[daemon]\nlisten_window_s = 1.0\nshutdown_timeout_s = 0.5\n"
                          "[vad]\npreroll_ms = 0\nhangover_ms = 30\nmin_utterance_s = 0.1\nmax_utterance_s = 0.2\n"
                          "[alignment]\nmax_steps = 0\nbatch_size = 1\nlearning_rate = 0.0\nadapter_dim = 0\n"
                          "parent_lr_scale = 0.0\nanchor_weight = 0.0\nidle_s = 0.0\nmin_new_labels = 0\n"
                          "min_improvement = 0.0\ngeneric_tolerance = 0.0\n")
    assert (cfg.daemon.shutdown_timeout_s, cfg.vad.max_utterance_s, cfg.alignment.batch_size) == (0.5, 0.2, 1)


@pytest.mark.parametrize("text, message", [
    ("[alignment]\nmax_stepz = 3\n", "unknown config key alignment.max_stepz; allowed here: "),
    ("bogus = 1\n", "unknown config key bogus; allowed here: "),
    ("[alignment]\nmax_steps = \"many\"\n", "config key alignment.max_steps must be int, got str 'many'"),
    ("[alignment]\nmax_steps = true\n", "config key alignment.max_steps must be int, got bool True"),
    ("[alignment]\nmax_steps = 2.5\n", "config key alignment.max_steps must be int, got float 2.5"),
    ("[daemon]\nshutdown_timeout_s = \"soon\"\n", "config key daemon.shutdown_timeout_s must be float"),
    ("[api]\nallowed_hosts = \"box.local\"\n", "config key api.allowed_hosts must be a list of str"),
    ("[api]\nallowed_hosts = [\"box.local\", 3]\n", "config key api.allowed_hosts must be a list of str"),
    ("audio = 3\n", "config key audio must be a table, got int 3"),
    ("data_dir = 3\n", "config key data_dir must be str"),
])
def test_unknown_keys_and_wrong_types_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert str(err.value).startswith(message), str(err.value)


def test_values_are_read_as_their_fields_types(tmp_path):
    cfg = _load(tmp_path, "[daemon]\nshutdown_timeout_s = 5\n[api]\nallowed_hosts = [\" box.local \"]\n"
                          "[alignment]\nvoice_routing = false\n")
    assert cfg.daemon.shutdown_timeout_s == 5.0 and isinstance(cfg.daemon.shutdown_timeout_s, float)
    assert cfg.api.allowed_hosts == ("box.local",)
    assert cfg.alignment.voice_routing == "off"  # the boolean it was before "auto" existed
    assert _load(tmp_path, "") == Config()
    assert load_config(tmp_path / "config.toml", **{"engine.device": "cpu"}).engine.device == "cpu"


@pytest.mark.parametrize("method", METHODS)
def test_every_alignment_method_is_accepted(tmp_path, method):
    assert _load(tmp_path, f"[alignment]\nmethod = \"{method}\"\n").alignment.method == method


def test_the_methods_are_listed_once_and_the_config_needs_no_torch():
    code = ("import sys; import assistant.config; "
            "print([m for m in ('torch', 'numpy', 'assistant.alignment.trainers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    from assistant import config
    from assistant.alignment import trainers

    assert trainers.METHODS is config.METHODS
