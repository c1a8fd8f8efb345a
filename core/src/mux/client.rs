//! The Mux API client.

use super::*;

/// A failed call to Mux.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("Mux answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Mux could not be reached: {0}")]
    Transport(String),
    #[error("unexpected answer from Mux: {0}")]
    Decode(String),
}

impl MuxError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A direct upload as Mux reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MuxUpload {
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub asset_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PlaybackId {
    pub id: String,
    #[serde(default)]
    pub policy: Option<String>,
}

/// An asset as Mux reports it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MuxAsset {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub playback_ids: Option<Vec<PlaybackId>>,
    /// A JSON string (what we send) or, leniently, an object.
    #[serde(default)]
    pub passthrough: Option<Value>,
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Seconds, once Mux knows it.
    #[serde(default)]
    pub duration: Option<f64>,
}

impl MuxAsset {
    pub fn first_playback_id(&self) -> Option<&str> {
        self.playback_ids
            .as_ref()?
            .iter()
            .map(|p| p.id.as_str())
            .find(|id| !id.is_empty())
    }
    pub fn passthrough_object(&self) -> Option<serde_json::Map<String, Value>> {
        parse_passthrough(self.passthrough.as_ref()?)
    }
}

#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub(super) data: T,
}

/// The Mux Video API with this deployment's credentials.
#[derive(Clone)]
pub struct MuxClient {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) token_id: String,
    pub(super) token_secret: String,
}

impl std::fmt::Debug for MuxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// `POST /api/mux/upload-url` without Mux credentials (§3.6).
pub const MSG_VIDEO_NOT_CONFIGURED: &str = "Video service not configured";

/// The Mux client, or 503 `Mux is not configured`.
pub fn client(ctx: &Context) -> Result<MuxClient> {
    let mux = ctx
        .config
        .mux
        .as_ref()
        .ok_or_else(|| Error::not_configured("Mux"))?;
    Ok(MuxClient {
        http: ctx.http.clone(),
        base: ctx.config.mux_base_url.trim_end_matches('/').to_string(),
        token_id: mux.token_id.clone(),
        token_secret: mux.token_secret.expose().to_string(),
    })
}

impl MuxClient {
    /// `{base}/video/v1/{segments...}` with every segment percent-encoded.
    fn url(&self, segments: &[&str]) -> std::result::Result<url::Url, MuxError> {
        let mut u = url::Url::parse(&self.base)
            .map_err(|e| MuxError::Transport(format!("bad MUX_BASE_URL: {e}")))?;
        {
            let mut p = u
                .path_segments_mut()
                .map_err(|_| MuxError::Transport("bad MUX_BASE_URL".into()))?;
            p.pop_if_empty().push("video").push("v1");
            for s in segments {
                p.push(s);
            }
        }
        Ok(u)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> std::result::Result<Vec<u8>, MuxError> {
        let resp = rb
            .basic_auth(&self.token_id, Some(&self.token_secret))
            .timeout(MUX_TIMEOUT)
            .send()
            .await
            .map_err(|e| MuxError::Transport(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| MuxError::Transport(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            let body: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(MuxError::Status { status, body });
        }
        Ok(bytes.to_vec())
    }

    async fn data<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> std::result::Result<T, MuxError> {
        let bytes = self.send(rb).await?;
        serde_json::from_slice::<Envelope<T>>(&bytes)
            .map(|e| e.data)
            .map_err(|e| MuxError::Decode(e.to_string()))
    }

    /// `POST /video/v1/uploads`.
    pub async fn create_direct_upload(
        &self,
        body: &Value,
    ) -> std::result::Result<MuxUpload, MuxError> {
        let url = self.url(&["uploads"])?;
        self.data(self.http.post(url).json(body)).await
    }

    /// `GET /video/v1/uploads/{id}`.
    pub async fn get_upload(&self, upload_id: &str) -> std::result::Result<MuxUpload, MuxError> {
        let url = self.url(&["uploads", upload_id])?;
        self.data(self.http.get(url)).await
    }

    /// `GET /video/v1/assets/{id}`.
    pub async fn get_asset(&self, asset_id: &str) -> std::result::Result<MuxAsset, MuxError> {
        let url = self.url(&["assets", asset_id])?;
        self.data(self.http.get(url)).await
    }

    /// `GET /video/v1/assets?limit=N` (most recent first).
    pub async fn list_assets(&self, limit: u32) -> std::result::Result<Vec<MuxAsset>, MuxError> {
        let mut url = self.url(&["assets"])?;
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        self.data(self.http.get(url)).await
    }

    /// `DELETE /video/v1/assets/{id}`.
    pub async fn delete_asset(&self, asset_id: &str) -> std::result::Result<(), MuxError> {
        let url = self.url(&["assets", asset_id])?;
        self.send(self.http.delete(url)).await.map(|_| ())
    }
}
