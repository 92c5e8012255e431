//! Completes a response the way the GraphQL spec's execution does, which
//! async-graphql leaves undone:
//! - every object lists its keys in selection order (async-graphql resolves
//!   sibling fields concurrently and records each as it finishes);
//! - a field that failed is null, and a null in a non-null position makes
//!   its parent null in turn, up to the nearest nullable field (async-graphql
//!   drops a failed field from its object and stops there, so a mutation
//!   payload could come back with a required field simply missing);
//! - `__schema { description }` is null: async-graphql answers it with the
//!   description of the `__Schema` type itself, which graphql-js' tools
//!   then print as this schema's description.

use std::collections::HashMap;

use async_graphql::{
    Name, PathSegment, Positioned, ServerError, Value,
    indexmap::IndexMap,
    parser::types::{FragmentDefinition, Selection, SelectionSet},
    registry::{MetaTypeName, Registry},
};

type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

/// A null reached a non-null position: the parent must become null.
struct Propagate;

/// What one response key resolves to: the field, the type it was looked up
/// on, and the selection sets merged under the key.
struct Selected<'a> {
    name: &'a str,
    parent: &'a str,
    sets: Vec<&'a SelectionSet>,
}

pub(crate) struct Completion<'a> {
    pub registry: &'a Registry,
    pub fragments: &'a Fragments,
    pub errors: &'a [ServerError],
}

impl<'a> Completion<'a> {
    /// Completes `data`, the result of `set` on the root type `root`.
    pub(crate) fn complete(&self, data: &mut Value, root: &'a str, set: &'a SelectionSet) {
        if let Value::Object(map) = data
            && self.object(map, root, &[set], &mut Vec::new()).is_err()
        {
            *data = Value::Null;
        }
    }

    fn object(
        &self,
        map: &mut IndexMap<Name, Value>,
        parent: &'a str,
        sets: &[&'a SelectionSet],
        path: &mut Vec<PathSegment>,
    ) -> Result<(), Propagate> {
        let mut fields: IndexMap<&'a Name, Selected<'a>> = IndexMap::new();
        for set in sets {
            self.collect(set, parent, &mut fields, 0);
        }
        let mut completed = IndexMap::with_capacity(map.len());
        for (key, selected) in fields {
            path.push(PathSegment::Field(key.to_string()));
            let ty = self.field_type(selected.parent, selected.name);
            let value = match map.shift_remove_entry(key) {
                Some((key, value)) => Some((key, value)),
                // Absent: skipped by `@skip`/`@include`, or failed.
                None => self.failed(path).then(|| (key.clone(), Value::Null)),
            };
            if let Some((key, mut value)) = value {
                if (selected.parent, selected.name) == ("__Schema", "description") {
                    completed.insert(key, Value::Null);
                    path.pop();
                    continue;
                }
                if self.value(&mut value, ty, &selected.sets, path).is_err() {
                    path.pop();
                    return Err(Propagate);
                }
                completed.insert(key, value);
            }
            path.pop();
        }
        // Nothing should be left; whatever is stays, after the rest.
        completed.extend(map.drain(..));
        *map = completed;
        Ok(())
    }

    fn value(
        &self,
        value: &mut Value,
        ty: Option<MetaTypeName<'a>>,
        sets: &[&'a SelectionSet],
        path: &mut Vec<PathSegment>,
    ) -> Result<(), Propagate> {
        let Some(ty) = ty else { return Ok(()) };
        let (nullable, inner) = match ty {
            MetaTypeName::NonNull(inner) => (false, MetaTypeName::create(inner)),
            other => (true, other),
        };
        if matches!(value, Value::Null) {
            return if nullable { Ok(()) } else { Err(Propagate) };
        }
        let completed = match (inner, &mut *value) {
            (MetaTypeName::List(item), Value::List(items)) => {
                let item = MetaTypeName::create(item);
                items.iter_mut().enumerate().try_for_each(|(index, element)| {
                    path.push(PathSegment::Index(index));
                    let completed = self.value(element, Some(item), sets, path);
                    path.pop();
                    completed
                })
            }
            (MetaTypeName::Named(name), Value::Object(map)) => self.object(map, name, sets, path),
            _ => Ok(()),
        };
        match completed {
            Err(Propagate) if nullable => {
                *value = Value::Null;
                Ok(())
            }
            other => other,
        }
    }

    /// Whether an error was reported at exactly `path`.
    fn failed(&self, path: &[PathSegment]) -> bool {
        self.errors.iter().any(|error| error.path == path)
    }

    fn field_type(&self, parent: &str, field: &str) -> Option<MetaTypeName<'a>> {
        if field == "__typename" {
            return Some(MetaTypeName::NonNull("String"));
        }
        let ty = self.registry.types.get(parent)?.field_by_name(field)?;
        Some(MetaTypeName::create(&ty.ty))
    }

    /// The response keys of `set` in order, fragments expanded in place.
    fn collect(
        &self,
        set: &'a SelectionSet,
        parent: &'a str,
        fields: &mut IndexMap<&'a Name, Selected<'a>>,
        nesting: usize,
    ) {
        // Executed documents are validated: no cycles, bounded nesting.
        if nesting > super::bounds::MAX_FRAGMENT_NESTING {
            return;
        }
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let key = &field.node.response_key().node;
                    let selected = fields.entry(key).or_insert_with(|| Selected {
                        name: field.node.name.node.as_str(),
                        parent,
                        sets: Vec::new(),
                    });
                    selected.sets.push(&field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment.node.type_condition.as_ref().map(|c| c.node.on.node.as_str());
                    let set = &fragment.node.selection_set.node;
                    self.collect(set, on.unwrap_or(parent), fields, nesting + 1);
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.fragments.get(&spread.node.fragment_name.node) {
                        let on = fragment.node.type_condition.node.on.node.as_str();
                        self.collect(&fragment.node.selection_set.node, on, fields, nesting + 1);
                    }
                }
            }
        }
    }
}
