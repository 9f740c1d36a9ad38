"""One exception hierarchy; the CLI turns each into one line on stderr."""


class BidsDeidError(Exception):
    """Base of every expected failure. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(BidsDeidError):
    """The input is not what we can read (not BIDS, corrupt file, ...)."""


class KeyFileError(BidsDeidError):
    """The pseudonymization key is missing, unreadable or does not match."""


class OutputError(BidsDeidError):
    """The output location is unusable (inside input, unwritable, ...)."""


class ProfileError(BidsDeidError):
    """A profile YAML file is malformed or names an unknown action/field."""


class LeakError(BidsDeidError):
    """The leak audit found an identifier in the public output."""

    exit_code = 3


class ValidationError(BidsDeidError):
    """The BIDS validator reported errors on the output."""

    exit_code = 4
