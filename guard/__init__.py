"""An API guard for Flask: authentication, rate limits, security headers, CORS and audit."""

from .config import GuardConfig as GuardConfig
from .errors import AuthenticationRequired as AuthenticationRequired
from .errors import ConfigurationError as ConfigurationError
from .errors import GuardError as GuardError
from .errors import GuardUnavailable as GuardUnavailable
from .errors import InsufficientScope as InsufficientScope
from .errors import InvalidRequest as InvalidRequest
from .errors import InvalidToken as InvalidToken
from .errors import PayloadTooLarge as PayloadTooLarge
from .errors import RateLimited as RateLimited
from .errors import RequestRejected as RequestRejected
from .errors import UnsupportedMediaType as UnsupportedMediaType
from .extension import Guard as Guard
from .keys import Keys as Keys
from .keys import KeyStateError as KeyStateError
from .keys import Reason as Reason
from .keys import Verdict as Verdict
from .logs import RequestIdFilter as RequestIdFilter
from .tokens import TokenCodec as TokenCodec
