//! Measures a document before async-graphql expands it, in time linear in
//! its text: each fragment is measured once and its figures multiplied by
//! its spreads (saturating), so a 1 KB fragment bomb that would expand to
//! billions of fields is refused without ever being expanded.
//!
//! What is measured, for the worst operation of the document:
//! - depth, with introspection measured apart: graphql-js' standard
//!   introspection query (what GraphiQL, codegen and every schema tool send)
//!   nests `ofType` 15 levels deep, far past what any query of deployments
//!   needs;
//! - field selections after fragment expansion;
//! - aliases, root fields, and `__schema`/`__type` selections;
//! - the SQL statements the operation will run: with the planner, one per
//!   root lookup or page, one per `totalCount`, and for mutations their
//!   writes plus one loader statement per relation in the payload.

use std::collections::HashMap;

use async_graphql::{
    Name, Positioned,
    parser::types::{
        ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
    },
};

/// The fields whose subtree is introspection.
pub(super) const INTROSPECTION_ROOTS: [&str; 2] = ["__schema", "__type"];

/// Fields of `Deployment` that a mutation payload resolves through a loader
/// (one batched statement each); queries plan them into their one statement.
const RELATIONS: [&str; 5] = ["replicas", "resources", "statusHistory", "replicaCounts", "health"];

/// Statements a mutation runs at most besides its payload's relations
/// (read and lock the row, write it, its resources, replicas and history);
/// `tests/api/statements.rs` checks every mutation stays within it.
pub(crate) const MUTATION_STATEMENTS: u64 = 6;

/// Statements a webhook mutation runs at most (read the endpoint, then a
/// transaction writing it and failing or deleting its deliveries; a
/// user's first endpoint also records their deployments, 3 statements per
/// 500); `tests/api/statements.rs` checks each stays within it.
pub(crate) const WEBHOOK_MUTATION_STATEMENTS: u64 = 10;

/// Fragments spreading fragments this many levels down are refused outright:
/// no real document comes close, and it bounds the recursion here.
pub(crate) const MAX_FRAGMENT_NESTING: usize = 64;

/// The figures of one selection set (or the worst operation of a document).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Measure {
    /// Deepest path through ordinary fields only.
    pub depth: usize,
    /// Deepest path through any field, introspection included.
    pub depth_any: usize,
    /// Field selections after fragment expansion.
    pub fields: u64,
    /// `__schema` and `__type` selections after expansion.
    pub introspection: u64,
    /// Fields of this set's top level (through fragments), after expansion.
    pub top_fields: u64,
    /// SQL statements, once the set's operation type is applied.
    pub statements: u64,
    /// Statements of this set's top-level fields, were they root fields.
    root_statements: u64,
    /// `totalCount` selections after expansion.
    total_counts: u64,
    /// Relation fields (see [`RELATIONS`]) after expansion.
    relations: u64,
}

impl Measure {
    fn max(self, other: Self) -> Self {
        Self {
            depth: self.depth.max(other.depth),
            depth_any: self.depth_any.max(other.depth_any),
            fields: self.fields.max(other.fields),
            introspection: self.introspection.max(other.introspection),
            top_fields: self.top_fields.max(other.top_fields),
            statements: self.statements.max(other.statements),
            root_statements: self.root_statements.max(other.root_statements),
            total_counts: self.total_counts.max(other.total_counts),
            relations: self.relations.max(other.relations),
        }
    }

    /// Both sets' selections together (siblings in one selection set).
    fn plus(self, other: Self) -> Self {
        Self {
            depth: self.depth.max(other.depth),
            depth_any: self.depth_any.max(other.depth_any),
            fields: self.fields.saturating_add(other.fields),
            introspection: self.introspection.saturating_add(other.introspection),
            top_fields: self.top_fields.saturating_add(other.top_fields),
            statements: 0,
            root_statements: self.root_statements.saturating_add(other.root_statements),
            total_counts: self.total_counts.saturating_add(other.total_counts),
            relations: self.relations.saturating_add(other.relations),
        }
    }
}

/// Measures every operation of `document` and returns the worst figures,
/// with the whole document's alias count; `None` when fragments nest deeper
/// than [`MAX_FRAGMENT_NESTING`].
pub(crate) fn measure(document: &ExecutableDocument) -> Option<(Measure, usize)> {
    let mut measuring = Measuring { fragments: &document.fragments, known: HashMap::new() };
    let mut worst = Measure::default();
    for (_, operation) in document.operations.iter() {
        let mut measured = measuring.set(&operation.node.selection_set.node, 0)?;
        measured.statements = match operation.node.ty {
            OperationType::Mutation => measured.root_statements.saturating_add(measured.relations),
            _ => measured.root_statements,
        }
        .saturating_add(measured.total_counts);
        worst = worst.max(measured);
    }
    Some((worst, aliases(document)))
}

/// Aliases written in the document (each counted once, where written).
fn aliases(document: &ExecutableDocument) -> usize {
    fn count(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => {
                    usize::from(field.node.alias.is_some()) + count(&field.node.selection_set.node)
                }
                Selection::InlineFragment(fragment) => count(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let operations = document.operations.iter().map(|(_, op)| count(&op.node.selection_set.node));
    let fragments = document.fragments.values().map(|f| count(&f.node.selection_set.node));
    operations.chain(fragments).sum()
}

/// Statements a root field runs by itself.
fn root_statements(field: &str) -> u64 {
    match field {
        "__typename" | "__schema" | "__type" => 0,
        "createDeployment" | "scaleDeployment" | "deleteDeployment" => MUTATION_STATEMENTS,
        "createWebhookEndpoint"
        | "updateWebhookEndpoint"
        | "deleteWebhookEndpoint"
        | "rotateWebhookSecret"
        | "sendTestWebhook"
        | "redeliverWebhook" => WEBHOOK_MUTATION_STATEMENTS,
        // The endpoint, then the page.
        "webhookDeliveries" => 2,
        // deployment, node, nodes, deployments, deploymentUpdated,
        // webhookEndpoints: one each.
        _ => 1,
    }
}

struct Measuring<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Each fragment's figures once measured; `None` while it is being
    /// measured (a cycle, which validation reports: it counts as nothing).
    known: HashMap<&'a str, Option<Measure>>,
}

impl<'a> Measuring<'a> {
    fn set(&mut self, set: &'a SelectionSet, nesting: usize) -> Option<Measure> {
        let mut measured = Measure::default();
        for selection in &set.items {
            let inner = match &selection.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let below = self.set(&field.node.selection_set.node, nesting)?;
                    let introspection = INTROSPECTION_ROOTS.contains(&name);
                    Measure {
                        depth: if introspection { 0 } else { below.depth + 1 },
                        depth_any: below.depth_any + 1,
                        fields: below.fields.saturating_add(1),
                        introspection: below.introspection + u64::from(introspection),
                        top_fields: 1,
                        statements: 0,
                        root_statements: root_statements(name),
                        total_counts: below.total_counts + u64::from(name == "totalCount"),
                        relations: below.relations + u64::from(RELATIONS.contains(&name)),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.set(&fragment.node.selection_set.node, nesting)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), nesting + 1)?
                }
            };
            measured = measured.plus(inner);
        }
        Some(measured)
    }

    fn fragment(&mut self, name: &'a str, nesting: usize) -> Option<Measure> {
        if nesting > MAX_FRAGMENT_NESTING {
            return None;
        }
        if let Some(known) = self.known.get(name) {
            return Some(known.unwrap_or_default());
        }
        // Unknown fragments are validation's to report.
        let Some(fragment) = self.fragments.get(name) else {
            return Some(Measure::default());
        };
        self.known.insert(name, None);
        let measured = self.set(&fragment.node.selection_set.node, nesting)?;
        self.known.insert(name, Some(measured));
        Some(measured)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn measure_of(query: &str) -> Option<Measure> {
        measure(&parse_query(query).ok()?).map(|(measured, _)| measured)
    }

    #[test]
    fn ordinary_fields_count_each_level() {
        let measured = measure_of("{ a { b { c } } d }");
        assert_eq!(measured.map(|m| (m.depth, m.depth_any, m.fields)), Some((3, 3, 4)));
    }

    #[test]
    fn introspection_counts_apart_through_fragments() {
        let query = "{ a __schema { types { ...T } } } \
                     fragment T on __Type { ofType { ofType { name } } }";
        let measured = measure_of(query);
        assert_eq!(measured.map(|m| (m.depth, m.depth_any, m.introspection)), Some((1, 5, 1)));
    }

    #[test]
    fn fragments_add_their_depth_where_spread() {
        let query = "{ a { ...F } b { c { ...F } } } fragment F on X { d { e } }";
        assert_eq!(measure_of(query).map(|m| (m.depth, m.fields)), Some((4, 7)));
    }

    #[test]
    fn a_fragment_bomb_is_measured_without_being_expanded() {
        let levels = 60;
        let chain: String = (0..levels)
            .map(|n| format!("fragment F{n} on Query {{ ...F{next} ...F{next} }} ", next = n + 1))
            .collect();
        let query = format!("{{ ...F0 }} {chain} fragment F{levels} on Query {{ __typename }}");
        let started = std::time::Instant::now();
        let measured = measure_of(&query);
        assert_eq!(measured.map(|m| m.fields), Some(1 << 60));
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn statements_follow_root_fields_total_counts_and_mutation_payloads() {
        let query = "{ a: deployment(id: 1) { id } b: deployment(id: 2) { replicas { id } } \
                     deployments { totalCount nodes { id } } __typename }";
        assert_eq!(measure_of(query).map(|m| m.statements), Some(4));
        let mutation =
            "mutation { createDeployment(input: {}) { id health statusHistory { reason } } }";
        assert_eq!(measure_of(mutation).map(|m| m.statements), Some(MUTATION_STATEMENTS + 2));
        let via_fragment = "query { ...R ...R } fragment R on Query { deployments { totalCount } }";
        assert_eq!(measure_of(via_fragment).map(|m| m.statements), Some(4));
    }

    #[test]
    fn aliases_are_counted_where_written() -> Result<(), String> {
        let document = parse_query("{ a: x b: y { c: z } ...F } fragment F on Q { d: w }")
            .map_err(|e| e.to_string())?;
        assert_eq!(measure(&document).map(|(_, aliases)| aliases), Some(4));
        Ok(())
    }

    #[test]
    fn a_fragment_cycle_terminates() {
        let query = "{ ...A } fragment A on Query { a { ...B } } fragment B on X { b { ...A } }";
        assert!(measure_of(query).is_some());
    }

    #[test]
    fn fragments_nested_too_deep_are_refused() {
        let chain: String = (0..=MAX_FRAGMENT_NESTING)
            .map(|n| format!("fragment F{n} on Query {{ ...F{} }} ", n + 1))
            .collect();
        let last = MAX_FRAGMENT_NESTING + 1;
        let query = format!("{{ ...F0 }} {chain} fragment F{last} on Query {{ a }}");
        assert_eq!(measure_of(&query), None);
        let shallow = "{ ...F0 } fragment F0 on Query { ...F1 } fragment F1 on Query { a }";
        assert_eq!(measure_of(shallow).map(|m| m.depth), Some(1));
    }
}
