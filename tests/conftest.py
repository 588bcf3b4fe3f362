"""Shared test set-up: quiet third-party warnings, keep services' state out of the home folder."""

import os
import warnings

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
warnings.filterwarnings("ignore", category=FutureWarning)
