"""livepeer-ai 0.10.0, unmodified, against the gateway: text_to_image returns the parsed image.

Usage: python livepeer_ai_text_to_image.py GATEWAY_URL
Prints one JSON line with the parsed fields and the answer's headers.
"""

import json
import sys

from livepeer_ai import Livepeer

gateway = sys.argv[1]
s = Livepeer(server_url=gateway, http_bearer="x")
res = s.generate.text_to_image(request={"prompt": "a red fox in snow", "model_id": "sdxl-turbo"})
images = res.image_response.images
print(json.dumps({
    "status": res.http_meta.response.status_code,
    "count": len(images),
    "url": images[0].url,
    "seed": images[0].seed,
    "nsfw": images[0].nsfw,
    "orchestrator": res.http_meta.response.headers.get("x-orchestrator-url"),
}))
