"""Latent cache for editor training (DESIGN: "VAE latents cached to disk before diffusion").

Every (source, instruction, target) window of the triplet manifests is encoded ONCE: the
source and target mixes through the VAE (``encode_latents: [B, N] -> [B, C, T]``), the
source through the chord recognizer (``predict_proba: [B, N] -> [B, Tc, K]``) and the
instruction through the frozen text encoder. Multi-round chains are expanded into one item
per round (round ``k``'s source is round ``k-1``'s target).

Layout of a cache folder (arrays are ``.npy``, memory-mapped for training)::

    cache.json                      meta: models used, rates, sizes, completed splits
    texts.json                      the unique instructions, in index order
    text_tokens.npy  [U, L, D] f16  token states (zero-padded); text_lengths.npy [U] i32
    <split>/items.jsonl             id, task, instruction, song, text index per item
    <split>/z_src.npy, z_tgt.npy    [N, C, T] f16   source / target latents
    <split>/chords.npy              [N, Tc, K] f16  source chord probabilities (if a model)
    <split>/z_part.npy, z_cond.npy  [N, C, T] f16   with ``parts``: the part an editor with
                                                    part targets generates, and the part it
                                                    follows (:func:`part_stems`)
    <split>/z_cond_sep.npy          [N, C, T] f16   with a separator: its estimate of z_cond
    <split>/progress.json           {"done": n}: the build resumes from here

**Part targets** (an editor that generates only what is new): for ``add X`` the part is X's
stem and there is nothing to follow; for ``replace X with Y`` the part is Y's stem and it
follows X's (the true stem in ``z_cond``; the separator's estimate of X from the source mix
in ``z_cond_sep``, which is all that inference has); for ``remix`` (and any other task) the
part is the whole target. Parts are silent latents where a task has none.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instructme.errors import CheckpointError, ManifestError
from instructme.fileio import atomic_write_json, atomic_write_jsonl
from instructme.models.text import TextEncoder, TextEncoderConfig

CACHE_VERSION = 1
Encoder = Callable[[torch.Tensor], torch.Tensor]
#: ``separate(mix [B, N], instruments) -> [B, N]``: the named instrument of each mix.
Separate = Callable[[torch.Tensor, list[str]], torch.Tensor]
#: Tasks whose part target is a single new stem (``add``) or a stem that follows another
#: (``replace``); an editor with part targets trains on these and on ``remix``.
PART_TASKS = ("add", "replace", "remix")


def part_stems(item: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(part, follows)`` stems of a cache item: for add, the target's stems that the source
    lacks and nothing; for replace, those and the source's stems that the target lacks (the
    old instrument); otherwise the whole target and nothing (see the module doc)."""
    src, tgt = list(item["source"]), list(item["target"])
    if item["task"] in ("add", "replace"):
        new = [s for s in tgt if s not in src]
        old = [s for s in src if s not in tgt] if item["task"] == "replace" else []
        return new, old
    return tgt, []


def expand_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One training item per single-round triplet and per round of a multi-round chain."""
    items = []
    for r in records:
        rounds = r.get("rounds") or []
        if r["task"] == "multiround" and rounds:
            src = list(r["source"])
            for k, rd in enumerate(rounds):
                items.append({"id": f"{r['id']}#r{k}", "task": rd["task"],
                              "instruction": rd["instruction"], "song": r["song"],
                              "args": dict(rd.get("args") or {}),
                              "start": r["start"], "duration": r["duration"],
                              "source": src, "target": list(rd["target"])})
                src = list(rd["target"])
        else:
            items.append({**{k: r[k] for k in ("id", "task", "instruction", "song", "start",
                                                "duration", "source", "target")},
                          "args": dict(r.get("args") or {})})
    return items


def subset(items: list[dict[str, Any]], limit: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded random ``limit`` items of ``items``, kept in their original order."""
    if limit is None or limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def file_digest(path: str | Path) -> str:
    """sha256 of a file (identifies the model weights a cache was built with)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_cache_meta(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / "cache.json"
    if not path.is_file():
        raise ManifestError(f"{cache_dir}: not an editor latent cache (no cache.json)")
    return json.loads(path.read_text())


def build_editor_cache(data_dir: str | Path, cache_dir: str | Path, encode_latents: Encoder,
                       text_encoder: TextEncoder, chord_proba: Encoder | None = None, *,
                       meta: dict[str, Any], splits: Sequence[str] = ("train", "val"),
                       batch_size: int = 8, device: torch.device | str = "cpu",
                       max_items: dict[str, int] | None = None,
                       progress: Callable[[str, int, int], None] | None = None,
                       parts: bool = False, separate: Separate | None = None) -> Path:
    """Encode the triplets of ``splits`` into ``cache_dir`` (resumable; see module doc).

    ``parts`` also encodes every item's part target and the part it follows; ``separate``
    (with ``parts``) adds the separator's estimate of the latter from the source mix.

    ``max_items`` (e.g. ``{"train": 10000, "val": 400}``) encodes only a seeded random subset
    of that many items per split (in manifest order), for runs with a small compute budget.

    ``meta`` must hold ``latent_channels``, ``latent_rate``, ``sample_rate`` and, with a chord
    model, ``chord_rate`` and ``chord_classes``, plus anything identifying the models
    (``vae``, ``chord``, ``text``): a cache built with other models is refused. Missing
    splits (e.g. no ``val`` manifest) are skipped. Returns ``cache_dir``.
    """
    from instructme.dataset.folder import read_build_info, read_manifest

    data_dir, cache = Path(data_dir), Path(cache_dir)
    sr = int(read_build_info(data_dir)["sample_rate"])
    if sr != int(meta["sample_rate"]):
        raise ManifestError(f"{data_dir}: dataset is {sr} Hz, the VAE expects "
                            f"{meta['sample_rate']} Hz")
    limits = {s: int(n) for s, n in (max_items or {}).items() if n is not None}
    if any(n < 1 for n in limits.values()):
        raise ValueError(f"max_items must be at least 1 per split, got {limits}")
    want = {"version": CACHE_VERSION, "data_dir": str(data_dir.resolve()), **meta,
            "has_chords": chord_proba is not None, "max_items": limits or None}
    if parts:  # (absent from mix-only caches, so that those built before stay valid)
        want.update(parts=True, has_separated=separate is not None)
    if (cache / "cache.json").is_file():
        have = read_cache_meta(cache)
        diff = sorted(k for k in want if have.get(k) != want[k])
        if diff:
            raise ManifestError(f"{cache}: cache was built with different settings ({diff}); "
                                "choose another cache folder or delete it")
        if all(s in have.get("splits", {}) for s in splits if _manifest(data_dir, s).is_file()):
            return cache
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache / "cache.json", {**want, "splits": {}})

    split_items = {s: subset(expand_records(read_manifest(_manifest(data_dir, s))),
                             limits.get(s))
                   for s in splits if _manifest(data_dir, s).is_file()}
    if not split_items.get("train") and "train" in splits:
        raise ManifestError(f"{data_dir}: no training triplets")
    texts = sorted({it["instruction"] for items in split_items.values() for it in items})
    _write_texts(cache, texts, text_encoder)
    text_index = {t: i for i, t in enumerate(texts)}

    done_splits: dict[str, int] = {}
    for split, items in split_items.items():
        if items:  # an empty manifest is recorded as a done, empty split
            _encode_split(cache / split, data_dir, items, text_index, encode_latents,
                          chord_proba, meta, sr, batch_size, device, progress,
                          parts, separate if parts else None)
        done_splits[split] = len(items)
    atomic_write_json(cache / "cache.json", {**want, "splits": done_splits})
    return cache


def _manifest(data_dir: Path, split: str) -> Path:
    return data_dir / "manifests" / f"{split}.jsonl"


def _write_texts(cache: Path, texts: list[str], enc: TextEncoder) -> None:
    if (cache / "texts.json").is_file() and json.loads((cache / "texts.json").read_text()) == texts:
        return
    states = []
    for i in range(0, len(texts), 64):
        states += enc.token_states(texts[i:i + 64])
    length = max([s.shape[0] for s in states] + [1])
    tokens = np.zeros((len(texts), length, enc.dim), dtype=np.float16)
    for i, s in enumerate(states):
        tokens[i, : s.shape[0]] = s.numpy()
    np.save(cache / "text_tokens.npy", tokens)
    np.save(cache / "text_lengths.npy", np.array([s.shape[0] for s in states], dtype=np.int32))
    atomic_write_json(cache / "texts.json", texts)


def _encode_split(out: Path, data_dir: Path, items: list[dict[str, Any]],
                  text_index: dict[str, int], encode_latents: Encoder, chord_proba: Encoder | None,
                  meta: dict[str, Any], sr: int, batch_size: int, device: torch.device | str,
                  progress: Callable[[str, int, int], None] | None, parts: bool = False,
                  separate: Separate | None = None) -> None:
    from instructme.dataset.folder import load_window

    n = len(items)
    dur = max(float(it["duration"]) for it in items)
    n_samples = int(round(dur * sr))
    records = [{"id": it["id"], "task": it["task"], "instruction": it["instruction"],
                "song": it["song"], "text": text_index[it["instruction"]],
                "frames": None} for it in items]
    progress_path = out / "progress.json"
    done = 0
    if progress_path.is_file():
        prev = json.loads(progress_path.read_text())
        if prev.get("n") == n and prev.get("ids_sha") == _ids_sha(items):
            done = int(prev["done"])
    if done == 0:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    def audio(paths: list[str], it: dict[str, Any]) -> np.ndarray:
        x = load_window(data_dir, paths, float(it["start"]), float(it["duration"]), sr)
        return np.pad(x, (0, n_samples - x.shape[0]))

    with torch.no_grad():
        probe = encode_latents(torch.zeros(1, n_samples, device=device))
        c, t = probe.shape[1], probe.shape[2]
        if c != int(meta["latent_channels"]):
            raise ValueError(f"encoder gives {c} latent channels, meta says "
                             f"{meta['latent_channels']}")
        mode = "r+" if done else "w+"
        z_src = np.lib.format.open_memmap(out / "z_src.npy", mode, np.float16, (n, c, t))
        z_tgt = np.lib.format.open_memmap(out / "z_tgt.npy", mode, np.float16, (n, c, t))
        chords = None
        if chord_proba is not None:
            pc = chord_proba(torch.zeros(1, n_samples, device=device))
            if pc.shape[2] != int(meta["chord_classes"]):
                raise ValueError(f"chord model gives {pc.shape[2]} classes, meta says "
                                 f"{meta['chord_classes']}")
            chords = np.lib.format.open_memmap(out / "chords.npy", mode, np.float16,
                                               (n, pc.shape[1], pc.shape[2]))
        names = (["z_part", "z_cond"] if parts else []) + (["z_cond_sep"] if separate else [])
        extra = {k: np.lib.format.open_memmap(out / f"{k}.npy", mode, np.float16, (n, c, t))
                 for k in names}
        for a in range(done, n, batch_size):
            batch = items[a:a + batch_size]
            src = torch.from_numpy(np.stack([audio(it["source"], it) for it in batch])).to(device)
            tgt = torch.from_numpy(np.stack([audio(it["target"], it) for it in batch])).to(device)
            rows = slice(a, a + len(batch))
            z_src[rows] = encode_latents(src).float().cpu().numpy()
            z_tgt[rows] = encode_latents(tgt).float().cpu().numpy()
            if chords is not None:
                chords[rows] = chord_proba(src).float().cpu().numpy()
            if parts:
                _encode_parts(extra, rows, batch, src, audio, encode_latents, separate, device)
            for ch_arr in (z_src, z_tgt, *extra.values()) + ((chords,) if chords is not None
                                                              else ()):
                ch_arr.flush()
            done = a + len(batch)
            atomic_write_json(progress_path, {"n": n, "done": done, "ids_sha": _ids_sha(items)})
            if progress is not None:
                progress(out.name, done, n)
    for rec, it in zip(records, items):  # valid latent frames of shorter windows
        rec["frames"] = min(t, math.ceil(round(float(it["duration"]) * sr) * t / n_samples))
    atomic_write_jsonl(out / "items.jsonl", records)


def _encode_parts(arrays: dict[str, np.ndarray], rows: slice, batch: list[dict[str, Any]],
                  src: torch.Tensor, audio: Callable[[list[str], dict[str, Any]], np.ndarray],
                  encode_latents: Encoder, separate: Separate | None,
                  device: torch.device | str) -> None:
    """Write the part latents of ``batch`` (source mixes ``src: [B, N]``) into ``arrays``."""
    stems = [part_stems(it) for it in batch]
    part = torch.from_numpy(np.stack([audio(p, it) for (p, _), it in zip(stems, batch)]))
    cond = torch.from_numpy(np.stack([audio(f, it) for (_, f), it in zip(stems, batch)]))
    arrays["z_part"][rows] = encode_latents(part.to(device)).float().cpu().numpy()
    arrays["z_cond"][rows] = encode_latents(cond.to(device)).float().cpu().numpy()
    if separate is not None:
        old = [str(it["args"].get("instrument", "")) if it["task"] == "replace" else ""
               for it in batch]
        est = torch.zeros_like(src)
        which = [i for i, name in enumerate(old) if name]
        if which:
            est[which] = separate(src[which], [old[i] for i in which]).to(est.dtype)
        arrays["z_cond_sep"][rows] = encode_latents(est).float().cpu().numpy()


def _ids_sha(items: list[dict[str, Any]]) -> str:
    return hashlib.sha256("\n".join(it["id"] for it in items).encode()).hexdigest()


class LatentCache:
    """Read side of a cache split: memory-mapped arrays, batches as tensors.

    ``batch(indices, crop_frames, rng)`` -> ``{"z_src", "z_tgt": [B, C, F], "text": [B, L, D],
    "text_mask": [B, L], "chords": [B, Fc, K] | None}`` with a random crop of ``F`` latent
    frames (the whole window when ``crop_frames`` is None) and the time-aligned chord frames;
    a cache with ``parts`` adds ``"z_part", "z_cond"`` (and ``"z_cond_sep"``) ``[B, C, F]``.
    """

    def __init__(self, cache_dir: str | Path, split: str = "train") -> None:
        self.root, self.split = Path(cache_dir), split
        self.meta = read_cache_meta(self.root)
        if not self.meta.get("splits", {}).get(split):
            raise ManifestError(f"{self.root}: no {split!r} items in the cache")
        d = self.root / split
        self.items = [json.loads(x) for x in (d / "items.jsonl").read_text().splitlines() if x]
        self.z_src = np.load(d / "z_src.npy", mmap_mode="r")
        self.z_tgt = np.load(d / "z_tgt.npy", mmap_mode="r")
        self.chords = np.load(d / "chords.npy", mmap_mode="r") if self.meta["has_chords"] else None
        names = ((["z_part", "z_cond"] if self.meta.get("parts") else [])
                 + (["z_cond_sep"] if self.meta.get("has_separated") else []))
        self.parts = {k: np.load(d / f"{k}.npy", mmap_mode="r") for k in names}
        self.text_tokens = np.load(self.root / "text_tokens.npy", mmap_mode="r")
        self.text_lengths = np.load(self.root / "text_lengths.npy")
        self.text_index = np.array([it["text"] for it in self.items], dtype=np.int64)
        self.frames = np.array([it["frames"] for it in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_frames(self) -> int:
        return int(self.z_src.shape[2])

    def batch(self, indices: Sequence[int], crop_frames: int | None = None,
              rng: np.random.Generator | None = None) -> dict[str, torch.Tensor | None]:
        idx = np.asarray(indices, dtype=np.int64)
        f = self.num_frames if crop_frames is None else min(crop_frames, self.num_frames)
        rng = rng or np.random.default_rng(0)
        starts = [int(rng.integers(0, max(0, int(self.frames[i]) - f) + 1)) for i in idx]
        z_src = np.stack([self.z_src[i, :, s:s + f] for i, s in zip(idx, starts)])
        z_tgt = np.stack([self.z_tgt[i, :, s:s + f] for i, s in zip(idx, starts)])
        out: dict[str, torch.Tensor | None] = {
            "z_src": torch.from_numpy(z_src.astype(np.float32)),
            "z_tgt": torch.from_numpy(z_tgt.astype(np.float32)),
            "chords": None,
        }
        for k, arr in self.parts.items():
            out[k] = torch.from_numpy(np.stack([arr[i, :, s:s + f] for i, s in zip(idx, starts)])
                                      .astype(np.float32))
        if self.chords is not None:
            ratio = float(self.meta["chord_rate"]) / float(self.meta["latent_rate"])
            fc = int(np.ceil(f * ratio)) + 1
            tc = self.chords.shape[1]
            rows = []
            for i, s in zip(idx, starts):
                c0 = int(round(s * ratio))
                rows.append(np.pad(self.chords[i, c0:c0 + fc], ((0, max(0, c0 + fc - tc)), (0, 0))))
            out["chords"] = torch.from_numpy(np.stack(rows).astype(np.float32))
        ti = self.text_index[idx]
        out["text"] = torch.from_numpy(self.text_tokens[ti].astype(np.float32))
        lengths = torch.from_numpy(self.text_lengths[ti].astype(np.int64))
        out["text_mask"] = torch.arange(self.text_tokens.shape[1])[None] < lengths[:, None]
        return out


def _model_id(directory: str | Path) -> dict[str, str]:
    from instructme.checkpoint import WEIGHTS_NAME

    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_NAME} (not a model folder)")
    return {"path": str(Path(directory).resolve()), "sha256": file_digest(weights)}


def _text_id(text_config: TextEncoderConfig) -> dict[str, Any]:
    d = text_config.to_dict()
    d.pop("cache_size", None)
    return d


def default_cache_dir(data_dir: str | Path, vae_dir: str | Path, chord_dir: str | Path | None,
                      text_config: TextEncoderConfig, parts: bool = False,
                      separator_dir: str | Path | None = None) -> Path:
    """``DATA/editor_cache/<key>``, the key naming the VAE, chord model and text encoder (and,
    for a cache with part targets, the separator), so runs with the same models (e.g.
    ablations) share one cache."""
    ident: dict[str, Any] = {"vae": _model_id(vae_dir)["sha256"],
                             "chord": _model_id(chord_dir)["sha256"] if chord_dir else None,
                             "text": _text_id(text_config)}
    if parts:
        ident["parts"] = _model_id(separator_dir)["sha256"] if separator_dir else True
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return Path(data_dir) / "editor_cache" / key


def build_cache_from_models(data_dir: str | Path, cache_dir: str | Path, vae_dir: str | Path,
                            chord_dir: str | Path | None, text_config: TextEncoderConfig, *,
                            splits: Sequence[str] = ("train", "val"), batch_size: int = 8,
                            device: torch.device | str = "cpu",
                            max_items: dict[str, int] | None = None,
                            progress: Callable[[str, int, int], None] | None = None,
                            parts: bool = False,
                            separator_dir: str | Path | None = None) -> Path:
    """Load the VAE, chord recognizer (optional), text encoder and, for ``parts``, the stem
    separator (optional) from their folders and :func:`build_editor_cache` with them."""
    from instructme.checkpoint import load_model
    from instructme.models.chord import ChordRecognizer
    from instructme.models.text import build_text_encoder
    from instructme.models.vae import AudioVAE

    vae = load_model(AudioVAE, vae_dir).to(device).eval()
    vc = vae.config
    meta: dict[str, Any] = {"vae": _model_id(vae_dir), "sample_rate": int(vc.sample_rate),
                            "latent_channels": int(vc.latent_channels),
                            "latent_rate": float(vc.latent_rate), "chord": None}
    chord_fn = None
    if chord_dir is not None:
        chord = load_model(ChordRecognizer, chord_dir).to(device).eval()
        if int(chord.config.sample_rate) != int(vc.sample_rate):
            raise CheckpointError(f"{chord_dir}: chord model is {chord.config.sample_rate} Hz, "
                                  f"the VAE {vc.sample_rate} Hz")
        meta.update(chord=_model_id(chord_dir), chord_rate=float(chord.frame_rate),
                    chord_classes=len(chord.labels))
        chord_fn = chord.predict_proba
    text = build_text_encoder(text_config).to(device)
    meta.update(text=_text_id(text_config), text_dim=int(text.dim))
    separate = None
    if parts and separator_dir is not None:
        separate = _separator_fn(separator_dir, int(vc.sample_rate), device)
        meta["separator"] = _model_id(separator_dir)
    return build_editor_cache(data_dir, cache_dir, vae.encode_latents, text, chord_fn, meta=meta,
                              splits=splits, batch_size=batch_size, device=device,
                              max_items=max_items, progress=progress, parts=parts,
                              separate=separate)


def _separator_fn(separator_dir: str | Path, sample_rate: int, device: torch.device | str
                  ) -> Separate:
    """The separator of ``separator_dir`` as ``separate(mix [B, N], instruments) -> [B, N]``."""
    from instructme.checkpoint import load_model
    from instructme.models.separator import Separator

    sep = load_model(Separator, separator_dir).to(device).eval()
    if int(sep.config.sample_rate) != sample_rate:
        raise CheckpointError(f"{separator_dir}: separator is {sep.config.sample_rate} Hz, "
                              f"the VAE {sample_rate} Hz")

    def separate(mix: torch.Tensor, instruments: list[str]) -> torch.Tensor:
        try:
            classes = torch.tensor([sep.class_index(n) for n in instruments], device=mix.device)
        except KeyError as e:
            raise ManifestError(f"the separator does not know {e.args[0]!r}") from None
        return sep(mix, classes)

    return separate
