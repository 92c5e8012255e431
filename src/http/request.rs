//! A GraphQL request as the clients send it, over POST (a JSON object) or
//! GET (URL parameters): the document as `query`, or named by
//! `documentId` (GraphQL over HTTP's persisted documents) or `doc_id`
//! (Relay), which are put in the request's extensions for
//! [`crate::persisted`] to read, as a WebSocket's are.

use async_graphql::{Request, Value, Variables};
use serde::Deserialize;

use crate::persisted::{DOCUMENT_ID, RELAY_DOC_ID};

/// One request of a POST body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Posted {
    #[serde(default)]
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Variables,
    #[serde(default)]
    extensions: async_graphql::Extensions,
    #[serde(default)]
    document_id: Option<String>,
    #[serde(default, rename = "doc_id")]
    doc_id: Option<String>,
}

impl From<Posted> for Request {
    fn from(posted: Posted) -> Self {
        let mut request = Request::new(posted.query).variables(posted.variables);
        request.operation_name = posted.operation_name;
        request.extensions = posted.extensions;
        name_by_id(&mut request, posted.document_id, posted.doc_id);
        request
    }
}

/// The URL parameters of a GET request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    #[serde(default)]
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
    document_id: Option<String>,
    #[serde(rename = "doc_id")]
    doc_id: Option<String>,
}

/// Whether URL parameters `query` hold a GraphQL request (else a browser
/// gets GraphiQL).
pub(super) fn is_request(query: &str) -> bool {
    query.split('&').any(|parameter| {
        let name = parameter.split('=').next().unwrap_or_default();
        ["query", "documentId", "doc_id", "extensions"].contains(&name)
    })
}

/// The request URL parameters `query` hold.
pub(super) fn from_parameters(query: &str) -> Result<Request, String> {
    let uri: axum::http::Uri =
        format!("/?{query}").parse().map_err(|err| format!("not a URL query: {err}"))?;
    let parameters =
        axum::extract::Query::<Parameters>::try_from_uri(&uri).map_err(|err| err.body_text())?.0;
    let json = |name: &str, text: Option<String>| -> Result<Option<Value>, String> {
        text.map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| format!("`{name}` is not JSON: {err}"))
    };
    let mut request = Request::new(parameters.query);
    request.operation_name = parameters.operation_name;
    if let Some(variables) = json("variables", parameters.variables)? {
        request = request.variables(Variables::from_value(variables));
    }
    match json("extensions", parameters.extensions)? {
        Some(Value::Object(extensions)) => {
            request.extensions.extend(extensions.into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err("`extensions` must be a JSON object".into()),
    }
    name_by_id(&mut request, parameters.document_id, parameters.doc_id);
    Ok(request)
}

fn name_by_id(request: &mut Request, document_id: Option<String>, doc_id: Option<String>) {
    if let Some(id) = document_id {
        request.extensions.insert(DOCUMENT_ID.into(), Value::String(id));
    }
    if let Some(id) = doc_id {
        request.extensions.insert(RELAY_DOC_ID.into(), Value::String(id));
    }
}
