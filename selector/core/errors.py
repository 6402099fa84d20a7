"""The project's error types: library code raises these, only the CLI prints and exits."""


class SelectorError(Exception):
    """Base class for errors a user can act on; the message says what was found and what to do."""


class ConfigError(SelectorError):
    """A configuration file or option is invalid."""


class InputError(SelectorError):
    """An input shard cannot be read."""


class ClassifierError(SelectorError):
    """A trained classifier is missing, incomplete or incompatible."""


class ManifestError(SelectorError):
    """A manifest is missing, inconsistent, or no longer matches the input shards it was built from."""


class ExportError(SelectorError):
    """A manifest cannot be exported, or a written export disagrees with its manifest."""


class AnnotateError(SelectorError):
    """An LLM endpoint cannot be reached, rejects the requests, or stopped answering during `selector annotate`."""
