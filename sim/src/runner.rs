//! What the AI runner's paths answer, so runner clients parse a simulated answer.

use serde_json::json;

/// A 1x1 PNG, the image every simulated image pipeline "generates".
pub const SIM_IMAGE_URL: &str =
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

/// The AI runner's response fields for a runner path (`runner/openapi.yaml`: `ImageResponse`,
/// `VideoResponse`, `ImageToTextResponse`, `TextResponse`), or `None` for other paths. The seed
/// is the job's number on this simulator, so a test can tell answers apart.
pub(crate) fn runner_answer(path: &str, nth: u64) -> Option<serde_json::Value> {
    let media = json!({"images": [{"url": SIM_IMAGE_URL, "seed": nth, "nsfw": false}]});
    match path {
        "text-to-image" | "image-to-image" | "upscale" | "image-to-video" => Some(media),
        "image-to-text" => Some(json!({"text": "a simulated caption"})),
        "audio-to-text" => Some(json!({"text": "a simulated transcript", "chunks": []})),
        _ => None,
    }
}
