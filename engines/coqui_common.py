"""What the Coqui engines share: torch device set-up, reference audio loading, model folders."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import av
import numpy as np
import torch

from speechcore.engine_types import EngineError, UnknownModel

from .base import EngineOptions

_LOGGER = logging.getLogger(__name__)
M = TypeVar("M")


def torch_device(options: EngineOptions) -> torch.device:
    """The device the options name, with CPU threads and the GPU memory share applied."""
    torch.set_num_threads(options.threads)
    if options.device != "cuda":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise EngineError("device 'cuda' was requested but this replica sees no CUDA device")
    if 0 < options.gpu_share < 1:
        torch.cuda.set_per_process_memory_fraction(options.gpu_share)
    return torch.device("cuda")


def load_reference_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Mono float audio at `sample_rate`, shape (1, samples), clipped to [-1, 1] (FFmpeg through PyAV)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    parts = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not parts:
        raise EngineError(f"{path.name} holds no audio")
    return torch.from_numpy(np.clip(np.concatenate(parts), -1.0, 1.0)).unsqueeze(0)


class ModelFolders:
    """Models as folders of `root` that hold `required` files, named `<prefix> - <folder>`."""

    def __init__(self, root: Path, prefix: str, required: tuple[str, ...], any_of: tuple[str, ...] = ()):
        self.root, self.prefix, self.required, self.any_of = root, prefix, required, any_of

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(f"{self.prefix} - {d.name}" for d in self.root.iterdir() if d.is_dir() and self._complete(d))

    def _complete(self, folder: Path) -> bool:
        has_required = all((folder / name).is_file() for name in self.required)
        return has_required and (not self.any_of or any((folder / name).is_file() for name in self.any_of))

    def folder(self, name: str) -> Path:
        """The folder of a listed model name; raises UnknownModel for anything else."""
        if name not in self.names():
            raise UnknownModel(
                f"{name!r} is not a model in {self.root.name}/ (models: {', '.join(self.names()) or 'none'})"
            )
        return self.root / name.removeprefix(f"{self.prefix} - ")


class ModelSlot(Generic[M]):
    """An engine's current model, loaded by name. A load runs beside the requests (they never wait
    for it: a real XTTS takes about 18 s) and the new model is swapped in with one assignment;
    requests in flight keep the model they started with, and a failed load leaves the current
    model serving. With LowVRAM a model waits in RAM and sits on `device` only while requests use
    it, counted per model (rows still finishing on the old model after a swap hold the old one)."""

    def __init__(
        self,
        folders: ModelFolders,
        load: Callable[[str, Path, torch.device], M],
        kind: str,
        move: Callable[[M, torch.device], object] | None = None,
        device: torch.device | None = None,
    ):
        self.folders, self.loader, self.kind = folders, load, kind
        self._move, self.device = move, device or torch.device("cpu")
        self._model: M | None = None
        self._lock = threading.Lock()
        """Guards the current model, the LowVRAM flag and the users. Held for moments, except while
        LowVRAM moves a model between RAM and the GPU (the requests then wait for that move)."""
        self._loading = threading.Lock()
        """One load at a time (select, reload); requests never take it."""
        self.lowvram = False
        self._users: dict[int, int] = {}
        """Requests using each model (by id) now."""

    def _load_named(self, name: str | None, device: torch.device) -> tuple[str, M]:
        names = self.folders.names()
        name = name or (names[0] if names else None)
        if name is None:
            raise EngineError(
                f"no {self.kind} models in {self.folders.root} (a folder with "
                f"{', '.join(self.folders.required + self.folders.any_of[:1])})"
            )
        folder = self.folders.folder(name)
        _LOGGER.info("loading %s model %s on %s", self.kind, name, device.type)
        try:
            return name, self.loader(name, folder, device)
        except Exception as exc:
            raise EngineError(f"could not load {name}: {type(exc).__name__}: {exc}") from exc

    def _home(self) -> torch.device:
        """Where a model waits between requests."""
        return torch.device("cpu") if self.lowvram and self._move is not None else self.device

    def select(self, name: str | None) -> None:
        """Loads `name` unless it is the current model; None keeps the current model, or loads the
        first model folder when none is loaded."""
        with self._loading:
            current = self._model
            if current is not None and (name is None or getattr(current, "name", None) == name):
                return
            home = self._home()
            self._swap_in(self._load_named(name, home)[1], home)

    def reload(self) -> None:
        """Loads the current model again (after an option that affects loading changed)."""
        with self._loading:
            home = self._home()
            self._swap_in(self._load_named(getattr(self._model, "name", None), home)[1], home)

    def _swap_in(self, model: M, loaded_on: torch.device) -> None:
        with self._lock:
            if self._home() != loaded_on:  # LowVRAM was switched while it loaded
                self._place(model, self._home())
            self._model = model

    def _place(self, model: M, device: torch.device) -> None:
        if self._move is not None:
            self._move(model, device)

    def set_lowvram(self, enabled: bool) -> None:
        with self._lock:
            self.lowvram = enabled
            if self._model is not None and not self._users.get(id(self._model)):
                self._place(self._model, torch.device("cpu") if enabled else self.device)

    @contextlib.contextmanager
    def use(self) -> Iterator[M]:
        """The current model for one request; with LowVRAM it moves to the device for the first of
        its users and back to RAM after the last (users may overlap)."""
        self.current()
        with self._lock:
            model = self._model
            assert model is not None
            users = self._users[id(model)] = self._users.get(id(model), 0) + 1
            if self.lowvram and users == 1:
                self._place(model, self.device)
        try:
            yield model
        finally:
            with self._lock:
                users = self._users[id(model)] = self._users[id(model)] - 1
                if users == 0:
                    del self._users[id(model)]
                    if self.lowvram:
                        self._place(model, torch.device("cpu"))

    def check(self, name: str) -> None:
        """Loads `name` into RAM and discards it: raises what select() would, changes nothing and
        takes no second share of the GPU."""
        self._load_named(name, torch.device("cpu"))

    def current(self) -> M:
        """The current model, loading the first one on first use."""
        if self._model is None:
            self.select(None)
        assert self._model is not None
        return self._model

    def current_or_none(self) -> M | None:
        """Like current(), for descriptions: None (logged) when no model can be loaded."""
        if self._model is None and self.folders.names():
            try:
                self.select(None)
            except EngineError as exc:
                _LOGGER.error("%s", exc)
        return self._model
