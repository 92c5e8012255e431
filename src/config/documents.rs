//! Persisted and trusted documents: the manifests the frontends' build
//! tools write, whether only those run, introspection, and the bound on
//! automatic persisted queries.

use std::path::PathBuf;

/// Automatic persisted queries kept unless configured otherwise.
pub const DEFAULT_PERSISTED_QUERIES: u64 = 10_000;

/// What `serve` reads of persisted documents.
#[derive(Debug, Clone, clap::Args)]
pub struct DocumentsConfig {
    /// Trusted-document manifests, comma-separated files or directories (of
    /// `.json` files): graphql-codegen's `persisted-documents.json`, Apollo's
    /// `persisted-query-manifest.json`, Relay's `--persist-output` map. Each
    /// document is checked against the schema at start; a bad one stops it.
    #[arg(long, env, value_delimiter = ',')]
    pub trusted_documents: Vec<PathBuf>,
    /// Run only the manifests' documents (by id, or by exact text); any
    /// other is refused with PERSISTED_QUERY_REQUIRED, and automatic
    /// persisted queries do not register.
    #[arg(long, env, default_value_t = false, action = clap::ArgAction::Set)]
    pub trusted_documents_only: bool,
    /// Whether `__schema`/`__type` may be read (and GraphiQL served).
    /// Default: yes, except with TRUSTED_DOCUMENTS_ONLY outside dev mode.
    #[arg(long, env, action = clap::ArgAction::Set)]
    pub allow_introspection: Option<bool>,
    /// Automatic persisted queries kept in the database; past it, the
    /// oldest registrations are dropped (their clients register again).
    #[arg(long, env, default_value_t = DEFAULT_PERSISTED_QUERIES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_persisted_queries: u64,
}

impl DocumentsConfig {
    /// Whether introspection is allowed, in dev mode or not.
    pub fn introspection(&self, dev: bool) -> bool {
        self.allow_introspection.unwrap_or(dev || !self.trusted_documents_only)
    }
}
