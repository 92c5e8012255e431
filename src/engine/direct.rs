//! The two screens a frontend polls, answered without async-graphql's
//! executor: a deployment's status page (`deployment(id:)`, `node(id:)`)
//! and the list (`deployments(...)` with `nodes`, `edges`, `pageInfo` and
//! `totalCount`).
//!
//! A frontend asks the same few documents over and over. Once such a
//! document has passed every validation rule, it is compiled here into what
//! its answer needs: the fetch [`Plan`] and the selected fields in selection
//! order, fragments merged. Each later request for it runs the planned
//! statements and writes the response's JSON straight from the rows,
//! instead of resolving every field through async-graphql's resolver
//! futures, values and maps, which cost about as much CPU as the rest of
//! the lookup.
//!
//! Compiling is conservative: a directive, a fragment on an interface
//! (but `Node` under `node`), a field argument given by a variable (but the
//! root field's), an argument the planner would refuse, a field this module
//! does not know, or anything but one root field leaves the document to
//! async-graphql, which answers it as before; so does a request whose
//! variables do not plainly fit, or whose arguments the resolver would
//! refuse. Plain fields are not listed here: each comes with its writer from
//! its one declaration (see `fields`). A test compares the two paths'
//! answers byte for byte for every field the schema has
//! (`tests/api/direct.rs`).

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
};

use async_graphql::{
    ID, InputType, OutputType, Pos, Variables,
    parser::types::{
        BaseType, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
        SelectionSet, VariableDefinition,
    },
};
use async_graphql_value::{ConstValue, Name, Value as Input};
use entity::{deployment, deployment_replica, deployment_resources, deployment_status_history};

use crate::graphql::{
    connection::{DeploymentConnection, DeploymentEdge, ListArguments, PageInfo, PageState},
    deployment::{Deployment, DeploymentColumns},
    fields::{Fields, Write, enum_name, integer, null, plain_string},
    types::{Health, Replica, ReplicaCounts, Resources, StatusChange},
};
use crate::{
    config::Limits,
    service::{
        deployments::Page,
        health, pagination,
        plan::{Plan, Prefetched},
    },
};

/// Fragments nest at most this deep here; deeper documents go to async-graphql.
const MAX_FRAGMENT_DEPTH: usize = 16;

/// A document compiled for answering directly.
#[derive(Debug)]
pub(super) enum Compiled {
    Status(StatusRead),
    List(Box<ListRead>),
}

impl Compiled {
    /// The document's one query compiled, if it is a read this module
    /// answers (see the module's docs). `document` must have passed
    /// validation for an answer to be written from it: field merging and
    /// argument types are taken as checked.
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
        if !root.node.directives.is_empty() {
            return None;
        }
        let field = &root.node;
        let root = Root { key: field.response_key().node.to_string(), position: root.pos };
        match field.name.node.as_str() {
            "deployment" | "node" => {
                StatusRead::compile(document, operation, field, root).map(Self::Status)
            }
            "deployments" => ListRead::compile(document, operation, field, root)
                .map(|list| Self::List(Box::new(list))),
            _ => None,
        }
    }

    /// The page size a request of the list gives with `variables` (its
    /// cost grows with it); `None` for a status read.
    pub(super) fn page_size(&self, variables: &Variables) -> Option<u64> {
        match self {
            Self::Status(_) => None,
            Self::List(list) => list.page_size(variables),
        }
    }

    /// Records that a request with page size `size` passed validation.
    pub(super) fn validated(&self, size: Option<u64>) {
        if let (Self::List(list), Some(size)) = (self, size) {
            list.validated_page.fetch_max(size, Ordering::Relaxed);
        }
    }
}

/// The definition of the operation's variable `name`.
fn definition<'o>(
    operation: &'o OperationDefinition,
    name: &Name,
) -> Option<&'o VariableDefinition> {
    operation
        .variable_definitions
        .iter()
        .map(|definition| &definition.node)
        .find(|definition| definition.name.node == *name)
}

/// The root field's response key (its alias or name) and position, for the
/// answer and an error's `path` and `locations`.
#[derive(Debug)]
pub(super) struct Root {
    pub(super) key: String,
    pub(super) position: Pos,
}

/// A compiled `deployment(id:)` or `node(id:)` document.
#[derive(Debug)]
pub(super) struct StatusRead {
    root: Root,
    id: Argument,
    plan: Plan,
    deployment: DeploymentSelection,
}

/// A root field's argument as the document gives it.
#[derive(Debug)]
enum Argument {
    Absent,
    Literal(ConstValue),
    /// A variable, and the default its definition gives.
    Variable(Name, Option<ConstValue>),
}

impl Argument {
    /// `field`'s argument `name`; `None` when it is given by a variable the
    /// operation does not define.
    fn of(operation: &OperationDefinition, field: &Field, name: &str) -> Option<Self> {
        let Some(value) = field.get_argument(name) else { return Some(Self::Absent) };
        Some(match &value.node {
            Input::Variable(variable) => {
                let default = definition(operation, variable)?.default_value.as_ref();
                Self::Variable(variable.clone(), default.map(|value| value.node.clone()))
            }
            value => Self::Literal(value.clone().into_const()?),
        })
    }

    /// The value the request gives (`None`: not given).
    fn value<'a>(&'a self, variables: &'a Variables) -> Option<&'a ConstValue> {
        match self {
            Self::Absent => None,
            Self::Literal(value) => Some(value),
            Self::Variable(name, default) => variables.get(name).or(default.as_ref()),
        }
    }

    /// The value coerced to the argument's type `T`, as the resolver
    /// would; `None` when it does not fit (async-graphql then says why).
    fn parse<T: InputType>(&self, variables: &Variables) -> Option<T> {
        T::parse(self.value(variables).cloned()).ok()
    }
}

impl StatusRead {
    fn compile(
        document: &ExecutableDocument,
        operation: &OperationDefinition,
        field: &Field,
        root: Root,
    ) -> Option<Self> {
        // `node(id:)` is a deployment's lookup too, its selection on the
        // `Node` interface or on `Deployment`.
        let deployment = type_name::<Deployment>();
        let types: &[&str] = match field.name.node.as_str() {
            "deployment" => &[&deployment],
            _ => &[&deployment, "Node"],
        };
        if field.arguments.len() != 1 {
            return None;
        }
        let id = match Argument::of(operation, field, "id")? {
            // `ID!` without a default: the request's value is the id.
            Argument::Variable(name, None) => {
                let ty = &definition(operation, &name)?.var_type.node;
                let is_id = matches!(&ty.base, BaseType::Named(name) if name == "ID");
                if ty.nullable || !is_id {
                    return None;
                }
                Argument::Variable(name, None)
            }
            literal @ Argument::Literal(ConstValue::String(_)) => literal,
            _ => return None,
        };
        let mut plan = Plan { counts: true, ..Plan::default() };
        let deployment = DeploymentSelection::compile(document, types, &[field], &mut plan)?;
        Some(Self { root, id, plan, deployment })
    }

    /// What to fetch.
    pub(super) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The root field's response key and position.
    pub(super) fn root(&self) -> &Root {
        &self.root
    }

    /// The id the request asks for; `None` when its variable is anything
    /// but a string (async-graphql then says what is wrong with it).
    pub(super) fn id(&self, variables: &Variables) -> Option<ID> {
        match self.id.value(variables)? {
            ConstValue::String(id) => Some(ID(id.clone())),
            _ => None,
        }
    }

    /// The whole response for the deployment `model`, fetched with
    /// `prefetched` by [`Self::plan`]: `{"data":{"<key>":{...}}}`.
    pub(super) fn write(
        &self,
        model: &deployment::Model,
        prefetched: &Prefetched,
    ) -> std::io::Result<Vec<u8>> {
        answer(&self.root, |out| self.deployment.write(out, model, prefetched))
    }
}

/// `{"data":{"<key>":...}}`, the root field's value written by `value`.
fn answer(
    root: &Root,
    value: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(b"{\"data\":{");
    plain_string(&mut out, &root.key)?;
    out.push(b':');
    value(&mut out)?;
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// The fields selected of a deployment.
#[derive(Debug)]
struct DeploymentSelection {
    fields: Vec<(String, DeploymentField)>,
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

impl DeploymentSelection {
    /// The selections of `fields` on a deployment (fragments on `types`),
    /// with what they fetch added to `plan`.
    fn compile(
        document: &ExecutableDocument,
        types: &[&str],
        fields: &[&Field],
        plan: &mut Plan,
    ) -> Option<Self> {
        let fields = collect(document, types, fields)?
            .into_iter()
            .map(|(key, fields)| Some((key, deployment_field(document, &fields, plan)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Self { fields })
    }

    fn write(
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

/// A compiled `deployments(...)` document.
#[derive(Debug)]
pub(super) struct ListRead {
    root: Root,
    first: Argument,
    after: Argument,
    status: Argument,
    health: Argument,
    plan: Plan,
    fields: Vec<(String, ConnectionField)>,
    /// Where `totalCount` is selected (first), if it is: it costs a
    /// statement of its own.
    total_count: Option<Pos>,
    /// The largest page size a request of this document passed
    /// async-graphql's validation with: the document's cost grows with
    /// its page size, so a larger one given by a variable is left to
    /// async-graphql to measure.
    validated_page: AtomicU64,
}

#[derive(Debug)]
enum ConnectionField {
    Typename,
    Nodes(DeploymentSelection),
    Edges(Vec<(String, EdgeField)>),
    PageInfo(Selected<PageState>),
    TotalCount,
}

#[derive(Debug)]
enum EdgeField {
    Leaf(Leaf<deployment::Model>),
    Node(DeploymentSelection),
}

/// A list request's page, read: its rows, whether it was asked with a
/// cursor, and the total when selected.
#[derive(Debug)]
pub(super) struct ListPage {
    pub(super) page: Page,
    pub(super) has_previous_page: bool,
    pub(super) total_count: Option<u64>,
}

impl ListRead {
    fn compile(
        document: &ExecutableDocument,
        operation: &OperationDefinition,
        field: &Field,
        root: Root,
    ) -> Option<Self> {
        let known = ["first", "after", "status", "health"];
        if field.arguments.iter().any(|(name, _)| !known.contains(&name.node.as_str())) {
            return None;
        }
        let argument = |name| Argument::of(operation, field, name);
        let (first, after) = (argument("first")?, argument("after")?);
        let (status, health) = (argument("status")?, argument("health")?);
        let connection = type_name::<DeploymentConnection>();
        let deployment = type_name::<Deployment>();
        let mut plan = Plan::default();
        let mut total_count = None;
        let fields = collect(document, &[&connection], &[field])?
            .into_iter()
            .map(|(key, fields)| {
                let first = fields.first()?;
                if fields.iter().any(|field| !field.arguments.is_empty()) {
                    return None;
                }
                let nested = |fields: &[&Field]| {
                    fields.iter().all(|field| !field.selection_set.node.items.is_empty())
                };
                let plain = |fields: &[&Field]| {
                    fields.iter().all(|field| field.selection_set.node.items.is_empty())
                };
                let field = match first.name.node.as_str() {
                    "__typename" if plain(&fields) => ConnectionField::Typename,
                    "totalCount" if plain(&fields) => {
                        total_count = total_count.or(Some(first.name.pos));
                        ConnectionField::TotalCount
                    }
                    "nodes" if nested(&fields) => ConnectionField::Nodes(
                        DeploymentSelection::compile(document, &[&deployment], &fields, &mut plan)?,
                    ),
                    "pageInfo" if nested(&fields) => {
                        ConnectionField::PageInfo(select::<PageInfo>(document, &fields)?)
                    }
                    "edges" if nested(&fields) => {
                        ConnectionField::Edges(edge_fields(document, &fields, &mut plan)?)
                    }
                    _ => return None,
                };
                Some((key, field))
            })
            .collect::<Option<Vec<_>>>()?;
        let validated_page = AtomicU64::new(0);
        Some(Self { root, first, after, status, health, plan, fields, total_count, validated_page })
    }

    /// What to fetch with each row.
    pub(super) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The root field's response key and position.
    pub(super) fn root(&self) -> &Root {
        &self.root
    }

    /// Where `totalCount` is, if selected.
    pub(super) fn total_count(&self) -> Option<Pos> {
        self.total_count
    }

    /// The arguments the request gives, if their variables plainly fit and
    /// async-graphql validated this document with a page at least as
    /// large; `None` leaves the request to async-graphql.
    pub(super) fn arguments(&self, variables: &Variables) -> Option<ListArguments> {
        let arguments = ListArguments {
            first: self.first(variables)?,
            after: self.after.parse(variables)?,
            status: self.status.parse(variables)?,
            health: self.health.parse(variables)?,
        };
        let size = pagination::page_cost(arguments.first) as u64;
        (size <= self.validated_page.load(Ordering::Relaxed)).then_some(arguments)
    }

    fn page_size(&self, variables: &Variables) -> Option<u64> {
        Some(pagination::page_cost(self.first(variables)?) as u64)
    }

    /// `first` as the resolver receives it: its default when not given.
    fn first(&self, variables: &Variables) -> Option<Option<i32>> {
        match self.first.value(variables) {
            None => Some(Some(Limits::DEFAULT_PAGE_SIZE)),
            Some(_) => self.first.parse(variables),
        }
    }

    /// The whole response for `read`: `{"data":{"<key>":{...}}}`.
    pub(super) fn write(&self, read: &ListPage) -> std::io::Result<Vec<u8>> {
        let rows = &read.page.rows;
        answer(&self.root, |out| {
            object(out, &self.fields, |out, field| match field {
                ConnectionField::Typename => {
                    plain_string(out, &type_name::<DeploymentConnection>())
                }
                ConnectionField::TotalCount => integer(out, read.total_count.unwrap_or_default()),
                ConnectionField::Nodes(deployment) => {
                    list(out, rows, |out, (model, prefetched)| {
                        deployment.write(out, model, prefetched)
                    })
                }
                ConnectionField::Edges(fields) => list(out, rows, |out, (model, prefetched)| {
                    object(out, fields, |out, field| match field {
                        EdgeField::Leaf(leaf) => leaf.write(out, model),
                        EdgeField::Node(deployment) => deployment.write(out, model, prefetched),
                    })
                }),
                ConnectionField::PageInfo(fields) => {
                    leaves(out, fields, &PageState::of(&read.page, read.has_previous_page))
                }
            })
        })
    }
}

/// The fields of `edges`: plain ones (`cursor`) over the deployment's row,
/// and `node`.
fn edge_fields(
    document: &ExecutableDocument,
    fields: &[&Field],
    plan: &mut Plan,
) -> Option<Vec<(String, EdgeField)>> {
    let edge = type_name::<DeploymentEdge>();
    let deployment = type_name::<Deployment>();
    collect(document, &[&edge], fields)?
        .into_iter()
        .map(|(key, fields)| {
            let first = fields.first()?;
            if fields.iter().any(|field| !field.arguments.is_empty()) {
                return None;
            }
            let field = match first.name.node.as_str() {
                "node" => EdgeField::Node(DeploymentSelection::compile(
                    document,
                    &[&deployment],
                    &fields,
                    plan,
                )?),
                _ => EdgeField::Leaf(leaf::<DeploymentEdge>(&fields)?),
            };
            Some((key, field))
        })
        .collect()
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
            plan.counts = true;
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
        "health" => {
            plan.counts = true;
            DeploymentField::Health
        }
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
    collect(document, &[&type_name::<T>()], fields)?
        .into_iter()
        .map(|(key, fields)| Some((key, leaf::<T>(&fields)?)))
        .collect()
}

/// The plain field of an object of type `T` that `fields` select (merged
/// under one key); `None` unless it is one, without arguments.
fn leaf<T: Fields + OutputType>(fields: &[&Field]) -> Option<Leaf<T::Row>> {
    let name: &'static str = match type_name::<T>() {
        Cow::Borrowed(name) => name,
        Cow::Owned(_) => return None,
    };
    let plain = fields
        .iter()
        .all(|field| field.arguments.is_empty() && field.selection_set.node.items.is_empty());
    let field = fields.first()?.name.node.as_str();
    let leaf = match field {
        "__typename" => Leaf::Typename(name),
        _ => Leaf::Field(T::field(field)?),
    };
    plain.then_some(leaf)
}

impl<R> Leaf<R> {
    fn write(&self, out: &mut Vec<u8>, row: &R) -> std::io::Result<()> {
        match self {
            Self::Typename(name) => plain_string(out, name),
            Self::Field(write) => write(row, out),
        }
    }
}

/// An object of plain fields written from `row`.
fn leaves<R>(out: &mut Vec<u8>, fields: &[(String, Leaf<R>)], row: &R) -> std::io::Result<()> {
    object(out, fields, |out, field| field.write(out, row))
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
        match Compiled::compile(&parse_query(query).ok()?)? {
            Compiled::Status(read) => Some(read),
            Compiled::List(_) => None,
        }
    }

    fn compiled_list(query: &str) -> Option<ListRead> {
        match Compiled::compile(&parse_query(query).ok()?)? {
            Compiled::List(read) => Some(*read),
            Compiled::Status(_) => None,
        }
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
        assert_eq!(read.root().key, "d");
        assert!(matches!(&read.id, Argument::Literal(ConstValue::String(id)) if id == "x"));
        let fields = &read.deployment.fields;
        let keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_str()).collect();
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
            "query($id: ID!) { deployment(id: $id) { id unknown } }",
        ];
        for query in unusual {
            assert!(compiled(query).is_none(), "compiled: {query}");
        }
        let unusual = [
            "{ deployments { nodes { id } } __typename }",
            "{ deployments { nodes { ... on Node { id } } } }",
            "{ deployments { nodes { replicas(status: RUNNING) { id } } } }",
            "query($n: Int!) { deployments { nodes { statusHistory(limit: $n) { reason } } } }",
            "{ deployments { edges { node { id } unknown } } }",
            "{ deployments { pageInfo { hasNextPage } totalCount @skip(if: true) } }",
            "{ deployments(first: $undefined) { totalCount } }",
            "{ deployments { nodes } }",
        ];
        for query in unusual {
            assert!(compiled_list(query).is_none(), "compiled: {query}");
        }
    }

    #[test]
    fn a_list_is_compiled_with_its_plan_and_arguments() {
        let read = compiled_list(
            "query List($first: Int = 5, $after: String, $status: DeploymentStatus) { \
             page: deployments(first: $first, after: $after, status: $status, health: DEGRADED) { \
             __typename n: totalCount nodes { id health } \
             edges { cursor node { replicas { id } statusHistory(limit: 2) { reason } } } \
             pageInfo { hasNextPage endCursor __typename } } }",
        );
        let Some(read) = read else { panic!("not compiled") };
        assert_eq!(read.root().key, "page");
        let keys: Vec<&str> = read.fields.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["__typename", "n", "nodes", "edges", "pageInfo"]);
        let expected =
            Plan { counts: true, replicas: true, resources: false, history_limits: vec![2] };
        assert_eq!(read.plan, expected);
        assert!(read.total_count().is_some());
        // Validated with a page of 5 (the variable's default): a page of at
        // most 5 is answered directly, a larger one is measured again.
        let variables = |json| Variables::from_json(json);
        assert_eq!(read.page_size(&variables(serde_json::json!({}))), Some(5));
        assert!(read.arguments(&variables(serde_json::json!({}))).is_none());
        read.validated_page.store(5, Ordering::Relaxed);
        let given = read.arguments(&variables(serde_json::json!({ "status": "RUNNING" })));
        let Some(given) = given else { panic!("not answered directly") };
        assert_eq!(given.first, Some(5));
        assert_eq!(given.status, Some(crate::graphql::types::DeploymentStatus::Running));
        assert_eq!(given.health, Some(Health::Degraded));
        assert!(read.arguments(&variables(serde_json::json!({ "first": 6 }))).is_none());
        // Null is the default page, 20.
        let null = variables(serde_json::json!({ "first": null }));
        assert!(read.arguments(&null).is_none());
        read.validated_page.store(20, Ordering::Relaxed);
        assert_eq!(read.arguments(&null).map(|given| given.first), Some(None));
        for wrong in [
            serde_json::json!({ "first": "5" }),
            serde_json::json!({ "after": 1 }),
            serde_json::json!({ "status": "UNKNOWN" }),
            serde_json::json!({ "first": 1.5 }),
        ] {
            assert!(read.arguments(&variables(wrong.clone())).is_none(), "{wrong}");
        }
    }
}
