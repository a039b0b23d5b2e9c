"""Error types. Anything derived from PybuildError is shown to the user as one message, no traceback."""
from __future__ import annotations


class PybuildError(Exception):
    """A build or input error: exit code 1, one clear message."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def render(self) -> str:
        out = f"error: {self.message}"
        if self.details:
            out += "\n" + self.details.rstrip()
        if self.hint:
            out += f"\nhint: {self.hint}"
        return out


class UsageError(PybuildError):
    """Bad command-line usage: exit code 2."""

    exit_code = 2


class DetectError(PybuildError):
    """No buildpack group passed detection."""


class VerificationError(PybuildError):
    """A signature or digest did not match."""


class NetworkError(PybuildError):
    """A remote endpoint could not be reached."""
