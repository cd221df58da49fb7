"""Chord recognizer: audio -> per-frame chord probabilities -> chord segments.

InstructME (arXiv 2308.14360, method: chord conditioning) conditions the editing U-Net
on a chord probability matrix ``P: [T_c, K]`` of the source audio, produced by a chord
recognizer, so that edits keep the harmony; the same recognizer scores chord recognition
accuracy (CRA) of the edits (experiments: evaluation metrics).

Vocabularies: ``majmin`` (``K = 25``, the default): 12 roots x {maj, min} + ``N`` (no chord),
in the order ``C:maj .. B:maj, C:min .. B:min, N``; ``sevenths`` (``K = 61``, MIREX's
sevenths vocabulary): 12 roots x {maj, min, maj7, min7, 7} + ``N``, in blocks of 12 roots
per quality likewise. Richer labels map to a vocabulary by root, third and seventh
(:func:`chord_to_index`). Model: a fixed log-frequency spectrogram
(:class:`~instructme.models.features.LogFrequencySpectrogram`), a small 2-D CNN over
(pitch, time) that pools pitch only, a bidirectional GRU over time and a linear classifier.
Decoding: Viterbi (``librosa.sequence.viterbi``) over an HMM whose states are the chords,
with a self-transition probability ``hmm_self_prob`` (the frame posteriors act as emissions).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import librosa
import numpy as np
import torch
from torch import nn

from instructme.audio import resample
from instructme.config import SAMPLE_RATE, Config
from instructme.models.features import LogFrequencySpectrogram

ROOTS: tuple[str, ...] = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: The 25-class vocabulary: maj per root, min per root, then N.
MAJMIN_LABELS: tuple[str, ...] = (
    tuple(f"{r}:maj" for r in ROOTS) + tuple(f"{r}:min" for r in ROOTS) + ("N",)
)
#: The 61-class vocabulary: maj, min, maj7, min7, 7 per root (blocks of 12 roots), then N.
SEVENTHS_LABELS: tuple[str, ...] = tuple(
    f"{r}:{q}" for q in ("maj", "min", "maj7", "min7", "7") for r in ROOTS) + ("N",)
#: Vocabulary name -> labels; a model's ``labels`` is one of these.
VOCABULARIES: dict[str, tuple[str, ...]] = {"majmin": MAJMIN_LABELS, "sevenths": SEVENTHS_LABELS}
N_INDEX = 24  # "N" in the majmin vocabulary (always the last label)
#: Training target for labels outside the vocabulary (X, sus, power chords, bad syntax).
IGNORE_INDEX = -100


def chord_to_index(label: str, labels: tuple[str, ...] = MAJMIN_LABELS) -> int:
    """mir_eval label -> class index in ``labels`` (a :data:`VOCABULARIES` value), ``N``'s
    index (the last) or ``IGNORE_INDEX``.

    majmin (root + third): ``C:7``, ``C:maj7``, ``C:aug`` -> ``C:maj``; ``C:min7``,
    ``C:dim``, ``C:hdim7`` -> ``C:min``. sevenths (root + third + seventh, over a perfect
    fifth): ``C:maj7``/``C:maj9`` -> ``C:maj7``, ``C:7``/``C:9`` -> ``C:7``, ``C:min7`` ->
    ``C:min7``; other chords by their third as in majmin. ``N`` -> N; ``X``, ``C:sus4``,
    ``C:5`` and unparsable labels -> ignored. Inversions (``/3``) keep their root.
    """
    import mir_eval.chord

    try:
        root, bitmap, _bass = mir_eval.chord.encode(label)
    except (mir_eval.chord.InvalidChordException, ValueError, IndexError):
        return IGNORE_INDEX
    if root < 0:
        return len(labels) - 1 if bitmap.max() == 0 else IGNORE_INDEX  # "N" vs "X"
    if bitmap[3]:
        quality = "min"
    elif bitmap[4]:
        quality = "maj"
    else:
        return IGNORE_INDEX
    if len(labels) > len(MAJMIN_LABELS) and bitmap[7]:
        if quality == "maj" and bitmap[11]:
            quality = "maj7"
        elif bitmap[10]:
            quality = "7" if quality == "maj" else "min7"
    return labels.index(f"{ROOTS[int(root)]}:{quality}")


def transpose_index(index: np.ndarray | torch.Tensor, semitones: int,
                    n_index: int = N_INDEX):
    """Transpose class indices by ``semitones`` (N at ``n_index`` and ignored stay as they
    are); the vocabularies hold one block of 12 roots per quality."""
    q = index < n_index
    q = q & (index >= 0)
    moved = (index // 12) * 12 + (index % 12 + semitones) % 12
    if isinstance(index, torch.Tensor):
        return torch.where(q, moved, index)
    return np.where(q, moved, index)


def viterbi(prob: np.ndarray, self_prob: float) -> np.ndarray:
    """Most likely state path ``[T]`` for frame posteriors ``prob: [T, K]`` (values in [0, 1]).

    Uniform prior and a transition matrix with ``self_prob`` on the diagonal and the rest
    spread evenly over the other states (``librosa.sequence.viterbi`` with
    ``librosa.sequence.transition_loop``); posteriors are floored at 1e-12.
    """
    t_len, k = prob.shape
    if not 1.0 / k <= self_prob < 1.0:
        raise ValueError(f"self_prob must be in [1/K, 1), got {self_prob}")
    if t_len == 0:
        return np.zeros(0, dtype=np.int64)
    emission = np.clip(np.asarray(prob, dtype=np.float64), 1e-12, None).T  # [K, T]
    path = librosa.sequence.viterbi(emission, librosa.sequence.transition_loop(k, self_prob))
    return path.astype(np.int64)


def frames_to_segments(path: np.ndarray, labels: tuple[str, ...], frame_rate: float,
                       duration: float) -> list[tuple[float, float, str]]:
    """Merge runs of equal states; frame ``i`` spans ``[(i-.5)/fr, (i+.5)/fr]`` in ``[0, dur]``."""
    segments: list[tuple[float, float, str]] = []
    start_i = 0
    for i in range(1, len(path) + 1):
        if i == len(path) or path[i] != path[start_i]:
            start = max(0.0, (start_i - 0.5) / frame_rate)
            end = min(duration, (i - 0.5) / frame_rate) if i < len(path) else duration
            if end > start:
                segments.append((start, end, labels[int(path[start_i])]))
            start_i = i
    return segments


@dataclasses.dataclass
class ChordConfig(Config):
    """Chord recognizer hyper-parameters (``frame_rate`` is chord frames per second)."""

    sample_rate: int = SAMPLE_RATE
    frame_rate: float = 10.0
    n_fft: int = 4096
    fmin_midi: float = 36.0  # C2 (65 Hz)
    n_semitones: int = 60  # five octaves, up to C7
    bins_per_semitone: int = 2
    margin_semitones: int = 6  # room for pitch-shift augmentation
    conv_channels: tuple[int, ...] = (16, 32, 64)
    hidden: int = 128
    gru_layers: int = 1
    dropout: float = 0.2
    hmm_self_prob: float = 0.9
    labels: tuple[str, ...] = MAJMIN_LABELS

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(n_fft=2048, fmin_midi=43.0, n_semitones=48, bins_per_semitone=1,
                     conv_channels=(8, 16), hidden=32, dropout=0.0),
        "small": dict(),
        "large": dict(bins_per_semitone=3, conv_channels=(32, 64, 128), hidden=256,
                      gru_layers=2),
    }

    @property
    def vocabulary(self) -> str:
        """The name of ``labels`` in :data:`VOCABULARIES`."""
        for name, labels in VOCABULARIES.items():
            if tuple(self.labels) == labels:
                return name
        raise ValueError(f"chord labels must be one of the vocabularies {sorted(VOCABULARIES)}")

    @property
    def hop(self) -> int:
        hop = self.sample_rate / self.frame_rate
        if abs(hop - round(hop)) > 1e-6:
            raise ValueError(f"sample_rate / frame_rate must be an integer, got {hop}")
        return int(round(hop))


class ChordRecognizer(nn.Module):
    """Audio ``[B, N]`` (``config.sample_rate``, mono) -> chord logits ``[B, T_c, K]``."""

    config_class = ChordConfig

    def __init__(self, config: ChordConfig) -> None:
        super().__init__()
        self.config = config
        _ = config.vocabulary  # refuses labels that are no known vocabulary
        self.frontend = LogFrequencySpectrogram(
            config.sample_rate, config.n_fft, config.hop, config.fmin_midi, config.n_semitones,
            config.bins_per_semitone, config.margin_semitones)
        layers: list[nn.Module] = []
        c_in, f = 1, self.frontend.n_core
        for c_out in config.conv_channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d((2, 1))]  # pool pitch, keep time resolution
            c_in, f = c_out, f // 2
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Dropout(config.dropout),
                                  nn.Conv1d(c_in * f, config.hidden, 1), nn.ReLU())
        self.gru = nn.GRU(config.hidden, config.hidden // 2, num_layers=config.gru_layers,
                          batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(config.dropout),
                                  nn.Linear(config.hidden, len(config.labels)))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.config.labels)

    @property
    def frame_rate(self) -> float:
        return float(self.config.frame_rate)

    def num_frames(self, n_samples: int) -> int:
        return self.frontend.num_frames(n_samples)

    def features(self, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
        """``x: [B, N] -> [B, F, T]`` log-frequency features, per-clip mean removed.

        ``shift`` (training only) transposes the content down by ``shift`` semitones.
        """
        spec = self.frontend.crop(self.frontend(x), shift)
        return spec - spec.mean(dim=(1, 2), keepdim=True)

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``feats: [B, F, T] -> logits [B, T, K]``."""
        h = self.cnn(feats.unsqueeze(1))  # [B, C, F', T]
        h = self.proj(h.flatten(1, 2))  # [B, H, T]
        h, _ = self.gru(h.transpose(1, 2))  # [B, T, H]
        return self.head(h)

    def forward(self, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
        """``x: [B, N]`` audio -> logits ``[B, T_c, K]`` with ``T_c = N // hop + 1``.

        ``shift`` (training augmentation) transposes the input down by ``shift`` semitones.
        """
        return self.forward_features(self.features(x, shift))

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N]`` -> chord probability matrix ``P: [B, T_c, K]`` (rows sum to 1)."""
        was_training = self.training
        self.eval()
        try:
            return torch.softmax(self(x.to(self.head[1].weight.device)), dim=-1)
        finally:
            self.train(was_training)

    def decode(self, prob: np.ndarray, duration: float) -> list[tuple[float, float, str]]:
        """``prob: [T_c, K]`` -> ``[(start, end, label), ...]`` via HMM Viterbi smoothing."""
        path = viterbi(np.asarray(prob, dtype=np.float64), self.config.hmm_self_prob)
        return frames_to_segments(path, self.labels, self.frame_rate, duration)

    def transcribe(self, x: np.ndarray, sr: int) -> list[tuple[float, float, str]]:
        """Mono audio ``x: [N]`` at ``sr`` Hz -> chord segments in mir_eval label syntax."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"expected non-empty mono audio [N], got shape {x.shape}")
        duration = x.size / sr
        x = resample(x, sr, self.config.sample_rate)
        prob = self.predict_proba(torch.from_numpy(x)[None])[0].cpu().numpy()
        return self.decode(prob, duration)
