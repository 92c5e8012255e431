//! Trusted-document manifests, as the frontend build tools write them:
//! - graphql-codegen's client preset (`persisted-documents.json`) and
//!   Relay's `--persist-output`: one JSON object, `{ "<id>": "<document>" }`;
//! - Apollo's `apollo-persisted-query-manifest`:
//!   `{ "format", "version": 1, "operations": [{ "id", "name", "type", "body" }] }`.
//!
//! Ids are opaque keys, compared as sent: codegen hashes with SHA-1 by
//! default (and some setups send that in `sha256Hash`), Relay with MD5,
//! Apollo with SHA-256; deployql never recomputes them.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use foldhash::{HashMap, HashSet};
use serde::Deserialize;

use crate::engine::DocumentCheck;

/// The documents of every manifest, by id and by text.
#[derive(Debug, Default)]
pub struct Manifests {
    by_id: HashMap<String, Arc<str>>,
    texts: HashSet<Arc<str>>,
}

/// One document of a manifest, and where it came from.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub text: Arc<str>,
    pub file: PathBuf,
}

impl Manifests {
    /// The document with `id`, if a manifest holds one.
    pub fn get(&self, id: &str) -> Option<&Arc<str>> {
        self.by_id.get(id)
    }

    /// Whether a manifest holds `text`, exactly.
    pub fn holds_text(&self, text: &str) -> bool {
        self.texts.contains(text)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The manifests read from `paths` (files, or directories whose `.json`
    /// files are read in name order), each document checked by `check`;
    /// with the parsed documents, for the engine to keep. The first error
    /// names its file and, for a document, its id.
    pub async fn load(
        paths: &[PathBuf],
        check: &DocumentCheck,
    ) -> Result<(Self, Vec<(String, async_graphql::parser::types::ExecutableDocument)>), String>
    {
        let mut manifests = Self::default();
        let mut parsed = Vec::new();
        let mut origin: HashMap<String, PathBuf> = HashMap::default();
        for entry in entries(paths)? {
            let document = check.check(&entry.text).await.map_err(|err| {
                format!("{}: document `{}` is not valid: {err}", entry.file.display(), entry.id)
            })?;
            if let Some(known) = manifests.by_id.get(&entry.id) {
                if **known != *entry.text {
                    return Err(format!(
                        "{}: document `{}` differs from the one with the same id in {}",
                        entry.file.display(),
                        entry.id,
                        origin.get(&entry.id).map_or_else(String::new, |f| f.display().to_string())
                    ));
                }
                continue;
            }
            if manifests.texts.insert(entry.text.clone()) {
                parsed.push((entry.text.to_string(), document));
            }
            origin.insert(entry.id.clone(), entry.file);
            manifests.by_id.insert(entry.id, entry.text);
        }
        Ok((manifests, parsed))
    }
}

/// Every document of the manifests at `paths`, in order.
pub fn entries(paths: &[PathBuf]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for file in files(paths)? {
        entries.extend(read(&file)?);
    }
    Ok(entries)
}

/// The manifest files `paths` name: each file, and each directory's
/// `.json` files in name order.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let listed = std::fs::read_dir(path)
                .map_err(|err| format!("{}: cannot list the directory: {err}", path.display()))?;
            let mut json: Vec<PathBuf> = listed
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|file| file.extension().is_some_and(|ext| ext == "json"))
                .collect();
            json.sort();
            if json.is_empty() {
                return Err(format!("{}: the directory holds no .json manifest", path.display()));
            }
            files.extend(json);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The documents of the manifest in `file`, whichever tool wrote it.
fn read(file: &Path) -> Result<Vec<Entry>, String> {
    let at = |message: String| format!("{}: {message}", file.display());
    let bytes = std::fs::read(file).map_err(|err| at(format!("cannot read it: {err}")))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|err| {
        at(format!(
            "not a manifest ({err}): expected {{\"<id>\": \"<document>\"}} (graphql-codegen, \
             Relay) or Apollo's {{\"format\": \"apollo-persisted-query-manifest\", ...}}"
        ))
    })?;
    let documents = match manifest {
        Manifest::Apollo(apollo) => {
            if apollo.format != APOLLO_FORMAT || apollo.version != 1 {
                return Err(at(format!(
                    "format `{}` version {}: only `{APOLLO_FORMAT}` version 1 is read",
                    apollo.format, apollo.version
                )));
            }
            apollo.operations.into_iter().map(|operation| (operation.id, operation.body)).collect()
        }
        Manifest::Map(map) => map.into_iter().collect::<Vec<_>>(),
    };
    if documents.is_empty() {
        return Err(at("the manifest holds no document".into()));
    }
    documents
        .into_iter()
        .map(|(id, text)| {
            if id.is_empty() || id.len() > MAX_ID_BYTES {
                return Err(at(format!("an id must be 1 to {MAX_ID_BYTES} bytes, got `{id}`")));
            }
            Ok(Entry { id, text: text.into(), file: file.to_owned() })
        })
        .collect()
}

/// Longest document id read (a SHA-256 with its `sha256:` prefix is 71).
pub const MAX_ID_BYTES: usize = 256;

const APOLLO_FORMAT: &str = "apollo-persisted-query-manifest";

#[derive(Deserialize)]
#[serde(untagged)]
enum Manifest {
    Apollo(ApolloManifest),
    Map(std::collections::BTreeMap<String, String>),
}

#[derive(Deserialize)]
struct ApolloManifest {
    format: String,
    version: u64,
    operations: Vec<ApolloOperation>,
}

#[derive(Deserialize)]
struct ApolloOperation {
    id: String,
    body: String,
}
