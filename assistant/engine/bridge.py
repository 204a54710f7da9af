"""The trainable bridge: encoder frames -> LLM input embeddings.

Two kinds:
- ``conv`` (Nue-ASR): [LayerNorm] -> Conv1d(k4, s2) + GELU -> Conv1d(k4, s2) + GELU -> Linear; 4x fewer
  positions (50 Hz frames -> 12.5 Hz).
- ``ctc``: drop the frames whose CTC argmax is blank, merge each run of one label into the mean of its
  features (one position per emitted CTC symbol), then LayerNorm -> projection (Linear, or a
  Linear-GELU-Linear MLP when ``hidden_dim > 0``).

A ctc bridge with ``text_input`` hands the LLM text instead of projected features: the LLM's own token
embeddings of what its CTC head reads (greedy), the hard form of LegoSLM's posterior-weighted token
embeddings (arXiv 2505.11352). A frozen pretrained LLM reads its own tokens without any training of the
bridge (it reads projected features or character embeddings as noise: bench/RESULTS.md), so a 2-core
CPU can build and personalize it with the CTC loss alone; joint decoding keeps the LLM's transcript
faithful to the audio. It has no projection; only its personal head and adapter are trained.

A ctc bridge may also own a *personal head* (``head_vocab > 0``: a copy of the encoder's CTC head,
trained with the bridge) and a zero-initialised residual *adapter* on the encoder frames
(``adapter_dim > 0``). Personalization grows them (``with_personal_head``): the frozen encoder's CTC head
decides where segments start and which label each gets, and for a voice it never heard that decision
is wrong in ways the projection after it cannot undo; with its own head the bridge can learn the
user's voice where the segmentation is made. Grown from a parent, the bridge starts out computing
exactly what the parent computed.

A checkpoint is a directory ``bridge.safetensors`` + ``bridge.json`` (see checkpoint.py); the module is
rebuilt from the JSON alone.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

BRIDGE_KINDS = ("conv", "ctc")
MIN_FRAMES = 4  # the two stride-2 convolutions need 4 frames (80 ms) to emit one position


def ctc_compress(features: torch.Tensor, logits: torch.Tensor, blank_id: int) -> torch.Tensor:
    """(frames, dim), (frames, vocab) -> (segments, dim); see ``ctc_segments``."""
    return ctc_segments(features, logits, blank_id)[0]


def ctc_segments(features: torch.Tensor, logits: torch.Tensor, blank_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames, dim), (frames, vocab) -> (segments, dim) and each segment's CTC label (segments,).

    A segment is a maximal run of consecutive frames with the same non-blank argmax; a blank between
    two runs of one label keeps them apart (as in CTC decoding). An utterance with no non-blank frame
    becomes one segment, the mean of all frames, so the LLM always gets a speech prompt.
    """
    if features.shape[0] != logits.shape[0]:
        raise ValueError(f"features have {features.shape[0]} frames but logits {logits.shape[0]}")
    labels = logits.argmax(-1)
    keep = labels != blank_id
    if not bool(keep.any()):
        return features.mean(0, keepdim=True), labels.new_full((1,), blank_id)
    prev_label = torch.cat([labels.new_full((1,), -1), labels[:-1]])
    prev_keep = torch.cat([keep.new_zeros(1), keep[:-1]])
    starts = keep & ((labels != prev_label) | ~prev_keep)
    seg = torch.cumsum(starts.long(), 0) - 1
    n = int(starts.sum())
    sums = features.new_zeros(n, features.shape[1]).index_add_(0, seg[keep], features[keep])
    counts = torch.bincount(seg[keep], minlength=n).to(features.dtype).unsqueeze(1)
    return sums / counts, labels[starts]


def _valid(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, frames, 1) mask of real frames."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(-1)


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in seqs], device=seqs[0].device)
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True), lengths


class ConvBridge(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int, hidden_dim: int, input_norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()
        self.conv1 = nn.Conv1d(encoder_dim, hidden_dim, kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=4, stride=2, padding=1)
        self.proj = nn.Linear(hidden_dim, llm_dim)
        self.act = nn.GELU()

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        # k=4, s=2, p=1 gives floor(T / 2) per convolution
        return torch.div(torch.div(lengths, 2, rounding_mode="floor"), 2, rounding_mode="floor")

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, encoder_dim), (batch,) -> (batch, frames // 4, llm_dim), (batch,)."""
        if features.shape[1] < MIN_FRAMES:
            features = nn.functional.pad(features, (0, 0, 0, MIN_FRAMES - features.shape[1]))
            lengths = lengths.clamp(min=MIN_FRAMES)
        # Zero everything past each utterance's end, after each layer, so a padded batch gives exactly
        # what each utterance alone gives (the convolutions' own zero padding).
        x = self.norm(features) * _valid(lengths, features.shape[1])
        x = self.act(self.conv1(x.transpose(1, 2))).transpose(1, 2)
        half = torch.div(lengths, 2, rounding_mode="floor")
        x = x * _valid(half, x.shape[1])
        x = self.act(self.conv2(x.transpose(1, 2))).transpose(1, 2)
        return self.proj(x), self.out_lengths(lengths)


class ResidualAdapter(nn.Module):
    """x + up(GELU(mix(down(LayerNorm(x))))), with ``up`` zero-initialised: the identity until trained.

    ``kernel_size`` > 1 makes ``mix`` a depthwise convolution over time (``kernel_size`` frames, centred):
    a far voice's frames are told apart by their neighbours, which a per-frame adapter cannot see
    (bench/RESULTS.md, "Adapter shape"). ``dropout`` acts on the hidden units in training only: a
    user's 100 utterances are memorised otherwise (training CER 0, held-out CER barely moves).
    """

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"adapter kernel_size {kernel_size} must be odd and >= 1 (centred on the frame)")
        if not 0 <= dropout < 1:
            raise ValueError(f"adapter dropout {dropout} must be in [0, 1)")
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, hidden_dim)
        self.mix = (nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2, groups=hidden_dim)
                    if kernel_size > 1 else None)
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(hidden_dim, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    @property
    def kernel_size(self) -> int:
        return int(self.mix.kernel_size[0]) if self.mix is not None else 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(frames, dim) or (batch, frames, dim) with each utterance's length (padded batches) -> same shape."""
        h = self.down(self.norm(x))
        if self.mix is not None:
            single = h.dim() == 2
            hb = h.unsqueeze(0) if single else h
            if lengths is not None and not single:  # padding must not reach the last frames through the kernel
                hb = hb * _valid(lengths, hb.shape[1])
            hb = self.mix(hb.transpose(1, 2)).transpose(1, 2)
            h = hb.squeeze(0) if single else hb
        return x + self.up(self.drop(nn.functional.gelu(h)))


class CtcBridge(nn.Module):
    """With ``ctc_vocab > 0`` each segment also gets a learned embedding of its CTC label (the label
    table, initialised from the LLM's own embeddings of those characters by ``init_label_table``): the
    LLM then starts from reading a noisy transcript, which a small LLM trained to copy noisy text reads
    well, and the projection of the acoustic features adds what the label alone misses.

    ``adapter_dim`` / ``head_vocab`` > 0 add the personal adapter and CTC head (module docstring)."""

    def __init__(self, encoder_dim: int, llm_dim: int, hidden_dim: int, blank_id: int, input_norm: bool = True,
                 ctc_vocab: int = 0, adapter_dim: int = 0, head_vocab: int = 0, voice_routing: bool = False,
                 adapter_kernel: int = 1, adapter_dropout: float = 0.0, text_input: bool = False) -> None:
        super().__init__()
        self.blank_id = blank_id
        self.llm_dim = llm_dim
        self.text_input = text_input
        self.voice_routing = voice_routing
        if voice_routing:  # the centroids that tell the user's voice from generic speech (set_voice)
            self._voice_buffers(encoder_dim)
        if text_input and (ctc_vocab or hidden_dim):
            raise ValueError("a text-input ctc bridge has no label table or projection (ctc_vocab, hidden_dim 0)")
        self.label_embed = nn.Embedding(ctc_vocab, llm_dim) if ctc_vocab > 0 else None
        if self.label_embed is not None:
            nn.init.zeros_(self.label_embed.weight)
        self.norm = nn.LayerNorm(encoder_dim) if input_norm and not text_input else nn.Identity()
        self.proj: nn.Module | None = None
        if text_input:
            pass
        elif hidden_dim > 0:
            self.proj = nn.Sequential(nn.Linear(encoder_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, llm_dim))
        else:
            self.proj = nn.Linear(encoder_dim, llm_dim)
        self.adapter = (ResidualAdapter(encoder_dim, adapter_dim, adapter_kernel, adapter_dropout)
                        if adapter_dim > 0 else None)
        self.head = nn.Linear(encoder_dim, head_vocab) if head_vocab > 0 else None
        # a personal copy of the encoder's top (whisper.EncoderTop; with_personal_top): it reads the
        # encoder's lower states and gives the features the adapter and head read
        self.top: nn.Module | None = None

    @property
    def owns_head(self) -> bool:
        return self.head is not None

    @property
    def owns_top(self) -> bool:
        return self.top is not None

    def _voice_buffers(self, dim: int) -> None:
        self.voice_routing = True
        self.register_buffer("voice_user", torch.zeros(dim))
        self.register_buffer("voice_generic", torch.zeros(dim))
        self.register_buffer("voice_threshold", torch.ones(1))

    def set_voice(self, user: torch.Tensor, generic: torch.Tensor, threshold: float = 1.0) -> None:
        """Route by voice from now on: ``user`` / ``generic`` are mean encoder frames (dim,) of the user's
        training utterances and of generic speech (each utterance's mean, averaged); an utterance is the
        user's when its distance to ``user`` over its distance to ``generic`` is below ``threshold``."""
        if not self.voice_routing:
            self._voice_buffers(user.shape[0])
            self.to(user.device)
        with torch.no_grad():
            self.voice_user.copy_(user)
            self.voice_generic.copy_(generic)
            self.voice_threshold.fill_(threshold)

    def voice_ratio(self, features: torch.Tensor) -> float:
        """Distance of the utterance's mean frame to the user's centroid over that to the generic one."""
        v = features.float().mean(0).to(self.voice_user.device)  # cached frames live on the CPU
        return float((v - self.voice_user.float()).norm() / (v - self.voice_generic.float()).norm().clamp_min(1e-9))

    def is_users_voice(self, features: torch.Tensor) -> bool:
        return self.voice_ratio(features) < float(self.voice_threshold)

    def frames(self, features: torch.Tensor, ctc_logits: torch.Tensor | None, lower: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames, dim), encoder logits or None, the encoder's lower states (a bridge with a personal
        top reads them instead of ``features``) -> adapted frames and the logits that segment them.

        With voice routing (serving, eval mode), an utterance that is not in the user's voice takes the
        parent's path: the encoder's own frames and logits, as if the bridge had no head or adapter."""
        if self.voice_routing and not self.training and ctc_logits is not None and self.head is not None \
                and not self.is_users_voice(features):
            return features, ctc_logits
        if self.top is not None:
            if lower is None:
                raise ValueError("this bridge's personal top reads the encoder's lower states, and this "
                                 "utterance has none: encode it again with the bundle's Whisper encoder")
            features = self.top(lower.to(features.device, torch.float32))
        if self.adapter is not None:
            features = self.adapter(features)
        if self.head is not None:
            return features, self.head(features)
        if ctc_logits is None:
            raise ValueError("the ctc bridge needs the encoder's CTC logits")
        return features, ctc_logits

    def forward(self, features: torch.Tensor, lengths: torch.Tensor, ctc_logits: torch.Tensor | None = None,
                lower: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, dim), (batch,), (batch, frames, vocab), (batch, frames, lower dim) ->
        (batch, segments, llm_dim), (batch,)."""
        outs = []
        for i, n in enumerate(lengths.tolist()):
            f, logits = self.frames(features[i, :n], None if ctc_logits is None else ctc_logits[i, :n],
                                    None if lower is None else lower[i, :n])
            outs.append(self.forward_segments(*ctc_segments(f, logits, self.blank_id)))
        return _pad(outs)

    def forward_segments(self, segments: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Project already-compressed segments (and their CTC labels, used by the label table)."""
        if self.proj is None:
            raise ValueError("a text-input ctc bridge hands the LLM text, not projected features: it is "
                             "trained with the 'ctc' alignment method (its personal head), not through the LLM")
        out = self.proj(self.norm(segments))
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("this ctc bridge has a label table: pass the segments' CTC labels")
            out = out + self.label_embed(labels)
        return out


def bridge_ctc_logits(module: nn.Module, features: torch.Tensor, ctc_logits: torch.Tensor | None,
                      lower: torch.Tensor | None = None) -> torch.Tensor | None:
    """The CTC logits that describe what this bridge hears: its personal head's when it has one."""
    if isinstance(module, CtcBridge) and module.owns_head:
        return module.frames(features, ctc_logits, lower)[1]
    return ctc_logits


def with_personal_top(module: nn.Module, top: nn.Module) -> nn.Module:
    """A copy of ctc bridge ``module`` (which owns a CTC head) that reads the encoder's lower states
    through ``top``, a fresh copy of the encoder's top (``SpeechEncoder.personal_top``): same outputs as
    ``module`` until the top is trained. A top the bridge already has is kept."""
    if not (isinstance(module, CtcBridge) and module.owns_head):
        raise ValueError("only a ctc bridge with its own CTC head can own a personal top")
    grown = copy.deepcopy(module)
    if grown.top is None:
        ref = next(module.parameters())
        grown.top = top.to(ref.device, ref.dtype)
    return grown


def with_personal_head(module: nn.Module, encoder_head: nn.Module, adapter_dim: int, adapter_kernel: int = 1,
                       adapter_dropout: float = 0.0) -> nn.Module:
    """A copy of ctc bridge ``module`` that owns a CTC head (from the encoder's, or its own if it already
    has one) and a residual adapter of ``adapter_dim`` (zero: none; ``adapter_kernel`` frames wide,
    ``adapter_dropout`` in training); same outputs as ``module``. An adapter the bridge already has is
    kept as it is."""
    if not isinstance(module, CtcBridge):
        raise ValueError("only a ctc bridge can own a CTC head")
    if module.owns_head and (module.adapter is not None or adapter_dim == 0):
        return copy.deepcopy(module)
    w = module.head.weight if module.head is not None else encoder_head.weight
    b = module.head.bias if module.head is not None else encoder_head.bias
    label = module.label_embed
    proj_hidden = module.proj[0].out_features if isinstance(module.proj, nn.Sequential) else 0
    dim = w.shape[1]
    grown = CtcBridge(dim, module.llm_dim, proj_hidden, module.blank_id,
                      input_norm=not isinstance(module.norm, nn.Identity),
                      ctc_vocab=label.num_embeddings if label is not None else 0, adapter_dim=adapter_dim,
                      head_vocab=w.shape[0], voice_routing=module.voice_routing, adapter_kernel=adapter_kernel,
                      adapter_dropout=adapter_dropout, text_input=module.text_input)
    # the bridge's own dtype and device, never the encoder head's: on a GPU the encoder runs in fp16
    # while bridges stay fp32 (checkpoint.py), and a half-precision head would not take fp32 frames;
    # a text-input bridge without parameters yet takes the head's device, in fp32
    ref = next(module.parameters(), None)
    grown = grown.to(ref.device, ref.dtype) if ref is not None else grown.to(w.device, torch.float32)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("head.")}
    if module.adapter is not None:
        grown.adapter = copy.deepcopy(module.adapter)
    if module.top is not None:
        grown.top = copy.deepcopy(module.top)
    missing, unexpected = grown.load_state_dict(state, strict=False)
    if unexpected or any(not (k.startswith("adapter.") or k.startswith("head.")) for k in missing):
        raise ValueError(f"cannot grow this bridge: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        grown.head.weight.copy_(w.detach())
        grown.head.bias.copy_(b.detach() if b is not None else torch.zeros_like(grown.head.bias))
    return grown


def init_label_table(module: nn.Module, ctc_tokens: list[str], delimiter: str, llm) -> int:
    """Set the label table rows to the LLM's input embeddings of the same characters (the CTC word
    delimiter -> a space); returns how many labels found a token. ``llm`` is a CausalLM."""
    table = getattr(module, "label_embed", None)
    if table is None:
        return 0
    found = 0
    with torch.no_grad():
        for i, tok in enumerate(ctc_tokens[: table.num_embeddings]):
            ch = " " if tok == delimiter else tok
            ids = llm.tokenizer(ch, add_special_tokens=False).input_ids if len(ch) == 1 else []
            if len(ids) == 1:
                table.weight[i] = llm.embed_ids(ids)[0, 0].to(table.weight.dtype)
                found += 1
    return found


def build_bridge(kind: str, *, encoder_dim: int, llm_dim: int, hidden_dim: int,
                 blank_id: int | None = None, input_norm: bool = True, ctc_vocab: int = 0,
                 adapter_dim: int = 0, head_vocab: int = 0, voice_routing: bool = False, adapter_kernel: int = 1,
                 adapter_dropout: float = 0.0, text_input: bool = False) -> nn.Module:
    if kind == "conv":
        if text_input:
            raise ValueError("only a ctc bridge takes text input")
        if adapter_dim or head_vocab or voice_routing:
            raise ValueError("a conv bridge has no personal adapter or CTC head")
        return ConvBridge(encoder_dim, llm_dim, hidden_dim, input_norm=input_norm)
    if kind == "ctc":
        if blank_id is None:
            raise ValueError("a ctc bridge needs the CTC blank id")
        return CtcBridge(encoder_dim, llm_dim, hidden_dim, blank_id, input_norm=input_norm, ctc_vocab=ctc_vocab,
                         adapter_dim=adapter_dim, head_vocab=head_vocab, voice_routing=voice_routing,
                         adapter_kernel=adapter_kernel, adapter_dropout=adapter_dropout, text_input=text_input)
    raise ValueError(f"unknown bridge kind {kind!r}; allowed: {', '.join(BRIDGE_KINDS)}")


def run_bridge(module: nn.Module, features: list[torch.Tensor],
               ctc_logits: list[torch.Tensor | None] | None = None,
               lower: list[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """Batch unpadded per-utterance inputs through a bridge; returns unpadded outputs."""
    feats, lengths = _pad(features)
    if isinstance(module, CtcBridge):
        if module.owns_head:  # the encoder's logits only serve voice routing here
            have = ctc_logits is not None and all(x is not None for x in ctc_logits)
            low = _pad(lower)[0] if lower is not None and all(x is not None for x in lower) else None  # type: ignore[arg-type]
            out, out_len = module(feats, lengths, _pad(ctc_logits)[0] if have else None, low)  # type: ignore[arg-type]
        else:
            if ctc_logits is None or any(x is None for x in ctc_logits):
                raise ValueError("the ctc bridge needs the encoder's CTC logits")
            logits, _ = _pad(ctc_logits)  # type: ignore[arg-type]
            out, out_len = module(feats, lengths, logits)
    else:
        out, out_len = module(feats, lengths)
    return [out[i, :n] for i, n in enumerate(out_len.tolist())]
