"""Errors a user can hit: printed as one clear message, never as a stack trace."""


class UserError(Exception):
    """Bad input or an unusable environment; the message says what to do next."""
