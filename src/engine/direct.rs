//! The status lookup answered without async-graphql's executor.
//!
//! A frontend asks the same `deployment(id:)` document over and over. Once
//! such a document has passed every validation rule, it is compiled here
//! into what its answer needs: the fetch [`Plan`] and the selected fields in
//! selection order, fragments merged. Each later request for it runs the
//! planned statement and writes the response's JSON straight from the rows,
//! instead of resolving every field through async-graphql's resolver
//! futures, values and maps, which cost about as much CPU as the rest of
//! the lookup.
//!
//! Compiling is conservative: a directive, a fragment on an interface, a
//! field argument given by a variable, an argument the planner would refuse,
//! a field this module does not know, or anything but one `deployment`
//! field at the root leaves the document to async-graphql, which answers
//! it as before. Plain fields are not listed here: each comes with its
//! writer from its one declaration (see `fields`). A test compares the two
//! paths' answers byte for byte for every field the schema has
//! (`tests/api/direct.rs`).

use std::{borrow::Cow, collections::HashMap};

use async_graphql::{
    ID, OutputType, Pos, Variables,
    parser::types::{BaseType, ExecutableDocument, Field, OperationType, Selection, SelectionSet},
};
use async_graphql_value::{Name, Value as Input};
use entity::{deployment, deployment_replica, deployment_resources, deployment_status_history};

use crate::graphql::{
    deployment::{Deployment, DeploymentColumns},
    fields::{Fields, Write, enum_name, null, plain_string},
    types::{Health, Replica, ReplicaCounts, Resources, StatusChange},
};
use crate::{
    config::Limits,
    service::{
        health,
        plan::{Plan, Prefetched},
    },
};

/// Fragments nest at most this deep here; deeper documents go to async-graphql.
const MAX_FRAGMENT_DEPTH: usize = 16;

/// A compiled `deployment(id:)` or `node(id:)` document.
#[derive(Debug)]
pub(super) struct StatusRead {
    /// The root field's response key (its alias or `deployment`).
    key: String,
    /// Where the root field is, for an error's `locations`.
    position: Pos,
    id: IdArgument,
    plan: Plan,
    fields: Vec<(String, DeploymentField)>,
}

#[derive(Debug)]
enum IdArgument {
    Literal(String),
    Variable(Name),
}

#[derive(Debug)]
enum DeploymentField {
    Typename,
    /// One of the deployment's own columns (see `fields`).
    Column(Write<deployment::Model>),
    Health,
    ReplicaCounts(Selected<health::ReplicaCounts>),
    Replicas(Selected<deployment_replica::Model>),
    Resources(Selected<deployment_resources::Model>),
    StatusHistory(usize, Selected<deployment_status_history::Model>),
}

/// The fields selected of an object over rows `R`, by response key.
type Selected<R> = Vec<(String, Leaf<R>)>;

/// A selected field of an object with no relations.
#[derive(Debug)]
enum Leaf<R: 'static> {
    Typename(&'static str),
    Field(Write<R>),
}

impl StatusRead {
    /// The document's one query compiled, if it is a status read this
    /// module answers (see the module's docs). `document` must have passed
    /// validation: field merging and argument types are taken as checked.
    pub(super) fn compile(document: &ExecutableDocument) -> Option<Self> {
        let operation = &super::refusals::operation(document, None).ok()?.node;
        if operation.ty != OperationType::Query || !operation.directives.is_empty() {
            return None;
        }
        let [Selection::Field(root)] = &operation
            .selection_set
            .node
            .items
            .iter()
            .map(|item| &item.node)
            .collect::<Vec<_>>()[..]
        else {
            return None;
        };
        let field = &root.node;
        // `node(id:)` is a deployment's lookup too, its selection on the
        // `Node` interface or on `Deployment`.
        let deployment = type_name::<Deployment>();
        let types: &[&str] = match field.name.node.as_str() {
            "deployment" => &[&deployment],
            "node" => &[&deployment, "Node"],
            _ => return None,
        };
        if !field.directives.is_empty() {
            return None;
        }
        let [(name, value)] = &field.arguments[..] else { return None };
        let id = match (&*name.node, &value.node) {
            ("id", Input::String(id)) => IdArgument::Literal(id.clone()),
            ("id", Input::Variable(variable)) => {
                // `ID!` without a default: the request's value is the id.
                let definition = operation
                    .variable_definitions
                    .iter()
                    .find(|definition| definition.node.name.node == *variable)?;
                let ty = &definition.node.var_type.node;
                let is_id = matches!(&ty.base, BaseType::Named(name) if name == "ID");
                if ty.nullable || !is_id || definition.node.default_value.is_some() {
                    return None;
                }
                IdArgument::Variable(variable.clone())
            }
            _ => return None,
        };
        let groups = collect(document, types, &[field])?;
        let mut plan = Plan { counts: true, ..Plan::default() };
        let fields = groups
            .into_iter()
            .map(|(key, fields)| Some((key, deployment_field(document, &fields, &mut plan)?)))
            .collect::<Option<Vec<_>>>()?;
        let key = field.response_key().node.to_string();
        Some(Self { key, position: root.pos, id, plan, fields })
    }

    /// What to fetch.
    pub(super) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The root field's response key and position.
    pub(super) fn root(&self) -> (&str, Pos) {
        (&self.key, self.position)
    }

    /// The id the request asks for; `None` when its variable is anything
    /// but a string (async-graphql then says what is wrong with it).
    pub(super) fn id(&self, variables: &Variables) -> Option<ID> {
        match &self.id {
            IdArgument::Literal(id) => Some(ID(id.clone())),
            IdArgument::Variable(name) => match variables.get(name) {
                Some(async_graphql::Value::String(id)) => Some(ID(id.clone())),
                _ => None,
            },
        }
    }

    /// The whole response for the deployment `model`, fetched with
    /// `prefetched` by [`Self::plan`]: `{"data":{"<key>":{...}}}`.
    pub(super) fn write(
        &self,
        model: &deployment::Model,
        prefetched: &Prefetched,
    ) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(2048);
        out.extend_from_slice(b"{\"data\":{");
        plain_string(&mut out, &self.key)?;
        out.push(b':');
        self.deployment(&mut out, model, prefetched)?;
        out.extend_from_slice(b"}}");
        Ok(out)
    }

    fn deployment(
        &self,
        out: &mut Vec<u8>,
        model: &deployment::Model,
        prefetched: &Prefetched,
    ) -> std::io::Result<()> {
        let counts = prefetched.counts.unwrap_or_default();
        object(out, &self.fields, |out, field| match field {
            DeploymentField::Typename => plain_string(out, &type_name::<Deployment>()),
            DeploymentField::Column(write) => write(model, out),
            DeploymentField::Health => {
                enum_name(out, Health::from(counts.health(model.target_replicas)))
            }
            DeploymentField::ReplicaCounts(fields) => leaves(out, fields, &counts),
            DeploymentField::Replicas(fields) => {
                list(out, prefetched.replicas.as_deref().unwrap_or_default(), |out, replica| {
                    leaves(out, fields, replica)
                })
            }
            DeploymentField::Resources(fields) => {
                match prefetched.resources.as_ref().and_then(Option::as_ref) {
                    Some(found) => leaves(out, fields, found),
                    None => null(out),
                }
            }
            DeploymentField::StatusHistory(limit, fields) => {
                let history = prefetched.history.as_deref().unwrap_or_default();
                list(out, &history[..history.len().min(*limit)], |out, change| {
                    leaves(out, fields, change)
                })
            }
        })
    }
}

/// The GraphQL name of an output type, as async-graphql registers it.
fn type_name<T: OutputType>() -> Cow<'static, str> {
    T::type_name()
}

/// The fields `fields` select of an object of type `types[0]` (fragments
/// may also be on the interfaces that follow), grouped by response key in
/// the order of first appearance (GraphQL's CollectFields); `None` for what
/// this module leaves to async-graphql.
fn collect<'d>(
    document: &'d ExecutableDocument,
    types: &[&str],
    fields: &[&'d Field],
) -> Option<Vec<(String, Vec<&'d Field>)>> {
    let mut groups: Vec<(String, Vec<&'d Field>)> = Vec::new();
    let mut index: HashMap<&'d str, usize> = HashMap::new();
    for field in fields {
        if field.selection_set.node.items.is_empty() {
            return None;
        }
        collect_set(document, types, &field.selection_set.node, &mut groups, &mut index, 0)?;
    }
    Some(groups)
}

fn collect_set<'d>(
    document: &'d ExecutableDocument,
    types: &[&str],
    set: &'d SelectionSet,
    groups: &mut Vec<(String, Vec<&'d Field>)>,
    index: &mut HashMap<&'d str, usize>,
    depth: usize,
) -> Option<()> {
    if depth > MAX_FRAGMENT_DEPTH {
        return None;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                if !field.node.directives.is_empty() {
                    return None;
                }
                let key = field.node.response_key().node.as_str();
                match index.get(key) {
                    Some(&at) => groups[at].1.push(&field.node),
                    None => {
                        index.insert(key, groups.len());
                        groups.push((key.to_owned(), vec![&field.node]));
                    }
                }
            }
            Selection::FragmentSpread(spread) => {
                if !spread.node.directives.is_empty() {
                    return None;
                }
                let fragment = document.fragments.get(&spread.node.fragment_name.node)?;
                let on = fragment.node.type_condition.node.on.node.as_str();
                if !types.contains(&on) || !fragment.node.directives.is_empty() {
                    return None;
                }
                let set = &fragment.node.selection_set.node;
                collect_set(document, types, set, groups, index, depth + 1)?;
            }
            Selection::InlineFragment(inline) => {
                let inline = &inline.node;
                let on = inline.type_condition.as_ref().map(|c| c.node.on.node.as_str());
                if on.is_some_and(|on| !types.contains(&on)) || !inline.directives.is_empty() {
                    return None;
                }
                let set = &inline.selection_set.node;
                collect_set(document, types, set, groups, index, depth + 1)?;
            }
        }
    }
    Some(())
}

fn deployment_field(
    document: &ExecutableDocument,
    fields: &[&Field],
    plan: &mut Plan,
) -> Option<DeploymentField> {
    let first = fields.first()?;
    let name = first.name.node.as_str();
    let no_arguments = fields.iter().all(|field| field.arguments.is_empty());
    Some(match name {
        "replicaCounts" if no_arguments => {
            DeploymentField::ReplicaCounts(select::<ReplicaCounts>(document, fields)?)
        }
        "replicas" if no_arguments => {
            plan.replicas = true;
            DeploymentField::Replicas(select::<Replica>(document, fields)?)
        }
        "resources" if no_arguments => {
            plan.resources = true;
            DeploymentField::Resources(select::<Resources>(document, fields)?)
        }
        "statusHistory" => {
            let limit = history_limit(first)?;
            if fields.iter().any(|field| history_limit(field) != Some(limit)) {
                return None;
            }
            if !plan.history_limits.contains(&limit) {
                plan.history_limits.push(limit);
            }
            let fields = select::<StatusChange>(document, fields)?;
            DeploymentField::StatusHistory(usize::try_from(limit).ok()?, fields)
        }
        _ if !no_arguments || fields.iter().any(|f| !f.selection_set.node.items.is_empty()) => {
            return None;
        }
        "__typename" => DeploymentField::Typename,
        "health" => DeploymentField::Health,
        _ => DeploymentField::Column(DeploymentColumns::field(name)?),
    })
}

/// The literal `limit` of a `statusHistory` field (the default when not
/// given), if the planner fetches it; out-of-range ones are the resolver's
/// to refuse.
fn history_limit(field: &Field) -> Option<u64> {
    let limit = match &field.arguments[..] {
        [] => i64::from(Limits::DEFAULT_HISTORY),
        [(name, value)] if name.node == "limit" => match &value.node {
            Input::Number(limit) => limit.as_i64()?,
            _ => return None,
        },
        _ => return None,
    };
    let limit = u64::try_from(limit).ok()?;
    (1..=u64::from(Limits::MAX_HISTORY.unsigned_abs())).contains(&limit).then_some(limit)
}

/// The fields selected of an object of type `T`, all plain (see `fields`).
fn select<T: Fields + OutputType>(
    document: &ExecutableDocument,
    fields: &[&Field],
) -> Option<Selected<T::Row>> {
    let ty = type_name::<T>();
    let name: &'static str = match ty {
        Cow::Borrowed(name) => name,
        Cow::Owned(_) => return None,
    };
    collect(document, &[&ty], fields)?
        .into_iter()
        .map(|(key, fields)| {
            let plain = fields.iter().all(|field| {
                field.arguments.is_empty() && field.selection_set.node.items.is_empty()
            });
            let field = fields.first()?.name.node.as_str();
            let leaf = match field {
                "__typename" => Leaf::Typename(name),
                _ => Leaf::Field(T::field(field)?),
            };
            Some((key, leaf)).filter(|_| plain)
        })
        .collect()
}

/// An object of plain fields written from `row`.
fn leaves<R>(out: &mut Vec<u8>, fields: &[(String, Leaf<R>)], row: &R) -> std::io::Result<()> {
    object(out, fields, |out, field| match field {
        Leaf::Typename(name) => plain_string(out, name),
        Leaf::Field(write) => write(row, out),
    })
}

/// `{"key":value,...}`, each value written by `value`.
fn object<F>(
    out: &mut Vec<u8>,
    fields: &[(String, F)],
    mut value: impl FnMut(&mut Vec<u8>, &F) -> std::io::Result<()>,
) -> std::io::Result<()> {
    out.push(b'{');
    for (index, (key, field)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        // A response key is a GraphQL name: nothing to escape.
        plain_string(out, key)?;
        out.push(b':');
        value(out, field)?;
    }
    out.push(b'}');
    Ok(())
}

fn list<T>(
    out: &mut Vec<u8>,
    items: &[T],
    mut item: impl FnMut(&mut Vec<u8>, &T) -> std::io::Result<()>,
) -> std::io::Result<()> {
    out.push(b'[');
    for (index, value) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        item(out, value)?;
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use async_graphql::{
        parser::parse_query,
        registry::{MetaType, Registry},
    };

    use super::*;

    fn compiled(query: &str) -> Option<StatusRead> {
        StatusRead::compile(&parse_query(query).ok()?)
    }

    /// Every field of `ty` in the schema, object fields with all of theirs.
    fn every_field(registry: &Registry, ty: &str) -> String {
        let Some(MetaType::Object { fields, .. }) = registry.types.get(ty) else {
            return String::new();
        };
        let mut selection = vec!["__typename".to_owned()];
        for field in fields.values().filter(|field| !field.name.starts_with("__")) {
            let inner = field.ty.trim_matches(|c| matches!(c, '[' | ']' | '!'));
            selection.push(match registry.types.get(inner) {
                Some(MetaType::Object { .. }) => {
                    format!("{} {{ {} }}", field.name, every_field(registry, inner))
                }
                _ => field.name.clone(),
            });
        }
        selection.join(" ")
    }

    #[tokio::test]
    async fn every_field_of_a_deployment_is_answered_directly() {
        let Some(registry) = super::super::registry().await else {
            panic!("the schema's registry");
        };
        let selection = every_field(registry, "Deployment");
        assert!(selection.contains("statusHistory {"), "{selection}");
        let query = format!("query($id: ID!) {{ deployment(id: $id) {{ {selection} }} }}");
        let read = compiled(&query);
        assert!(read.is_some(), "not compiled: {query}");
        let plan = read.map(|read| read.plan).unwrap_or_default();
        let expected = Plan {
            counts: true,
            replicas: true,
            resources: true,
            history_limits: vec![Limits::DEFAULT_HISTORY.unsigned_abs().into()],
        };
        assert_eq!(plan, expected);
    }

    #[test]
    fn fragments_aliases_and_literal_ids_are_compiled_with_their_plan() {
        let read = compiled(
            "query Status { d: deployment(id: \"x\") { ...F ... on Deployment { name } \
             ... { recent: statusHistory(limit: 3) { newStatus } } \
             statusHistory { changedAt } } } \
             fragment F on Deployment { id name replicaCounts { running } }",
        );
        let Some(read) = read else { panic!("not compiled") };
        assert_eq!(read.root().0, "d");
        assert!(matches!(&read.id, IdArgument::Literal(id) if id == "x"));
        let keys: Vec<&str> = read.fields.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["id", "name", "replicaCounts", "recent", "statusHistory"]);
        assert_eq!(read.plan.history_limits, [3, 10]);
        assert!(read.plan.counts && !read.plan.replicas && !read.plan.resources);
    }

    #[test]
    fn anything_unusual_is_left_to_async_graphql() {
        let unusual = [
            "query($id: ID!, $on: Boolean!) { deployment(id: $id) { id @include(if: $on) } }",
            "query($id: ID!) { deployment(id: $id) @skip(if: false) { id } }",
            "query($id: ID!) { deployment(id: $id) { ... on Node { id } } }",
            "query($id: ID!) { deployment(id: $id) { ...N } } fragment N on Node { id }",
            "query($id: ID!) { deployment(id: $id) { replicas(status: RUNNING) { id } } }",
            "query($id: ID!, $n: Int!) { deployment(id: $id) { statusHistory(limit: $n) { reason } } }",
            "query($id: ID!) { deployment(id: $id) { statusHistory(limit: 0) { reason } } }",
            "query($id: ID!) { deployment(id: $id) { statusHistory(limit: 101) { reason } } }",
            "query($id: ID) { deployment(id: $id) { id } }",
            "query($id: ID! = \"x\") { deployment(id: $id) { id } }",
            "query($id: ID!) { deployment(id: $id) { id } __typename }",
            "query($id: ID!) { a: deployment(id: $id) { id } b: deployment(id: $id) { id } }",
            "query($id: ID!) { ... { deployment(id: $id) { id } } }",
            "mutation($id: ID!) { deleteDeployment(id: $id) { id } }",
            "query A($id: ID!) { deployment(id: $id) { id } } query B { deployments { totalCount } }",
            "{ deployments(first: 1) { nodes { id } } }",
            "query($id: ID!) { deployment(id: $id) { id unknown } }",
        ];
        for query in unusual {
            assert!(compiled(query).is_none(), "compiled: {query}");
        }
    }
}
