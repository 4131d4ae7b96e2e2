"""The engine's exception hierarchy.

Every error a user can cause is a `LayerlabError`: the CLI prints its message
and the kernel shows it without a traceback. An error that keeps the default
`exit_code` of 125 makes `run` exit with 125 and other commands with 1, as
Docker's CLI does (see `cli.main.exit_status`); a subclass with another
`exit_code` makes every command exit with that.
"""


class LayerlabError(Exception):
    """An error with a message meant for the user."""

    exit_code = 125


class NotFoundError(LayerlabError):
    """A named image, container, blob or file does not exist."""


class AlreadyExistsError(LayerlabError):
    """A name or tag is already taken."""


class InvalidArgumentError(LayerlabError):
    """A value given by the user cannot be used as it is."""


class FlagValueError(InvalidArgumentError):
    """An invalid flag value or combination, rejected before any work starts: every command exits with 125 for it."""


class ConflictError(LayerlabError):
    """The request conflicts with the current state (for example a running container)."""


class DockerfileError(InvalidArgumentError):
    """A Dockerfile that cannot be parsed or built, located at a line."""

    # A failed build exits with 1, as `docker build` does.
    exit_code = 1

    def __init__(self, message, *, path="Dockerfile", line=None, instruction=None):
        self.path = path
        self.line = line
        self.instruction = instruction
        self.reason = message
        super().__init__(self._format())

    def _format(self):
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.instruction:
            return f"{where}: {self.instruction}: {self.reason}"
        return f"{where}: {self.reason}"


class BuildStepError(LayerlabError):
    """A RUN step that exited with a non-zero status."""

    exit_code = 1

    def __init__(self, message, *, step=None, status=None, last_lines=()):
        self.step = step
        self.status = status
        self.last_lines = list(last_lines)
        super().__init__(message)


class ContainerError(LayerlabError):
    """A container that could not be created or started."""
