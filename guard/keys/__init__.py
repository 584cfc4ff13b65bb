"""API keys: the token format (:mod:`.tokens`) and their verification and lifecycle
(:mod:`.lifecycle`)."""

from .lifecycle import InvalidKeySettings as InvalidKeySettings
from .lifecycle import Keys as Keys
from .lifecycle import KeyStateError as KeyStateError
from .lifecycle import Reason as Reason
from .lifecycle import Verdict as Verdict
from .lifecycle import WriteUnconfirmed as WriteUnconfirmed
from .tokens import TokenCodec as TokenCodec
