//! Request errors, each with its `extensions.code` and a one-line message:
//! a document past the limits, an operation that cannot be resolved, and
//! async-graphql's parse and validation errors made readable (where, what,
//! and never more than 64 characters of the client's input).

use async_graphql::{
    ErrorExtensionValues, Positioned, ServerError,
    parser::types::{DocumentOperations, ExecutableDocument, OperationDefinition},
};

use super::bounds;
use crate::{
    config::Limits,
    error::{codes, echo},
};

/// Refuses a document past any of `limits`, with a code saying which.
pub(super) fn check(document: &ExecutableDocument, limits: &Limits) -> Result<(), ServerError> {
    let refuse = |code: &str, message: String| Err(coded(ServerError::new(message, None), code));
    let Some((measured, aliases)) = bounds::measure(document) else {
        return refuse(
            codes::QUERY_TOO_DEEP,
            format!(
                "Query is nested too deep: fragments spread more than {} levels down",
                bounds::MAX_FRAGMENT_NESTING
            ),
        );
    };
    if limits.introspections == 0 && measured.introspection > 0 {
        // graphql-js' own rule's message (NoSchemaIntrospectionCustomRule).
        return refuse(
            codes::GRAPHQL_VALIDATION_FAILED,
            "GraphQL introspection has been disabled (ALLOW_INTROSPECTION=false), but the \
             document selects `__schema` or `__type`"
                .into(),
        );
    }
    // Messages are built eagerly: a verdict is cached with its document.
    let (m, l) = (&measured, limits);
    let checks = [
        (
            m.depth > l.depth,
            codes::QUERY_TOO_DEEP,
            format!("Query is nested too deep: {} levels, at most {}", m.depth, l.depth),
        ),
        (
            m.depth_any > l.introspection_depth,
            codes::QUERY_TOO_DEEP,
            format!(
                "Introspection is nested too deep: {} levels, at most {}",
                m.depth_any, l.introspection_depth
            ),
        ),
        (
            m.fields > l.fields,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: {} field selections once fragments are expanded, at most {}",
                m.fields, l.fields
            ),
        ),
        (
            aliases > l.aliases,
            codes::TOO_MANY_ALIASES,
            format!("{aliases} aliases, at most {}", l.aliases),
        ),
        (
            m.top_fields > l.root_fields,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: {} root fields, at most {}",
                m.top_fields, l.root_fields
            ),
        ),
        (
            m.introspection > l.introspections,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: {} `__schema`/`__type` selections, at most {} per operation",
                m.introspection, l.introspections
            ),
        ),
        (
            m.statements > l.statements_per_request,
            codes::QUERY_TOO_COMPLEX,
            format!(
                "Query is too complex: it would run {} SQL statements, at most {}",
                m.statements, l.statements_per_request
            ),
        ),
    ];
    match checks.into_iter().find(|(exceeded, ..)| *exceeded) {
        Some((_, code, message)) => refuse(code, message),
        None => Ok(()),
    }
}

/// The operation a request runs, by the GraphQL spec's rules.
pub(super) fn operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Result<&'d Positioned<OperationDefinition>, ServerError> {
    let resolution = |message: String| {
        coded(ServerError::new(message, None), codes::OPERATION_RESOLUTION_FAILURE)
    };
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), None) => Ok(operation),
        (DocumentOperations::Single(_), Some(name)) => Err(resolution(format!(
            "the document has no operation named `{}`: its one operation is anonymous",
            echo(name)
        ))),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).ok_or_else(|| {
                resolution(format!("the document has no operation named `{}`", echo(name)))
            })
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .values()
            .next()
            .ok_or_else(|| resolution("the document has no operation".into())),
        (DocumentOperations::Multiple(operations), None) => Err(resolution(format!(
            "the document has {} operations; say which to run with `operationName`",
            operations.len()
        ))),
    }
}

/// A parse error as one line: what the parser expected, and where.
pub(super) fn syntax_error(err: ServerError) -> ServerError {
    // The parsers' nesting bounds (`limit_recursive_depth`, the parser's own)
    // are no syntax errors.
    if err.message.contains("recursion") {
        let message = "Query is nested too deep for the parser: at most 32 levels of braces,                        lists and objects";
        return coded(ServerError::new(message, None), codes::QUERY_TOO_DEEP);
    }
    // pest's message is a drawing of the line with a caret; what matters is
    // its last `= ...` line.
    let expected = err
        .message
        .lines()
        .rev()
        .find_map(|line| line.trim_start().strip_prefix("= "))
        .unwrap_or_else(|| err.message.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
        .trim()
        .to_owned();
    let message = match err.locations.first() {
        Some(at) => format!("Syntax error at {}:{}: {expected}", at.line, at.column),
        None => format!("Syntax error: {expected}"),
    };
    coded(ServerError { message, ..err }, codes::GRAPHQL_PARSE_FAILED)
}

/// A validation error with its code, and where it is in the message too.
pub(super) fn validation_error(err: ServerError) -> ServerError {
    if has_code(&err) {
        return err;
    }
    // async-graphql's own cost check (list fields cost their page size).
    if err.message == "Query is too complex." {
        let message = "Query is too complex: its cost passes the limit (list fields cost \
                       their page size times their selection)"
            .to_owned();
        return coded(ServerError { message, ..err }, codes::QUERY_TOO_COMPLEX);
    }
    let said = bounded_quotes(err.message.trim_end_matches('.'));
    let message = match err.locations.first() {
        Some(at) => format!("{said} at {}:{}", at.line, at.column),
        None => said,
    };
    coded(ServerError { message, ..err }, codes::GRAPHQL_VALIDATION_FAILED)
}

/// async-graphql quotes names and values from the document in `"..."`;
/// each quote keeps at most 64 characters of it.
fn bounded_quotes(message: &str) -> String {
    let mut parts = message.split('"');
    let mut bounded = parts.next().unwrap_or_default().to_owned();
    for (n, part) in parts.enumerate() {
        bounded.push('"');
        bounded.push_str(&if n % 2 == 0 { echo(part) } else { part.to_owned() });
    }
    bounded
}

pub(super) fn has_code(err: &ServerError) -> bool {
    err.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some())
}

pub(super) fn coded(mut err: ServerError, code: &str) -> ServerError {
    if !has_code(&err) {
        err.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", code);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_read_as_one_line() {
        let err = async_graphql::parser::parse_query("{ deployments { ")
            .map(|_| ())
            .map_err(ServerError::from);
        let Err(err) = err else { panic!("a syntax error") };
        let err = syntax_error(err);
        assert!(!err.message.contains('\n'), "{}", err.message);
        assert!(err.message.starts_with("Syntax error at 1:"), "{}", err.message);
        assert!(err.message.contains("expected"), "{}", err.message);
    }

    #[test]
    fn quoted_input_in_messages_is_bounded() {
        let long = "x".repeat(1000);
        let message = bounded_quotes(&format!(r#"Unknown field "{long}" on type "Query""#));
        assert_eq!(message.chars().count(), r#"Unknown field "" on type "Query""#.len() + 65);
        assert!(message.ends_with(r#"…" on type "Query""#), "{message}");
    }

    #[test]
    fn operation_resolution_follows_the_spec() -> Result<(), String> {
        let two = async_graphql::parser::parse_query("query A { a } query B { b }")
            .map_err(|e| e.to_string())?;
        assert!(operation(&two, Some("B")).is_ok());
        assert!(operation(&two, None).is_err());
        assert!(operation(&two, Some("C")).is_err());
        let one = async_graphql::parser::parse_query("query A { a }").map_err(|e| e.to_string())?;
        assert!(operation(&one, None).is_ok());
        Ok(())
    }
}
