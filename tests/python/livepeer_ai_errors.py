"""livepeer-ai 0.10.0, unmodified: the gateway's errors raise the SDK's typed errors.

Usage: python livepeer_ai_errors.py GATEWAY_URL CASE
  CASE mismatch: a Livepeer header naming another capability on /text-to-image (a 400 the
                 gateway makes): errors.HTTPError, our message in .data.detail.msg.
  CASE unknown:  /text-to-image when no orchestrator offers it (the gateway's 404):
                 errors.SDKError, our JSON body in .body.
Prints one JSON line describing the exception raised.
"""

import base64
import json
import sys

from livepeer_ai import Livepeer
from livepeer_ai.models import errors

gateway, case = sys.argv[1], sys.argv[2]
s = Livepeer(server_url=gateway, http_bearer="x")
headers = {}
if case == "mismatch":
    job = {"capability": "depth", "request": "{}", "timeout_seconds": 30}
    headers["Livepeer"] = base64.b64encode(json.dumps(job).encode()).decode()
try:
    s.generate.text_to_image(request={"prompt": "a cat", "model_id": "m"}, http_headers=headers)
    print(json.dumps({"raised": None}))
except errors.HTTPError as e:
    print(json.dumps({"raised": "HTTPError", "msg": e.data.detail.msg}))
except errors.SDKError as e:
    print(json.dumps({"raised": "SDKError", "status": e.status_code, "body": e.body}))
