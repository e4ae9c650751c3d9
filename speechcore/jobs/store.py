"""JobStore: jobs on disk, one folder each under `<output folder>/jobs/` (the shared root on a
cluster, so any ingress replica can answer for any job and resume it):

    job.json          the record (state, progress), replaced atomically as the job goes
    order.json        what to speak and how (the text and every setting), written once
    lines.json        the text planned into lines, written once
    line-000042.wav   each finished line, at its engine's rate, written atomically
    claim.<n>         which ingress replica runs it, renewed while it does (see claim)
    audio.<ext>, captions.srt, captions.vtt   the result, once done

A line file exists only once complete, so a resumed job redoes only the lines without one."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import wave
from collections.abc import Callable, Container
from pathlib import Path
from typing import BinaryIO

from ..audio.pcm import PcmChunk
from ..audio.wav import write_wav
from ..orders import Line, SpeechOrder
from ..storage import OutputStore
from .records import JobRecord
from .schema import lines_from_json, lines_to_json, order_from_json, order_to_json

_ID = re.compile(r"[0-9a-f]{32}")
RESULT_NAMES = ("captions.srt", "captions.vtt")


class UnknownJob(LookupError):
    """No job of that id (or the id is not one this server makes)."""


class JobStore:
    def __init__(self, folder: Path):
        self.folder = folder

    def job_dir(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id):
            raise UnknownJob(f"no job {job_id!r}")
        return self.folder / job_id

    def _files(self, job_id: str) -> OutputStore:
        return OutputStore(self.job_dir(job_id))

    # ----- records

    def save(self, record: JobRecord) -> None:
        self._files(record.id).write_named("job.json", lambda out: out.write(record.model_dump_json().encode()))

    def load(self, job_id: str) -> JobRecord:
        try:
            return JobRecord.model_validate_json((self.job_dir(job_id) / "job.json").read_bytes())
        except FileNotFoundError:
            raise UnknownJob(f"no job {job_id!r}") from None

    def records(self, skip: Container[str] = frozenset()) -> list[JobRecord]:
        """Every readable job but those in `skip`, oldest first."""
        found = []
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                if _ID.fullmatch(entry.name) and entry.name not in skip:
                    try:
                        found.append(self.load(entry.name))
                    except (UnknownJob, ValueError):  # being created or removed right now
                        continue
        return sorted(found, key=lambda record: record.created_at)

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def save_order(self, job_id: str, order: SpeechOrder) -> None:
        self._files(job_id).write_named("order.json", lambda out: out.write(json.dumps(order_to_json(order)).encode()))

    def load_order(self, job_id: str) -> SpeechOrder:
        return order_from_json(json.loads((self.job_dir(job_id) / "order.json").read_bytes()))

    # ----- lines

    def save_lines(self, job_id: str, lines: list[Line]) -> None:
        self._files(job_id).write_named("lines.json", lambda out: out.write(json.dumps(lines_to_json(lines)).encode()))

    def load_lines(self, job_id: str) -> list[Line] | None:
        try:
            return lines_from_json(json.loads((self.job_dir(job_id) / "lines.json").read_bytes()))
        except FileNotFoundError:
            return None

    def line_path(self, job_id: str, index: int) -> Path:
        return self.job_dir(job_id) / f"line-{index:06d}.wav"

    def write_line(self, job_id: str, index: int, audio: PcmChunk) -> None:
        self._files(job_id).write_named(self.line_path(job_id, index).name,
                                        lambda out: write_wav(out, audio.sample_rate, [audio]))

    def line_format(self, job_id: str, index: int) -> tuple[int, int] | None:
        """(sample rate, frames) of a finished line, from its header; None if not finished."""
        try:
            with wave.open(str(self.line_path(job_id, index)), "rb") as wav:
                return wav.getframerate(), wav.getnframes()
        except FileNotFoundError:
            return None

    def read_line(self, job_id: str, index: int) -> PcmChunk:
        with wave.open(str(self.line_path(job_id, index)), "rb") as wav:
            return PcmChunk(wav.readframes(wav.getnframes()), wav.getframerate())

    def drop_lines(self, job_id: str) -> None:
        """Removes the line files (after the result is written, or when the job is cancelled)."""
        folder = self.job_dir(job_id)
        for path in folder.glob("line-*.wav"):
            path.unlink(missing_ok=True)

    # ----- results

    def result_path(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / name

    def write_result(self, job_id: str, name: str, write: Callable[[BinaryIO], object]) -> Path:
        return self._files(job_id).write_named(name, write)

    def drop_results(self, job_id: str) -> None:
        folder = self.job_dir(job_id)
        for path in folder.glob("audio.*"):
            path.unlink(missing_ok=True)
        for name in RESULT_NAMES:
            (folder / name).unlink(missing_ok=True)

    # ----- claims

    def claim(self, job_id: str, owner: str, lease_s: float, now: float) -> bool:
        """Takes or renews the job for `owner` unless another owner's claim is live: renewed within
        `lease_s`, not released, and, when made on this host, by a process that still exists.

        Claims are numbered files, `claim.<n>`, the highest being the one in force, each created
        whole by a hard link, which fails when the name exists (also on a shared file system).
        Renewing and taking over both create the next number, so of an owner renewing late and
        replicas taking the job over at that moment exactly one succeeds."""
        number, held = _claim_in_force(self.job_dir(job_id))
        renewing = held is not None and held.get("owner") == owner and not held.get("released")
        if not renewing and held is not None and _live(held, lease_s, now):
            return False
        mine = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(), "renewed_at": now}
        return self._next_claim(job_id, number + 1, mine)

    def release(self, job_id: str, owner: str) -> None:
        """Ends the owner's claim, if it is still the one in force, with a released one after it."""
        number, held = _claim_in_force(self.job_dir(job_id))
        if held is not None and held.get("owner") == owner:
            self._next_claim(job_id, number + 1, {**held, "released": True})

    def _next_claim(self, job_id: str, number: int, claim: dict[str, object]) -> bool:
        """Creates `claim.<number>` unless it exists; then the claims before it are void and go."""
        folder = self.job_dir(job_id)
        with self._files(job_id).partial_file() as (partial, out):
            out.write(json.dumps(claim).encode())
            out.flush()
            try:
                os.link(partial, folder / f"claim.{number}")
            except FileExistsError:
                return False  # another replica made this number first
        for older in range(max(number - 8, 0), number):  # each claim removes those just before it
            (folder / f"claim.{older}").unlink(missing_ok=True)
        (folder / "claim.json").unlink(missing_ok=True)
        return True


_CLAIM = re.compile(r"claim\.(\d+)")


def _claim_in_force(folder: Path) -> tuple[int, dict[str, object] | None]:
    """The highest claim number in the folder (-1 for none) and that claim (None when there is none,
    or it was just removed by its successor; the successor's number is then higher)."""
    numbers = [int(m.group(1)) for entry in folder.glob("claim.*") if (m := _CLAIM.fullmatch(entry.name))] \
        if folder.is_dir() else []
    if not numbers:
        return -1, _legacy_claim(folder)
    number = max(numbers)
    try:
        held = json.loads((folder / f"claim.{number}").read_bytes())
    except FileNotFoundError:
        return number, None
    except ValueError:  # never partial (claims appear whole), so a damaged file: not live
        return number, {}
    return number, held if isinstance(held, dict) else {}


def _legacy_claim(folder: Path) -> dict[str, object] | None:
    """The claim.json of job servers before numbered claims, while one of them may still run the
    job during a rolling upgrade: it holds until its lease runs out."""
    try:
        held = json.loads((folder / "claim.json").read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return held if isinstance(held, dict) else None


def _live(claim: dict[str, object], lease_s: float, now: float) -> bool:
    renewed = claim.get("renewed_at")
    if claim.get("released") or not isinstance(renewed, (int, float)) or now - renewed > lease_s:
        return False
    pid = claim.get("pid")
    if claim.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False  # its process is gone: no need to wait out the lease
        except PermissionError:
            return True
    return True
