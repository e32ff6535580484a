"""Errors a user can cause and fix; entry points print them as one line and exit 2."""


class UserError(Exception):
    """Something in the user's config, data or store is wrong; the message says what to do."""
