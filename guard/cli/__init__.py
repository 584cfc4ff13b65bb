"""The operator's ``guard`` command (also ``flask guard``)."""

from .commands import cli as cli
from .commands import main as main
