//! How deep a document nests its selections, with introspection measured
//! apart: graphql-js' standard introspection query (what GraphiQL, codegen
//! and every schema tool send) nests `ofType` about 15 levels deep, far past
//! what any query of deployments needs, so each gets a bound of its own.
//! Fragments are measured once each, so the cost is linear in the text.

use std::collections::HashMap;

use async_graphql::{
    Name, Positioned,
    parser::types::{ExecutableDocument, FragmentDefinition, Selection, SelectionSet},
};

/// The fields whose subtree is introspection.
const INTROSPECTION_ROOTS: [&str; 2] = ["__schema", "__type"];

/// Fragments spreading fragments this many levels down are refused outright:
/// no real document comes close, and it bounds the recursion here.
pub(crate) const MAX_FRAGMENT_NESTING: usize = 64;

/// The deepest field path of a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Depth {
    /// Through ordinary fields only.
    pub ordinary: usize,
    /// Through any field, introspection included.
    pub any: usize,
}

impl Depth {
    fn max(self, other: Self) -> Self {
        Self { ordinary: self.ordinary.max(other.ordinary), any: self.any.max(other.any) }
    }
}

/// Measures every operation of `document`; `None` when fragments nest
/// deeper than [`MAX_FRAGMENT_NESTING`].
pub(crate) fn measure(document: &ExecutableDocument) -> Option<Depth> {
    let mut measuring = Measuring { fragments: &document.fragments, known: HashMap::new() };
    let mut depth = Depth::default();
    for (_, operation) in document.operations.iter() {
        depth = depth.max(measuring.set(&operation.node.selection_set.node, 0)?);
    }
    Some(depth)
}

struct Measuring<'a> {
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    /// Each fragment's depth once measured; `None` while it is being measured
    /// (a cycle, which validation reports: it counts as nothing here).
    known: HashMap<&'a str, Option<Depth>>,
}

impl<'a> Measuring<'a> {
    fn set(&mut self, set: &'a SelectionSet, nesting: usize) -> Option<Depth> {
        let mut depth = Depth::default();
        for selection in &set.items {
            let inner = match &selection.node {
                Selection::Field(field) => {
                    let below = self.set(&field.node.selection_set.node, nesting)?;
                    let introspection =
                        INTROSPECTION_ROOTS.contains(&field.node.name.node.as_str());
                    Depth {
                        ordinary: if introspection { 0 } else { below.ordinary + 1 },
                        any: below.any + 1,
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.set(&fragment.node.selection_set.node, nesting)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), nesting + 1)?
                }
            };
            depth = depth.max(inner);
        }
        Some(depth)
    }

    fn fragment(&mut self, name: &'a str, nesting: usize) -> Option<Depth> {
        if nesting > MAX_FRAGMENT_NESTING {
            return None;
        }
        if let Some(known) = self.known.get(name) {
            return Some(known.unwrap_or_default());
        }
        // Unknown fragments are validation's to report.
        let Some(fragment) = self.fragments.get(name) else {
            return Some(Depth::default());
        };
        self.known.insert(name, None);
        let depth = self.set(&fragment.node.selection_set.node, nesting)?;
        self.known.insert(name, Some(depth));
        Some(depth)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn depth(query: &str) -> Option<Depth> {
        measure(&parse_query(query).ok()?)
    }

    #[test]
    fn ordinary_fields_count_each_level() {
        assert_eq!(depth("{ a { b { c } } d }"), Some(Depth { ordinary: 3, any: 3 }));
    }

    #[test]
    fn introspection_counts_apart_through_fragments() {
        let query = "{ a __schema { types { ...T } } } \
                     fragment T on __Type { ofType { ofType { name } } }";
        assert_eq!(depth(query), Some(Depth { ordinary: 1, any: 5 }));
    }

    #[test]
    fn fragments_add_their_depth_where_spread() {
        let query = "{ a { ...F } b { c { ...F } } } fragment F on X { d { e } }";
        assert_eq!(depth(query), Some(Depth { ordinary: 4, any: 4 }));
    }

    #[test]
    fn a_fragment_cycle_terminates() {
        let query = "{ ...A } fragment A on Query { a { ...B } } fragment B on X { b { ...A } }";
        assert!(depth(query).is_some());
    }

    #[test]
    fn fragments_nested_too_deep_are_refused() {
        let chain: String = (0..=MAX_FRAGMENT_NESTING)
            .map(|n| format!("fragment F{n} on Query {{ ...F{} }} ", n + 1))
            .collect();
        let query =
            format!("{{ ...F0 }} {chain} fragment F{} on Query {{ a }}", MAX_FRAGMENT_NESTING + 1);
        assert_eq!(depth(&query), None);
        let shallow = "{ ...F0 } fragment F0 on Query { ...F1 } fragment F1 on Query { a }";
        assert_eq!(depth(shallow), Some(Depth { ordinary: 1, any: 1 }));
    }
}
