"""CVAT's production settings, with only what a loopback stack without Docker must change.

CVAT's processes run with ``DJANGO_SETTINGS_MODULE=sam2_e2e_settings`` (this folder on their
PYTHONPATH). Everything else (database, Redis, Nuclio host, port and invoke method, allowed hosts) is
read by CVAT's own settings from the same environment variables its containers get.
"""

import os

from cvat.settings.production import *  # noqa: F403  (CVAT's settings, as its containers run them)

# production.py hard-codes OPA at http://opa:8181 (a Docker network alias)
IAM_OPA_HOST = os.environ["SAM2_E2E_OPA_URL"]
IAM_OPA_DATA_URL = f"{IAM_OPA_HOST}/v1/data"

# CVAT sends its requests to untrusted URLs (webhooks, cloud storages) through the smokescreen egress
# proxy its server container runs; there is none here and these tests make no such request.
SMOKESCREEN_ENABLED = False
