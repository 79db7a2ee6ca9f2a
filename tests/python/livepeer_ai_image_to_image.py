"""livepeer-ai 0.10.0, unmodified: image_to_image sends a multipart body through the gateway.

Usage: python livepeer_ai_image_to_image.py GATEWAY_URL
An httpx request hook (the SDK accepts its own httpx client) records the exact bytes and
Content-Type the SDK sent, so the test can compare them with what the orchestrator received.
Prints one JSON line.
"""

import hashlib
import json
import sys

import httpx
from livepeer_ai import Livepeer

sent = {}


def record(request: httpx.Request) -> None:
    body = request.read()
    sent["sha256"] = hashlib.sha256(body).hexdigest()
    sent["bytes"] = len(body)
    sent["content_type"] = request.headers["content-type"]


gateway = sys.argv[1]
# Every byte value, and lines that look like multipart boundaries, inside the file part.
image = bytes(range(256)) * 64 + b"\r\n--not-a-boundary\r\n" + bytes(range(255, -1, -1))
s = Livepeer(server_url=gateway, http_bearer="x", client=httpx.Client(event_hooks={"request": [record]}))
res = s.generate.image_to_image(request={
    "prompt": "make it blue",
    "model_id": "timbrooks/instruct-pix2pix",
    "image": {"file_name": "in.png", "content": image, "content_type": "image/png"},
})
img = res.image_response.images[0]
print(json.dumps({"sent": sent, "url": img.url, "seed": img.seed, "image_sha256": hashlib.sha256(image).hexdigest()}))
