"""An API guard for Flask: authentication, rate limits, security headers, CORS and audit."""

from guard.config import GuardConfig as GuardConfig
from guard.errors import AuthenticationRequired as AuthenticationRequired
from guard.errors import ConfigurationError as ConfigurationError
from guard.errors import GuardError as GuardError
from guard.errors import GuardUnavailable as GuardUnavailable
from guard.errors import InsufficientScope as InsufficientScope
from guard.errors import InvalidRequest as InvalidRequest
from guard.errors import InvalidToken as InvalidToken
from guard.errors import PayloadTooLarge as PayloadTooLarge
from guard.errors import RateLimited as RateLimited
from guard.errors import RequestRejected as RequestRejected
from guard.errors import UnsupportedMediaType as UnsupportedMediaType
from guard.extension import Guard as Guard
from guard.integrations.docs_pages import DOCS_CSP as DOCS_CSP
from guard.integrations.docs_pages import pin_inline_scripts as pin_inline_scripts
from guard.keys.lifecycle import Keys as Keys
from guard.keys.lifecycle import KeyStateError as KeyStateError
from guard.keys.lifecycle import Reason as Reason
from guard.keys.lifecycle import Verdict as Verdict
from guard.keys.tokens import TokenCodec as TokenCodec
from guard.observability.logs import RequestIdFilter as RequestIdFilter
from guard.observability.signals import key_revoked as key_revoked
from guard.observability.signals import key_rotated as key_rotated
from guard.observability.signals import request_authenticated as request_authenticated
from guard.observability.signals import request_refused as request_refused
