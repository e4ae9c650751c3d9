"""Feature retrieval from a voice's FAISS `.index` (the training set's content features): each
frame's features are blended with the weighted mean of their 8 nearest training neighbours,
which pulls the timbre toward the training voice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechcore.rvc_requests import VoiceConversionError

NEIGHBOURS = 8


class FeatureIndex:
    def __init__(self, index: object, vectors: np.ndarray):
        self.index, self.vectors = index, vectors
        self._limited: dict[int, FeatureIndex] = {}

    @property
    def width(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def read(cls, path: Path) -> "FeatureIndex":
        """Reads the index (FAISS's own format, no pickles)."""
        import faiss
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise VoiceConversionError(f"{path.name} is not a readable FAISS index: {exc}") from exc
        if index.ntotal == 0:
            raise VoiceConversionError(f"{path.name} holds no vectors")
        return cls(index, index.reconstruct_n(0, index.ntotal).astype(np.float32))

    def limited(self, limit: int) -> "FeatureIndex":
        """Searching only the first `limit` vectors (AllTalk's training_data_size)."""
        if limit >= len(self.vectors):
            return self
        if limit not in self._limited:
            import faiss
            vectors = self.vectors[:max(limit, 1)]
            flat = faiss.IndexFlatL2(vectors.shape[1])
            flat.add(vectors)
            self._limited[limit] = FeatureIndex(flat, vectors)
        return self._limited[limit]

    def blend(self, features: np.ndarray, rate: float) -> np.ndarray:
        """features [frames, width] -> rate * retrieved + (1 - rate) * features."""
        k = min(NEIGHBOURS, len(self.vectors))
        distances, ids = self.index.search(np.ascontiguousarray(features, dtype=np.float32), k)
        weights = 1.0 / np.maximum(distances.astype(np.float64), 1e-12) ** 2  # float64: no overflow
        weights /= weights.sum(axis=1, keepdims=True)
        retrieved = np.sum(self.vectors[ids] * weights[..., None], axis=1)
        return (rate * retrieved + (1 - rate) * features).astype(np.float32)
