"""Joint CTC/LLM decoding: each transcript token is chosen by the LLM's log-probability plus a weighted
CTC prefix score of the same text (hybrid CTC/attention decoding, Watanabe et al. 2017, greedy).

Why: a small LLM reading a speech prompt rewrites what it does not expect — rare words, the user's
contacts and places — from its own prior, while the CTC head spells what it hears. The CTC prefix
score ``log P_ctc(prefix + token...)`` - ``log P_ctc(prefix...)`` says how well the audio supports
each candidate; ``(1 - w) * log p_llm + w * ctc_delta`` decides. Where the CTC head is personalized
(a bridge with its own head), what the user's voice taught it reaches the transcript directly.

The prefix probabilities follow the standard CTC forward recursion over all frames, but each
candidate's recursion is linear in its previous values, so it is computed in closed form with
a cumulative log-sum-exp over time (``np.logaddexp.accumulate``), for all candidates at once (no Python loop over frames).

Candidates are the LLM's top ``TOP_K`` tokens and the stop tokens. An LLM token maps to CTC labels by
its text (lower case, a space -> the word delimiter, other characters skipped); a token with no CTC
label at all (punctuation) is never chosen: it would not advance the CTC prefix, and a confused LLM
then repeats it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from assistant.engine.lexicon import LexiconBias

TOP_K = 32
NEG = -math.inf


class CtcPrefixScorer:
    """Prefix probabilities of label sequences under one utterance's CTC log-probabilities.

    numpy float64 on the CPU: a transcript extends its prefix once per token, each time with a handful of
    small vector operations over the frames, where torch's per-operation overhead was most of the cost.
    """

    def __init__(self, log_probs: torch.Tensor, blank_id: int) -> None:
        self.lp = log_probs.detach().to("cpu", torch.float64).numpy()  # (T, V)
        self.blank = blank_id
        self.T = int(self.lp.shape[0])
        self.B = np.cumsum(self.lp[:, blank_id])  # log prod of blank probs up to t
        # the empty prefix: no label yet, all blank so far
        self.rn = np.full(self.T, NEG)
        self.rb = self.B.copy()
        self.last = -1
        self.psi = 0.0

    def end_score(self) -> float:
        """log P(the whole utterance is exactly the current prefix) - log P(prefix...)."""
        return float(np.logaddexp(self.rn[-1], self.rb[-1])) - self.psi

    def extend(self, rn: np.ndarray, rb: np.ndarray, last: np.ndarray, empty: np.ndarray,
               labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """States (K, T) of K prefixes extended by one label each -> new rn, rb (K, T) and log psi (K,)."""
        y = self.lp[:, labels].T  # (K, T)
        L = np.cumsum(y, 1)
        phi = np.where((labels != last)[:, None], np.logaddexp(rb, rn), rb)
        init = np.where(empty, y[:, 0], NEG)
        rn_h = np.empty_like(y)
        rn_h[:, 0] = init
        rb_h = np.full_like(y, NEG)
        if self.T > 1:
            with np.errstate(invalid="ignore"):  # -inf - -inf where a prefix cannot be there yet
                acc = np.logaddexp.accumulate(np.nan_to_num(phi[:, :-1] - L[:, :-1], nan=NEG), 1)
            rn_h[:, 1:] = np.logaddexp(init[:, None] + L[:, 1:] - L[:, :1], L[:, 1:] + acc)
            terms = np.concatenate([init[:, None], phi[:, :-1] + y[:, 1:]], 1)
            rb_h[:, 1:] = self.B[None, 1:] + np.logaddexp.accumulate(rn_h[:, :-1] - self.B[None, :-1], 1)
        else:
            terms = init[:, None]
        psi = np.logaddexp.reduce(terms, 1)
        return rn_h, rb_h, psi

    def score(self, label_seqs: Sequence[Sequence[int]]) -> tuple[list[float], list[tuple]]:
        """CTC score increments of extending the current prefix by each label sequence, and the states
        they lead to (for ``advance``). Sequences may differ in length; an empty one stays put."""
        k = len(label_seqs)
        rn = np.repeat(self.rn[None], k, 0)
        rb = np.repeat(self.rb[None], k, 0)
        last = np.full(k, self.last, dtype=np.int64)
        psi = np.full(k, self.psi)
        empty = np.full(k, self.last == -1)
        longest = max((len(s) for s in label_seqs), default=0)
        for j in range(longest):
            rows = np.array([i for i, s in enumerate(label_seqs) if len(s) > j], dtype=np.int64)
            labels = np.array([label_seqs[i][j] for i in rows], dtype=np.int64)
            n_rn, n_rb, n_psi = self.extend(rn[rows], rb[rows], last[rows], empty[rows], labels)
            rn[rows], rb[rows], psi[rows], last[rows] = n_rn, n_rb, n_psi, labels
            empty[rows] = False
        deltas = (psi - self.psi).tolist()
        states = [(rn[i], rb[i], int(last[i]), float(psi[i])) for i in range(k)]
        return deltas, states

    def advance(self, state: tuple) -> None:
        self.rn, self.rb, self.last, self.psi = state


class TokenLabels:
    """LLM token id -> CTC label ids of its text (cached; tokens are mapped only when first seen).

    ``spellable(vocab_size)``: the tokens a transcript may use, those whose text is lowercase CTC
    characters after at most a leading space. A subword vocabulary also holds capitalized, punctuated
    and fragment tokens ("Ciuilu", " -", '"d'); with a high CTC weight those spell the CTC letters one
    fragment at a time, and a frozen chat LLM then writes garbage a clean reading never had."""

    def __init__(self, token_text: Callable[[int], str], ctc_vocab: dict[str, int], delimiter: str) -> None:
        self.token_text = token_text
        self.vocab = ctc_vocab
        self.delim_id = ctc_vocab[delimiter]
        self.cache: dict[int, list[int]] = {}
        self._spellable: torch.Tensor | None = None

    def spellable(self, vocab_size: int) -> torch.Tensor:
        if self._spellable is None or self._spellable.shape[0] != vocab_size:
            letters = set(self.vocab) - {next(k for k, v in self.vocab.items() if v == self.delim_id)}
            ok = torch.zeros(vocab_size, dtype=torch.bool)
            for i in range(vocab_size):
                text = self.token_text(i)
                word = text[1:] if text[:1] == " " else text
                ok[i] = bool(word) and all(ch in letters for ch in word)
            self._spellable = ok
        return self._spellable

    def __call__(self, token_id: int) -> list[int]:
        got = self.cache.get(token_id)
        if got is None:
            text = self.token_text(token_id).lower()
            got = [self.delim_id if ch.isspace() else self.vocab[ch] for ch in text
                   if ch.isspace() or ch in self.vocab]
            self.cache[token_id] = got
        return got


class JointChooser:
    """Picks each transcript token from the LLM's logits and the CTC prefix score (see module doc).

    ``choose(logits)`` returns the token for the current prefix; ``accept(token)`` appends it to the
    prefix (decode calls it for every token it outputs, in order).
    """

    def __init__(self, scorer: CtcPrefixScorer, labels: TokenLabels, stop_ids: set[int], weight: float,
                 top_k: int = TOP_K, lexicon: LexiconBias | None = None) -> None:
        self.scorer, self.labels, self.stop_ids, self.weight, self.top_k = scorer, labels, stop_ids, weight, top_k
        self.lexicon = lexicon  # a bias toward the user's own words (engine/lexicon.py)
        self._states: dict[int, tuple | None] = {}

    def _labels_here(self, token: int) -> list[int]:
        seq = list(self.labels(token))
        if self.scorer.last in (-1, self.labels.delim_id):  # no leading or doubled word delimiter
            while seq and seq[0] == self.labels.delim_id:
                seq.pop(0)
        return seq

    def choose(self, logits: torch.Tensor) -> int:
        logp = torch.log_softmax(logits.float(), -1)
        k = min(self.top_k, logp.shape[-1])
        top = logp.masked_fill(~self.labels.spellable(logp.shape[-1]).to(logp.device), NEG).topk(k)
        cands = [int(t) for t in top.indices.tolist()]
        cands += [s for s in self.stop_ids if s not in cands and s < logp.shape[-1]]
        w = self.weight
        llm = {c: (1 - w) * float(logp[c]) for c in cands}
        if self.lexicon is not None:  # the bias joins the LLM term: the pruning bound stays valid
            for c in cands:
                stop = c in self.stop_ids
                llm[c] += self.lexicon.adjust("" if stop else self.labels.token_text(c), stop=stop)
        seqs = {c: [] if c in self.stop_ids else self._labels_here(c) for c in cands}
        end = self.scorer.end_score()
        # Exact pruning: a CTC prefix score never rises when the prefix grows (delta <= 0, the end score
        # too), so a candidate's joint score is at most its LLM term. Candidates are scored best-LLM-first
        # in growing batches, and one whose LLM term is already below the best joint score is skipped:
        # it cannot win. Same choice as scoring all, at a fraction of the CTC work.
        scores: dict[int, float] = {c: llm[c] + w * end for c in cands if c in self.stop_ids}
        self._states = {}
        batch = 2
        while True:
            best_score = max(scores.values(), default=NEG)
            pending = [c for c in cands if c not in scores and seqs[c] and llm[c] >= best_score - 1e-9][:batch]
            if not pending:
                break
            deltas, states = self.scorer.score([seqs[c] for c in pending])
            for c, d, st in zip(pending, deltas, states):
                scores[c] = llm[c] + w * d
                self._states[c] = st
            batch *= 4
        best, best_score = cands[0], NEG
        for c in cands:  # first in candidate order wins ties, as when every candidate is scored
            # a token the CTC head cannot spell (punctuation, symbols) would never advance the prefix:
            # the LLM could repeat it forever, so joint decoding leaves it out
            s = scores.get(c, NEG)
            if s > best_score:
                best, best_score = c, s
        return best

    def accept(self, token: int) -> None:
        if token in self.stop_ids:
            return
        if self.lexicon is not None:
            self.lexicon.accept(self.labels.token_text(token))
        state = self._states.get(token)
        if state is None:
            seq = self._labels_here(token)
            if not seq:
                return  # no CTC content: the prefix's labels are unchanged
            _, (state,) = self.scorer.score([seq])
        self.scorer.advance(state)
        self._states = {}


def token_labels(ctc_tokenizer, blank_id: int, token_text: Callable[[int], str]) -> TokenLabels:
    """The LLM-token -> CTC-label map of one encoder and LLM (built once per engine: its caches grow)."""
    delim = getattr(ctc_tokenizer, "word_delimiter_token", None) or "|"
    vocab = {t: i for t, i in ctc_tokenizer.get_vocab().items() if len(t) == 1 and i != blank_id}
    vocab[delim] = ctc_tokenizer.get_vocab()[delim]
    return TokenLabels(token_text, vocab, delim)


def joint_chooser(log_probs: torch.Tensor, blank_id: int, labels: TokenLabels, stop_ids: set[int], weight: float,
                  lexicon: Sequence[str] = (), lexicon_bonus: float = 0.0) -> JointChooser:
    """A chooser for one utterance: CTC ``log_probs`` (frames, labels) from the encoder or the bridge."""
    bias = LexiconBias(lexicon, lexicon_bonus) if lexicon and lexicon_bonus > 0 else None
    return JointChooser(CtcPrefixScorer(log_probs, blank_id), labels, stop_ids, weight, lexicon=bias)
