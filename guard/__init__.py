"""An API guard for Flask: authentication, rate limits, security headers, CORS and audit."""

from .config import GuardConfig as GuardConfig
from .errors import ConfigurationError as ConfigurationError
from .errors import GuardError as GuardError
from .keys import Keys as Keys
from .keys import KeyStateError as KeyStateError
from .keys import Reason as Reason
from .keys import Verdict as Verdict
from .tokens import TokenCodec as TokenCodec
