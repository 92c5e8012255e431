//! Documents a request names by id rather than sends as text, in each
//! shape the clients send:
//! - GraphQL over HTTP's persisted documents: `documentId`, either
//!   `sha256:<64 hex>` or a custom id;
//! - Relay's `doc_id`;
//! - Apollo's automatic persisted queries: `extensions.persistedQuery
//!   {version: 1, sha256Hash}`, with the text to register it or without.
//!
//! Ids are looked up in the trusted manifests (`manifest`), then, for a
//! SHA-256, among registered automatic persisted queries (`store`). With
//! `TRUSTED_DOCUMENTS_ONLY`, only the manifests' documents run, and nothing
//! registers. The transports put top-level `documentId` and `doc_id` into
//! the request's `extensions` under those names, so one function reads
//! every transport's requests.

pub mod manifest;
pub mod store;

use std::sync::Arc;

use async_graphql::{Request, Value};

use self::{manifest::Manifests, store::Store};
use crate::{
    config::Limits,
    digest::sha256_hex,
    engine::{self, DocumentId},
    error::codes,
    telemetry::{Metrics, Refusal as Counted},
};

/// Where a transport puts a request's top-level `documentId`.
pub const DOCUMENT_ID: &str = "documentId";
/// Where a transport puts a request's top-level `doc_id` (Relay).
pub const RELAY_DOC_ID: &str = "doc_id";
/// Apollo's automatic persisted queries' extension.
const PERSISTED_QUERY: &str = "persistedQuery";

/// The documents requests may name by id, and whether only those run.
#[derive(Debug)]
pub struct PersistedDocuments {
    manifests: Manifests,
    /// Automatic persisted queries' registrations; none in trusted-only mode.
    store: Option<Store>,
    /// Whether a text document that reads only introspection runs in
    /// trusted-only mode.
    introspection: bool,
    limits: Limits,
    metrics: Metrics,
}

/// Why a request's document cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No document has the id (an automatic persisted query when `apq`).
    NotFound { id: String, apq: bool },
    /// Trusted-only mode, and the document is in no manifest (or the
    /// request would register an automatic persisted query).
    Required,
    /// The text does not hash to the automatic persisted query's hash.
    Mismatch,
    /// The request names its document in a way that cannot be read.
    Malformed(String),
}

impl Refusal {
    /// Its `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => codes::PERSISTED_QUERY_NOT_FOUND,
            Self::Required => codes::PERSISTED_QUERY_REQUIRED,
            Self::Mismatch | Self::Malformed(_) => codes::BAD_REQUEST,
        }
    }

    /// Its one-line message.
    pub fn message(&self) -> String {
        match self {
            // Apollo Client matches the message as well as the code.
            Self::NotFound { apq: true, .. } => "PersistedQueryNotFound".to_owned(),
            Self::NotFound { id, apq: false } => format!(
                "no persisted document has the id `{}`: send the document as `query`",
                crate::error::echo(id)
            ),
            Self::Required => "this server runs only its trusted documents \
                               (TRUSTED_DOCUMENTS_ONLY): send a known document's id"
                .to_owned(),
            Self::Mismatch => {
                "the query's SHA-256 differs from extensions.persistedQuery.sha256Hash".to_owned()
            }
            Self::Malformed(message) => message.clone(),
        }
    }

    /// The id the request named, when none has it.
    fn id(&self) -> Option<&str> {
        match self {
            Self::NotFound { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether the client may fix it by sending the text (a miss), rather
    /// than by changing the request (HTTP: 400 whatever the media type).
    pub fn is_miss(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// As a GraphQL error, with its code.
    pub fn to_server_error(&self) -> async_graphql::ServerError {
        let mut error = async_graphql::ServerError::new(self.message(), None);
        error.extensions.get_or_insert_with(Default::default).set("code", self.code());
        error
    }

    fn counted(&self) -> Option<Counted> {
        match self {
            Self::NotFound { .. } => None,
            Self::Required => Some(Counted::PersistedQueryRequired),
            Self::Mismatch => Some(Counted::PersistedQueryMismatch),
            Self::Malformed(_) => Some(Counted::PersistedQueryMalformed),
        }
    }
}

/// How a request names its document.
enum Named {
    Text,
    /// By `id`: `documentId` or `doc_id`, or (`apq`) an automatic persisted
    /// query's hash, which may come with the text to register.
    Id {
        id: String,
        apq: bool,
    },
}

impl PersistedDocuments {
    /// `manifests` trusted; `store` registers automatic persisted queries
    /// (`None`: trusted-only mode). `introspection`: whether a text
    /// document reading only introspection runs in trusted-only mode.
    pub fn new(
        manifests: Manifests,
        store: Option<Store>,
        introspection: bool,
        limits: Limits,
        metrics: Metrics,
    ) -> Self {
        Self { manifests, store, introspection, limits, metrics }
    }

    /// Whether only the manifests' documents run.
    pub fn trusted_only(&self) -> bool {
        self.store.is_none()
    }

    /// Puts the text of the document `request` names into its `query` (and
    /// the id it named it by into its data, see [`DocumentId`]), or says
    /// why it cannot run.
    pub async fn resolve(&self, request: &mut Request) -> Result<(), Refusal> {
        let resolved = self.resolved(request).await;
        if let Err(refusal) = &resolved {
            if let Some(counted) = refusal.counted() {
                self.metrics.refused(counted);
            }
            let request_id = crate::telemetry::RequestId::current();
            tracing::info!(
                message = "persisted document refused",
                request_id = request_id.as_ref().map(crate::telemetry::RequestId::as_str),
                operation_name = request.operation_name.as_deref(),
                document_id = refusal.id(),
                outcome = refusal.code(),
            );
        }
        resolved
    }

    async fn resolved(&self, request: &mut Request) -> Result<(), Refusal> {
        let has_text = !request.query.trim().is_empty();
        match named(request)? {
            Named::Text if !has_text => Err(Refusal::Malformed(
                "the request has no `query`: send the GraphQL document as `query`, or its id \
                 as `documentId`"
                    .into(),
            )),
            Named::Text => self.text_allowed(request),
            Named::Id { id, apq: true } if has_text => self.register(request, id).await,
            Named::Id { apq: false, .. } if has_text => Err(Refusal::Malformed(
                "send either `query` or `documentId`/`doc_id`, not both".into(),
            )),
            Named::Id { id, apq } => {
                let text = self
                    .look_up(&id)
                    .await
                    .ok_or_else(|| Refusal::NotFound { id: id.clone(), apq })?;
                named_by(request, &text, id);
                Ok(())
            }
        }
    }

    /// A text document: any, unless only trusted documents run.
    fn text_allowed(&self, request: &mut Request) -> Result<(), Refusal> {
        let allowed = !self.trusted_only()
            || self.manifests.holds_text(&request.query)
            || self.introspection && engine::reads_only_introspection(request, &self.limits);
        if allowed { Ok(()) } else { Err(Refusal::Required) }
    }

    /// The document with `id`: a manifest's (a `sha256:` id also by its bare
    /// hex, as codegen and Apollo write them), else a registered automatic
    /// persisted query's.
    async fn look_up(&self, id: &str) -> Option<Arc<str>> {
        let hex = id.strip_prefix("sha256:");
        let trusted = self.manifests.get(id).or_else(|| self.manifests.get(hex?));
        if let Some(text) = trusted {
            self.metrics.persisted("hit", "manifest");
            return Some(text.clone());
        }
        let (Some(store), Some(hash)) = (&self.store, as_sha256_hex(hex.unwrap_or(id))) else {
            self.metrics.persisted("miss", "manifest");
            return None;
        };
        let found = store.get(&hash).await;
        self.metrics.persisted(if found.is_some() { "hit" } else { "miss" }, "store");
        found
    }

    /// An automatic persisted query sent with its text: registered when the
    /// text hashes to `hash`; a manifest's document under its own id
    /// (which may be another hash) runs as it is.
    async fn register(&self, request: &mut Request, hash: String) -> Result<(), Refusal> {
        if let Some(trusted) = self.manifests.get(&hash) {
            if **trusted != *request.query {
                return Err(Refusal::Mismatch);
            }
            self.metrics.persisted("hit", "manifest");
            request.data.insert(DocumentId(hash.into()));
            return Ok(());
        }
        let digest = sha256_hex(&request.query);
        if !digest.eq_ignore_ascii_case(&hash) {
            return Err(Refusal::Mismatch);
        }
        let Some(store) = &self.store else {
            // Trusted-only: the text runs if it is trusted; nothing registers.
            self.text_allowed(request)?;
            request.data.insert(DocumentId(digest.into()));
            return Ok(());
        };
        if store.register(&digest, &request.query).await {
            self.metrics.persisted("registered", "store");
        }
        request.data.insert(DocumentId(digest.into()));
        Ok(())
    }
}

/// How `request` names its document, taking the transports' top-level ids
/// out of its extensions.
fn named(request: &mut Request) -> Result<Named, Refusal> {
    let mut take = |key: &str| match request.extensions.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= manifest::MAX_ID_BYTES => {
            Ok(Some(id))
        }
        Some(_) => Err(Refusal::Malformed(format!(
            "`{key}` must be a string of 1 to {} characters",
            manifest::MAX_ID_BYTES
        ))),
    };
    let document_id = take(DOCUMENT_ID)?;
    let doc_id = take(RELAY_DOC_ID)?;
    let apq = match request.extensions.get(PERSISTED_QUERY) {
        None | Some(Value::Null) => None,
        Some(Value::Object(apq)) => {
            let version = apq.get("version");
            if !matches!(version, Some(Value::Number(n)) if n.as_u64() == Some(1)) {
                return Err(Refusal::Malformed(
                    "extensions.persistedQuery.version must be 1".into(),
                ));
            }
            match apq.get("sha256Hash") {
                Some(Value::String(hash))
                    if !hash.is_empty() && hash.len() <= manifest::MAX_ID_BYTES =>
                {
                    Some(hash.clone())
                }
                _ => {
                    return Err(Refusal::Malformed(
                        "extensions.persistedQuery.sha256Hash must be a string".into(),
                    ));
                }
            }
        }
        Some(_) => {
            return Err(Refusal::Malformed("extensions.persistedQuery must be an object".into()));
        }
    };
    match (document_id, doc_id, apq) {
        (None, None, None) => Ok(Named::Text),
        (Some(id), None, None) | (None, Some(id), None) => Ok(Named::Id { id, apq: false }),
        (None, None, Some(id)) => Ok(Named::Id { id, apq: true }),
        _ => Err(Refusal::Malformed(
            "name the document one way: `documentId`, `doc_id` or extensions.persistedQuery".into(),
        )),
    }
}

/// `request` runs `text`, which it named by `id`.
fn named_by(request: &mut Request, text: &str, id: String) {
    request.query = text.to_string();
    request.data.insert(DocumentId(id.into()));
}

/// `id` in lowercase if it is a SHA-256 in hex.
fn as_sha256_hex(id: &str) -> Option<String> {
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}
