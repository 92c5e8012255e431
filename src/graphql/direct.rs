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
//! it as before. A test compares the two paths' answers byte for byte for
//! every field of every type here (`tests/api/direct.rs`).

use std::{borrow::Cow, collections::HashMap};

use async_graphql::{
    ID, OutputType, Pos, Variables,
    parser::types::{BaseType, ExecutableDocument, Field, OperationType, Selection, SelectionSet},
    resolver_utils::EnumType,
};
use async_graphql_value::{Name, Value as Input};
use entity::{deployment, deployment_replica, deployment_resources, deployment_status_history};

use super::types::{
    DeploymentStatus, Health, Replica, ReplicaCounts, ReplicaStatus, Resources, StatusChange,
    Timestamp,
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

/// A compiled `deployment(id:)` document.
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
    Id,
    Name,
    Status,
    Health,
    TargetReplicas,
    CreatedAt,
    UpdatedAt,
    ReplicaCounts(Vec<(String, CountsField)>),
    Replicas(Vec<(String, ReplicaField)>),
    Resources(Vec<(String, ResourcesField)>),
    StatusHistory(usize, Vec<(String, ChangeField)>),
}

#[derive(Debug, Clone, Copy)]
enum CountsField {
    Typename,
    Total,
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, Copy)]
enum ReplicaField {
    Typename,
    Id,
    NodeId,
    Status,
    ContainerId,
    StartedAt,
    StoppedAt,
}

#[derive(Debug, Clone, Copy)]
enum ResourcesField {
    Typename,
    CpuCores,
    MemoryMb,
    GpuUnits,
    StorageGb,
}

#[derive(Debug, Clone, Copy)]
enum ChangeField {
    Typename,
    OldStatus,
    NewStatus,
    ChangedAt,
    Reason,
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
        if field.name.node != "deployment" || !field.directives.is_empty() {
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
        let groups = collect(document, &type_name::<super::deployment::Deployment>(), &[field])?;
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
            DeploymentField::Typename => {
                plain_string(out, &type_name::<super::deployment::Deployment>())
            }
            DeploymentField::Id => uuid(out, model.id),
            DeploymentField::Name => string(out, &model.name),
            DeploymentField::Status => enum_name(out, DeploymentStatus::from(model.status)),
            DeploymentField::Health => {
                enum_name(out, Health::from(counts.health(model.target_replicas)))
            }
            DeploymentField::TargetReplicas => integer(out, model.target_replicas),
            DeploymentField::CreatedAt => timestamp(out, model.created_at),
            DeploymentField::UpdatedAt => timestamp(out, model.updated_at),
            DeploymentField::ReplicaCounts(fields) => replica_counts(out, fields, counts),
            DeploymentField::Replicas(fields) => {
                list(out, prefetched.replicas.as_deref().unwrap_or_default(), |out, replica| {
                    self::replica(out, fields, replica)
                })
            }
            DeploymentField::Resources(fields) => {
                match prefetched.resources.as_ref().and_then(Option::as_ref) {
                    Some(found) => resources(out, fields, found),
                    None => null(out),
                }
            }
            DeploymentField::StatusHistory(limit, fields) => {
                let history = prefetched.history.as_deref().unwrap_or_default();
                list(out, &history[..history.len().min(*limit)], |out, change| {
                    status_change(out, fields, change)
                })
            }
        })
    }
}

/// The GraphQL name of an output type, as async-graphql registers it.
fn type_name<T: OutputType>() -> Cow<'static, str> {
    T::type_name()
}

/// The fields `fields` select of an object of type `ty`, grouped by
/// response key in the order of first appearance (GraphQL's
/// CollectFields); `None` for what this module leaves to async-graphql.
fn collect<'d>(
    document: &'d ExecutableDocument,
    ty: &str,
    fields: &[&'d Field],
) -> Option<Vec<(String, Vec<&'d Field>)>> {
    let mut groups: Vec<(String, Vec<&'d Field>)> = Vec::new();
    let mut index: HashMap<&'d str, usize> = HashMap::new();
    for field in fields {
        if field.selection_set.node.items.is_empty() {
            return None;
        }
        collect_set(document, ty, &field.selection_set.node, &mut groups, &mut index, 0)?;
    }
    Some(groups)
}

fn collect_set<'d>(
    document: &'d ExecutableDocument,
    ty: &str,
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
                if fragment.node.type_condition.node.on.node != ty
                    || !fragment.node.directives.is_empty()
                {
                    return None;
                }
                let set = &fragment.node.selection_set.node;
                collect_set(document, ty, set, groups, index, depth + 1)?;
            }
            Selection::InlineFragment(inline) => {
                let inline = &inline.node;
                let on = inline.type_condition.as_ref().map(|c| c.node.on.node.as_str());
                if on.is_some_and(|on| on != ty) || !inline.directives.is_empty() {
                    return None;
                }
                collect_set(document, ty, &inline.selection_set.node, groups, index, depth + 1)?;
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
        "replicaCounts" if no_arguments => DeploymentField::ReplicaCounts(leaves(
            document,
            &type_name::<ReplicaCounts>(),
            fields,
            counts_field,
        )?),
        "replicas" if no_arguments => {
            plan.replicas = true;
            DeploymentField::Replicas(leaves(
                document,
                &type_name::<Replica>(),
                fields,
                replica_field,
            )?)
        }
        "resources" if no_arguments => {
            plan.resources = true;
            DeploymentField::Resources(leaves(
                document,
                &type_name::<Resources>(),
                fields,
                resources_field,
            )?)
        }
        "statusHistory" => {
            let limit = history_limit(first)?;
            if fields.iter().any(|field| history_limit(field) != Some(limit)) {
                return None;
            }
            if !plan.history_limits.contains(&limit) {
                plan.history_limits.push(limit);
            }
            let fields = leaves(document, &type_name::<StatusChange>(), fields, change_field)?;
            DeploymentField::StatusHistory(usize::try_from(limit).ok()?, fields)
        }
        _ if !no_arguments || fields.iter().any(|f| !f.selection_set.node.items.is_empty()) => {
            return None;
        }
        "__typename" => DeploymentField::Typename,
        "id" => DeploymentField::Id,
        "name" => DeploymentField::Name,
        "status" => DeploymentField::Status,
        "health" => DeploymentField::Health,
        "targetReplicas" => DeploymentField::TargetReplicas,
        "createdAt" => DeploymentField::CreatedAt,
        "updatedAt" => DeploymentField::UpdatedAt,
        _ => return None,
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

/// The leaf fields selected of an object of type `ty`.
fn leaves<L>(
    document: &ExecutableDocument,
    ty: &str,
    fields: &[&Field],
    leaf: fn(&str) -> Option<L>,
) -> Option<Vec<(String, L)>> {
    collect(document, ty, fields)?
        .into_iter()
        .map(|(key, fields)| {
            let plain = fields.iter().all(|field| {
                field.arguments.is_empty() && field.selection_set.node.items.is_empty()
            });
            Some((key, leaf(fields.first()?.name.node.as_str()).filter(|_| plain)?))
        })
        .collect()
}

fn counts_field(name: &str) -> Option<CountsField> {
    Some(match name {
        "__typename" => CountsField::Typename,
        "total" => CountsField::Total,
        "pending" => CountsField::Pending,
        "starting" => CountsField::Starting,
        "running" => CountsField::Running,
        "stopping" => CountsField::Stopping,
        "stopped" => CountsField::Stopped,
        "failed" => CountsField::Failed,
        _ => return None,
    })
}

fn replica_field(name: &str) -> Option<ReplicaField> {
    Some(match name {
        "__typename" => ReplicaField::Typename,
        "id" => ReplicaField::Id,
        "nodeId" => ReplicaField::NodeId,
        "status" => ReplicaField::Status,
        "containerId" => ReplicaField::ContainerId,
        "startedAt" => ReplicaField::StartedAt,
        "stoppedAt" => ReplicaField::StoppedAt,
        _ => return None,
    })
}

fn resources_field(name: &str) -> Option<ResourcesField> {
    Some(match name {
        "__typename" => ResourcesField::Typename,
        "cpuCores" => ResourcesField::CpuCores,
        "memoryMb" => ResourcesField::MemoryMb,
        "gpuUnits" => ResourcesField::GpuUnits,
        "storageGb" => ResourcesField::StorageGb,
        _ => return None,
    })
}

fn change_field(name: &str) -> Option<ChangeField> {
    Some(match name {
        "__typename" => ChangeField::Typename,
        "oldStatus" => ChangeField::OldStatus,
        "newStatus" => ChangeField::NewStatus,
        "changedAt" => ChangeField::ChangedAt,
        "reason" => ChangeField::Reason,
        _ => return None,
    })
}

fn replica_counts(
    out: &mut Vec<u8>,
    fields: &[(String, CountsField)],
    counts: health::ReplicaCounts,
) -> std::io::Result<()> {
    let counts = ReplicaCounts::from(counts);
    object(out, fields, |out, field| match field {
        CountsField::Typename => plain_string(out, &type_name::<ReplicaCounts>()),
        CountsField::Total => integer(out, counts.total),
        CountsField::Pending => integer(out, counts.pending),
        CountsField::Starting => integer(out, counts.starting),
        CountsField::Running => integer(out, counts.running),
        CountsField::Stopping => integer(out, counts.stopping),
        CountsField::Stopped => integer(out, counts.stopped),
        CountsField::Failed => integer(out, counts.failed),
    })
}

fn replica(
    out: &mut Vec<u8>,
    fields: &[(String, ReplicaField)],
    replica: &deployment_replica::Model,
) -> std::io::Result<()> {
    object(out, fields, |out, field| match field {
        ReplicaField::Typename => plain_string(out, &type_name::<Replica>()),
        ReplicaField::Id => uuid(out, replica.id),
        ReplicaField::NodeId => optional(out, replica.node_id, uuid),
        ReplicaField::Status => enum_name(out, ReplicaStatus::from(replica.status)),
        ReplicaField::ContainerId => optional(out, replica.container_id.as_deref(), string),
        ReplicaField::StartedAt => optional(out, replica.started_at, timestamp),
        ReplicaField::StoppedAt => optional(out, replica.stopped_at, timestamp),
    })
}

fn resources(
    out: &mut Vec<u8>,
    fields: &[(String, ResourcesField)],
    resources: &deployment_resources::Model,
) -> std::io::Result<()> {
    object(out, fields, |out, field| match field {
        ResourcesField::Typename => plain_string(out, &type_name::<Resources>()),
        // As async-graphql writes a Float: through serde_json.
        ResourcesField::CpuCores => {
            serde_json::to_writer(&mut *out, &resources.cpu_cores).map_err(std::io::Error::other)
        }
        ResourcesField::MemoryMb => integer(out, resources.memory_mb),
        ResourcesField::GpuUnits => integer(out, resources.gpu_units),
        ResourcesField::StorageGb => integer(out, resources.storage_gb),
    })
}

fn status_change(
    out: &mut Vec<u8>,
    fields: &[(String, ChangeField)],
    change: &deployment_status_history::Model,
) -> std::io::Result<()> {
    object(out, fields, |out, field| match field {
        ChangeField::Typename => plain_string(out, &type_name::<StatusChange>()),
        ChangeField::OldStatus => {
            optional(out, change.old_status, |out, s| enum_name(out, DeploymentStatus::from(s)))
        }
        ChangeField::NewStatus => enum_name(out, DeploymentStatus::from(change.new_status)),
        ChangeField::ChangedAt => timestamp(out, change.changed_at),
        ChangeField::Reason => optional(out, change.reason.as_deref(), string),
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

fn optional<T>(
    out: &mut Vec<u8>,
    value: Option<T>,
    write: impl FnOnce(&mut Vec<u8>, T) -> std::io::Result<()>,
) -> std::io::Result<()> {
    match value {
        Some(value) => write(out, value),
        None => null(out),
    }
}

fn null(out: &mut Vec<u8>) -> std::io::Result<()> {
    out.extend_from_slice(b"null");
    Ok(())
}

/// A JSON string, escaped as serde_json escapes it (as async-graphql's
/// responses are written).
fn string(out: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    if crate::json::needs_escaping(text) {
        serde_json::to_writer(out, text).map_err(std::io::Error::other)
    } else {
        plain_string(out, text)
    }
}

fn uuid(out: &mut Vec<u8>, id: uuid::Uuid) -> std::io::Result<()> {
    let mut buffer = uuid::Uuid::encode_buffer();
    plain_string(out, id.hyphenated().encode_lower(&mut buffer))
}

/// A string that needs no escaping in JSON: a UUID, a timestamp, a GraphQL
/// name (a response key, a type or enum value name), or text checked.
fn plain_string(out: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    debug_assert!(!crate::json::needs_escaping(text));
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

fn timestamp(out: &mut Vec<u8>, at: chrono::DateTime<chrono::Utc>) -> std::io::Result<()> {
    match entity::timestamp::micros_ascii(&at) {
        Some(text) => {
            out.push(b'"');
            out.extend_from_slice(&text);
            out.push(b'"');
            Ok(())
        }
        None => Timestamp(at).with_rfc3339(|text| plain_string(out, text)),
    }
}

/// As serde_json writes an integer (with `itoa`), without `core::fmt`.
fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) -> std::io::Result<()> {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    Ok(())
}

fn enum_name<T: EnumType>(out: &mut Vec<u8>, value: T) -> std::io::Result<()> {
    match T::items().iter().find(|item| item.value == value) {
        Some(item) => plain_string(out, item.name),
        None => Err(std::io::Error::other("an enum value without a GraphQL name")),
    }
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
