//! Whether a request's variables are plainly valid for the types its
//! operation declares them with, by the same rules as async-graphql's
//! `ArgumentsOfCorrectType`, the one validation rule whose verdict depends
//! on the variables rather than the document. Conservative: `true` only
//! where those rules would pass; anything unusual (a null, a list given as
//! a single value, a scalar without a validator, a oneof input) is `false`,
//! and the request is then validated in full, which words the error.

use async_graphql::{
    ServerError, Value as ConstValue, Variables,
    parser::types::OperationDefinition,
    registry::{MetaType, MetaTypeName, Registry},
};

use super::refusals::coded;
use crate::error::codes;

/// Whether every variable `operation` declares is given a value that plainly
/// fits its type, or is left out and has a default.
pub(super) fn plainly_valid(
    registry: &Registry,
    operation: &OperationDefinition,
    variables: &Variables,
) -> bool {
    operation.variable_definitions.iter().all(|definition| {
        let definition = &definition.node;
        match variables.get(&definition.name.node) {
            Some(value) => fits(registry, &definition.var_type.node.to_string(), value),
            None => definition.default_value.is_some(),
        }
    })
}

/// The request error for the first variable `operation` requires (a non-null
/// type, no default) that the request leaves out. async-graphql would run
/// the operation and fail its field with an uncoded "Variable id is not
/// defined."; GraphQL's CoerceVariableValues makes it a request error.
pub(super) fn missing(
    operation: &OperationDefinition,
    variables: &Variables,
) -> Option<ServerError> {
    operation.variable_definitions.iter().find_map(|definition| {
        let node = &definition.node;
        let required = !node.var_type.node.nullable && node.default_value.is_none();
        (required && !variables.contains_key(&node.name.node)).then(|| {
            let message = format!(
                "Variable \"${}\" of required type \"{}\" was not provided.",
                node.name.node, node.var_type.node
            );
            coded(ServerError::new(message, Some(definition.pos)), codes::GRAPHQL_VALIDATION_FAILED)
        })
    })
}

/// Whether `value` fits the type written `type_name` (`[ID!]!`, `Int`, ...).
fn fits(registry: &Registry, type_name: &str, value: &ConstValue) -> bool {
    if matches!(value, ConstValue::Null) {
        return false;
    }
    match MetaTypeName::create(type_name) {
        MetaTypeName::NonNull(inner) => fits(registry, inner, value),
        MetaTypeName::List(item) => match value {
            ConstValue::List(items) => items.iter().all(|value| fits(registry, item, value)),
            _ => false,
        },
        MetaTypeName::Named(name) => fits_named(registry, name, value),
    }
}

fn fits_named(registry: &Registry, name: &str, value: &ConstValue) -> bool {
    match registry.types.get(name) {
        Some(MetaType::Scalar { is_valid: Some(is_valid), .. }) => is_valid(value),
        Some(MetaType::Enum { enum_values, .. }) => match value {
            ConstValue::Enum(value) => enum_values.contains_key(value.as_str()),
            ConstValue::String(value) => enum_values.contains_key(value.as_str()),
            _ => false,
        },
        Some(MetaType::InputObject { input_fields, oneof: false, .. }) => match value {
            ConstValue::Object(values) => {
                values.keys().all(|key| input_fields.contains_key(key.as_str()))
                    && input_fields.values().all(|field| match values.get(field.name.as_str()) {
                        Some(value) => fits(registry, &field.ty, value),
                        None => {
                            !MetaTypeName::create(&field.ty).is_non_null()
                                || field.default_value.is_some()
                        }
                    })
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::{parse_query, types::DocumentOperations};
    use serde_json::json;

    use super::*;

    async fn check(query: &str, variables: serde_json::Value) -> bool {
        let registry = crate::engine::registry().await.expect("registry");
        let document = parse_query(query).expect("parses");
        let operation = match &document.operations {
            DocumentOperations::Single(operation) => &operation.node,
            DocumentOperations::Multiple(_) => panic!("one operation"),
        };
        plainly_valid(registry, operation, &Variables::from_json(variables))
    }

    #[tokio::test]
    async fn plain_values_of_the_declared_types_pass() {
        let lookup = "query($id: ID!, $n: Int) { deployment(id: $id) { statusHistory(limit: $n) { reason } } }";
        assert!(check(lookup, json!({ "id": "x", "n": 3 })).await);
        let create =
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
        let resources = json!({ "cpuCores": 0.5, "memoryMb": 256, "storageGb": 1 });
        let input = json!({ "name": "web", "targetReplicas": 2, "resources": resources });
        assert!(check(create, json!({ "input": input })).await);
        let ids = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }";
        assert!(check(ids, json!({ "ids": ["a", "b"] })).await);
        let filter =
            "query($s: DeploymentStatus) { deployments(first: 1, status: $s) { totalCount } }";
        assert!(check(filter, json!({ "s": "RUNNING" })).await);
    }

    #[tokio::test]
    async fn anything_else_is_left_to_full_validation() {
        let lookup = "query($id: ID!, $n: Int) { deployment(id: $id) { statusHistory(limit: $n) { reason } } }";
        assert!(!check(lookup, json!({ "id": "x", "n": "three" })).await, "a string for an Int");
        assert!(!check(lookup, json!({ "id": true })).await, "a boolean for an ID");
        assert!(!check(lookup, json!({ "n": 3 })).await, "a required variable left out");
        assert!(!check(lookup, json!({ "id": "x", "n": null })).await, "a null");
        let create =
            "mutation($input: CreateDeploymentInput!) { createDeployment(input: $input) { id } }";
        let resources = json!({ "cpuCores": 0.5, "memoryMb": 256, "storageGb": 1 });
        let unknown =
            json!({ "name": "web", "targetReplicas": 2, "resources": resources, "color": "red" });
        assert!(!check(create, json!({ "input": unknown })).await, "an unknown input field");
        let missing = json!({ "name": "web", "resources": resources });
        assert!(!check(create, json!({ "input": missing })).await, "a required field missing");
        let nested =
            json!({ "name": "web", "targetReplicas": 2, "resources": { "cpuCores": "lots" } });
        assert!(
            !check(create, json!({ "input": nested })).await,
            "a nested field of the wrong type"
        );
        let ids = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }";
        assert!(!check(ids, json!({ "ids": "a" })).await, "one value for a list");
        let filter =
            "query($s: DeploymentStatus) { deployments(first: 1, status: $s) { totalCount } }";
        assert!(!check(filter, json!({ "s": "SLEEPING" })).await, "not a value of the enum");
    }
}
