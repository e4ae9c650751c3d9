"""What can go wrong with the voice library, each mapped to its status in api/errors.py."""

from __future__ import annotations


class VoiceRefused(ValueError):
    """An upload that cannot become a voice: wrong format, too short or long, a bad name (400)."""


class VoiceExists(FileExistsError):
    """A voice of that name is stored and the upload did not ask to replace it (409)."""


class NoSuchVoice(LookupError):
    """No stored voice of that engine has the name (404)."""


class VoiceFileTooLarge(ValueError):
    """One uploaded file is over the per-file limit (413)."""


class VoiceQuotaReached(PermissionError):
    """The client stores as many voices as it may (403 until it removes one)."""
