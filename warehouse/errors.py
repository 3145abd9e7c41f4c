"""Errors that reach the user as a clear one-line message and a non-zero exit."""


class SynthrankError(Exception):
    """Base class: the message names the file, line, row or field that is wrong."""


class InputError(SynthrankError):
    """A source, spec or teacher answer that cannot be used as given."""


class WarehouseLocked(SynthrankError):
    """Another process holds the warehouse file for writing; ``holder`` names it."""

    def __init__(self, message: str, holder: str = ""):
        super().__init__(message)
        self.holder = holder
