"""The bundle: one directory that holds everything a model set needs.

    <bundle>/manifest.json     what is here, how it was built, how to prompt the LLM
    <bundle>/encoder/          a transformers speech encoder (save_pretrained + feature extractor)
    <bundle>/llm/              a transformers causal LM + tokenizer
    <bundle>/bridge/<kind>/    bridge checkpoints (bridge.json + bridge.safetensors), one per kind
    <bundle>/reply_adapter/    optional: low-rank weights the LLM uses for replies (engine/adapter.py)

Each component path in the manifest is relative to the bundle (or absolute), so any of the
three can be swapped by editing its path and its ``id`` (``fingerprint()`` of the new directory). Component identities (``id``) are fingerprints of
the weights, computed once when the bundle is made; a bridge records the identities it was
trained for and refuses to load against others.

No torch here: the CLI reads manifests to list bundles without importing it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import ModelFilesError
from assistant.strict import from_dict

MANIFEST_NAME = "manifest.json"
VOCABULARY_NAME = "vocabulary.txt"  # optional: the words the bundle was trained on, one per line
POINTER_NAME = "pretrained.json"
FORMAT = "assistant-bundle"
FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ComponentSpec:
    """One model directory of the bundle and its identity (``name@fingerprint``)."""

    path: str
    id: str


@dataclass(frozen=True)
class PromptFormat:
    """How the LLM is prompted; see docs/ARCHITECTURE.md ("Prompt formats").

    Speech prompt: ``[bos if speech_bos][instruction][speech embeddings][separator]`` then greedy
    decoding of the transcript until the tokenizer's eos (or ``transcript_end``, when set) or
    ``ceil(duration_s * transcript_tokens_per_s) + 8`` new tokens.

    Response: ``chat`` uses the tokenizer's chat template with the transcript as the user's
    turn; ``plain`` renders ``plain_template`` (``{transcript}``) once per history turn, each
    followed by its response and ``plain_turn_end``, then once for the current transcript.
    """

    instruction: str = ""
    separator: str = "\n"
    speech_bos: bool = True
    transcript_end: str | None = None
    transcript_tokens_per_s: float = 6.0
    response: str = "plain"
    plain_template: str = "User: {transcript}\nAssistant:"
    plain_turn_end: str = "\n"
    system_prompt: str | None = None
    response_max_new_tokens: int = 64
    history_turns: int = 3
    draft_case: str = "as_is"
    # Joint CTC/LLM transcript decoding (engine/joint.py): the CTC prefix score's weight, 0 = the LLM
    # alone. Chosen on the bundle's dev set when it is built (a small LLM needs the CTC's spelling).
    joint_ctc_weight: float = 0.0
    # Who writes the transcript: "llm" (the LLM decodes it from the speech prompt, with the draft and
    # joint decoding) or "ctc" (the bridge's CTC reading, then spotting; the LLM writes only the reply).
    # Chosen on the bundle's dev set when it is built: a frozen 135M LLM rewrites a reading it cannot
    # improve (bench/RESULTS.md, "Shipped bundle").
    transcript_source: str = "llm"
    # With transcript_source "ctc": reading words outside the bundle's vocabulary (<bundle>/vocabulary.txt,
    # plus the user's own words) are respelled as a vocabulary word whose CTC log-likelihood on the same
    # frames is at most this many nats worse (engine/correct.py); 0 = off. Chosen on dev by the build.
    vocabulary_tolerance: float = 0.0
    # With transcript_source "ctc" and a bundle word LM (<bundle>/language_model.json): the reading is a
    # CTC beam search scored with lm_weight x the LM's log-probability of each word + lm_word_bonus per
    # word (engine/beam.py), before the vocabulary correction; lm_weight 0 = the greedy reading.
    lm_weight: float = 0.0
    lm_word_bonus: float = 0.0
    # Response decoding: a bonus per character while a reply word is being copied from the request
    # (engine/lexicon.py's bias, the request's words as the lexicon), 0 = the LLM alone. A small LLM
    # otherwise rewrites the numbers and names it should repeat ("five minutes" -> "fifteen minutes").
    response_copy_bonus: float = 0.0

    def __post_init__(self) -> None:
        if self.response not in ("chat", "plain"):
            raise ModelFilesError(f"manifest prompt.response is {self.response!r}; allowed: 'chat', 'plain'")
        if self.draft_case not in ("as_is", "lower", "upper"):
            raise ModelFilesError(
                f"manifest prompt.draft_case is {self.draft_case!r}; allowed: 'as_is', 'lower', 'upper'"
            )
        if self.transcript_source not in ("llm", "ctc"):
            raise ModelFilesError(f"manifest prompt.transcript_source is {self.transcript_source!r}; "
                                  "allowed: 'llm', 'ctc'")
        if self.vocabulary_tolerance < 0:
            raise ModelFilesError(f"manifest prompt.vocabulary_tolerance is {self.vocabulary_tolerance}; "
                                  "allowed: >= 0 (0 = off)")
        if not (0.0 <= self.lm_weight <= 5.0 and -10.0 <= self.lm_word_bonus <= 10.0):
            raise ModelFilesError(f"manifest prompt.lm_weight / lm_word_bonus are {self.lm_weight} / "
                                  f"{self.lm_word_bonus}; allowed: 0 <= weight <= 5, -10 <= bonus <= 10")
        if not 0.0 <= self.joint_ctc_weight < 1.0:
            raise ModelFilesError(f"manifest prompt.joint_ctc_weight is {self.joint_ctc_weight}; allowed: 0 <= w < 1")
        if not 0.0 <= self.response_copy_bonus <= 10.0:
            raise ModelFilesError(f"manifest prompt.response_copy_bonus is {self.response_copy_bonus}; "
                                  "allowed: 0 <= bonus <= 10")
        if "{transcript}" not in self.plain_template:
            raise ModelFilesError("manifest prompt.plain_template must contain '{transcript}'")
        if self.transcript_tokens_per_s <= 0 or self.response_max_new_tokens < 1 or self.history_turns < 0:
            raise ModelFilesError(
                "manifest prompt: transcript_tokens_per_s must be > 0, response_max_new_tokens >= 1, "
                "history_turns >= 0"
            )


@dataclass(frozen=True)
class BundleManifest:
    name: str
    encoder: ComponentSpec
    llm: ComponentSpec
    prompt: PromptFormat = PromptFormat()
    bridges: dict[str, str] = field(default_factory=dict)
    default_bridge: str | None = None
    # directory of the LLM's reply adapter (engine/adapter.py), relative to the bundle; None: replies come
    # from the LLM as it is
    reply_adapter: str | None = None
    description: str = ""
    is_noise: bool = False
    build: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bundle:
    """A manifest and the directory it was read from, with paths resolved."""

    root: Path
    manifest: BundleManifest

    @property
    def encoder_dir(self) -> Path:
        return _resolve(self.root, self.manifest.encoder.path)

    @property
    def llm_dir(self) -> Path:
        return _resolve(self.root, self.manifest.llm.path)

    @property
    def reply_adapter_dir(self) -> Path | None:
        return _resolve(self.root, self.manifest.reply_adapter) if self.manifest.reply_adapter else None

    def vocabulary(self) -> tuple[str, ...]:
        """The bundle's vocabulary (``vocabulary.txt``: the words of its training text), or ()."""
        path = self.root / VOCABULARY_NAME
        try:
            return tuple(w for w in path.read_text(encoding="utf-8").split() if w)
        except FileNotFoundError:
            return ()
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFilesError(f"{path} is unreadable: {exc}") from exc

    def bridge_dir(self, kind: str | None = None) -> Path:
        kind = kind or self.manifest.default_bridge
        if not kind or kind not in self.manifest.bridges:
            have = ", ".join(sorted(self.manifest.bridges)) or "none"
            raise ModelFilesError(
                f"bundle {self.root} has no trained {kind or 'default'} bridge (bridges: {have})",
                fix="train one with personalized alignment, or use a bundle that ships one",
            )
        return _resolve(self.root, self.manifest.bridges[kind])


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and check ``<path>/manifest.json``; component directories must exist."""
    root = Path(path).expanduser().resolve()
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise ModelFilesError(
            f"{root} is not a model bundle: {MANIFEST_NAME} is missing",
            fix="build one with 'assistant models tiny DIR' or fetch one with 'assistant models pull PRESET'",
        )
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"{mpath} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ModelFilesError(f"{mpath} is not an {FORMAT} manifest (found {found!r})")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFilesError(
            f"{mpath} has format_version {data['format_version']}; this assistant reads up to {FORMAT_VERSION}",
            fix="upgrade the assistant",
        )
    manifest = from_dict(BundleManifest, data, error=ModelFilesError, noun="manifest key", source=str(mpath))
    bundle = Bundle(root=root, manifest=manifest)
    for label, d in (("encoder", bundle.encoder_dir), ("llm", bundle.llm_dir)):
        # a component with pretrained.json names pretrained weights assembled on first use (assistant/pretrained)
        if not (d / "config.json").is_file() and not (d / POINTER_NAME).is_file():
            raise ModelFilesError(
                f"bundle {root}: {label} directory {d} has no config.json (nor {POINTER_NAME})",
                fix="re-create the bundle or fix the path in manifest.json",
            )
    adapter = bundle.reply_adapter_dir
    if adapter is not None and not adapter.is_dir():
        raise ModelFilesError(f"bundle {root}: reply_adapter directory {adapter} does not exist",
                              fix="re-create the bundle or remove reply_adapter from manifest.json")
    return bundle


def save_manifest(root: str | os.PathLike[str], manifest: BundleManifest) -> Path:
    """Write the manifest atomically (temp file + rename) so a crash never leaves half a file."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)
    return root / MANIFEST_NAME


def fingerprint(model_dir: str | os.PathLike[str], name: str) -> str:
    """Identity of a model directory: ``name@`` + 16 hex digits of sha256 over config and weights.

    Computed once when a bundle is made (it reads every weight byte) and stored in the manifest.
    """
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    files = sorted(
        p for p in model_dir.rglob("*") if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    )
    if not files:
        raise ModelFilesError(f"{model_dir} holds no config.json or weight files")
    for p in files:
        h.update(str(p.relative_to(model_dir)).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return f"{name}@{h.hexdigest()[:16]}"
