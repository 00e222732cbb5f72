"""The WSGI entry point gunicorn loads in each worker: ``relay.wsgi:application``.

Settings come from the environment, as the ``serve`` command passes them.
"""

from __future__ import annotations

import logging

from relay.app import create_app
from relay.config import load_settings
from relay.logs import SignatureFilter, setup_logging

settings = load_settings()
setup_logging(settings.log_format, secrets=settings.secret_values())
application = create_app(settings)
# gunicorn's own error log has its own handlers, outside setup_logging.
logging.getLogger("gunicorn.error").addFilter(SignatureFilter())
