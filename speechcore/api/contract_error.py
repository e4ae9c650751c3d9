"""ContractError: an answer already in one of the contract's shapes (a validation list, a field the
wire format refuses). Raised by the API layer's decoders; services raise domain errors instead."""

from __future__ import annotations


class ContractError(Exception):
    """An HTTP status with the JSON body the contract prescribes for this situation."""

    def __init__(self, status_code: int, body: dict[str, object], headers: dict[str, str] | None = None):
        super().__init__(f"{status_code}: {body}")
        self.status_code = status_code
        self.body = body
        self.headers = headers or {}

    @classmethod
    def generate_failure(cls, status_code: int, error: str) -> "ContractError":
        """The shape of `/api/tts-generate` failures after validation."""
        return cls(status_code, {"status": "generate-failure", "error": error})
