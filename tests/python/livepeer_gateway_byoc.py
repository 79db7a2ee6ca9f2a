"""livepeer-gateway 1.0.0, unmodified: submit_byoc_job with the gateway as its orchestrator URL.

Usage: python livepeer_gateway_byoc.py GATEWAY_URL CAPABILITY
Prints one JSON line with the response the SDK returned (the worker's data and headers).
"""

import json
import sys

from livepeer_gateway.byoc import ByocJobRequest, submit_byoc_job

gateway, capability = sys.argv[1], sys.argv[2]
payload = {"text": "hello, gateway", "n": 3}
res = submit_byoc_job(
    ByocJobRequest(capability=capability, payload=payload, timeout_seconds=30, job_id="py-job-1"),
    orch_url=gateway,
)
headers = {k.lower(): v for k, v in res.headers.items()}
print(json.dumps({
    "data": res.data,
    "status": res.status_code,
    "orchestrator_url": res.orchestrator_url,
    "balance": res.balance,
    "x_orchestrator_url": headers.get("x-orchestrator-url"),
    "sent_body": json.dumps(payload),
}))
