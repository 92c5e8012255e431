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

use std::{cell::RefCell, collections::HashMap, rc::Rc};

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
    registry: &'a Registry,
    fragments: &'a Fragments,
    errors: &'a [ServerError],
    /// Each selection set's response keys on each type, collected once: a
    /// list of 100 deployments shares one shape.
    shapes: RefCell<HashMap<(usize, usize), Shape<'a>>>,
}

/// The response keys of a selection in order, each with what it selects.
type Shape<'a> = Rc<IndexMap<&'a Name, Selected<'a>>>;

impl<'a> Completion<'a> {
    pub(crate) fn new(
        registry: &'a Registry,
        fragments: &'a Fragments,
        errors: &'a [ServerError],
    ) -> Self {
        Self { registry, fragments, errors, shapes: RefCell::default() }
    }

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
        let shape = self.shape(parent, sets);
        // The common case: no errors and the keys already in order (fields
        // that resolve at once finish in selection order), so nothing moves.
        let in_order = self.errors.is_empty()
            && map.len() == shape.len()
            && map.keys().zip(shape.keys()).all(|(have, want)| have == *want);
        if in_order {
            for ((_, value), selected) in map.iter_mut().zip(shape.values()) {
                self.field(value, selected, path)?;
            }
            return Ok(());
        }
        let mut completed = IndexMap::with_capacity(map.len());
        for (key, selected) in shape.iter() {
            let tracked = !self.errors.is_empty();
            if tracked {
                path.push(PathSegment::Field(key.to_string()));
            }
            let value = match map.shift_remove_entry(*key) {
                Some(entry) => Some(entry),
                // Absent: skipped by `@skip`/`@include`, or failed.
                None => (tracked && self.failed(path)).then(|| ((*key).clone(), Value::Null)),
            };
            let completion = match value {
                Some((key, mut value)) => self.field(&mut value, selected, path).map(|()| {
                    completed.insert(key, value);
                }),
                None => Ok(()),
            };
            if tracked {
                path.pop();
            }
            completion?;
        }
        // Nothing should be left; whatever is stays, after the rest.
        completed.extend(map.drain(..));
        *map = completed;
        Ok(())
    }

    /// Completes one field's value; `Err` when it must null its parent.
    fn field(
        &self,
        value: &mut Value,
        selected: &Selected<'a>,
        path: &mut Vec<PathSegment>,
    ) -> Result<(), Propagate> {
        if (selected.parent, selected.name) == ("__Schema", "description") {
            *value = Value::Null;
            return Ok(());
        }
        let ty = self.field_type(selected.parent, selected.name);
        self.value(value, ty, &selected.sets, path)
    }

    fn shape(&self, parent: &'a str, sets: &[&'a SelectionSet]) -> Shape<'a> {
        let key = match sets {
            [set] => Some((std::ptr::from_ref(*set) as usize, parent.as_ptr() as usize)),
            _ => None,
        };
        if let Some(shape) = key.and_then(|key| self.shapes.borrow().get(&key).cloned()) {
            return shape;
        }
        let mut fields = IndexMap::new();
        for set in sets {
            self.collect(set, parent, &mut fields, 0);
        }
        let shape = Rc::new(fields);
        if let Some(key) = key {
            self.shapes.borrow_mut().insert(key, shape.clone());
        }
        shape
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
                let tracked = !self.errors.is_empty();
                items.iter_mut().enumerate().try_for_each(|(index, element)| {
                    if tracked {
                        path.push(PathSegment::Index(index));
                    }
                    let completed = self.value(element, Some(item), sets, path);
                    if tracked {
                        path.pop();
                    }
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
