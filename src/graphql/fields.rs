//! Plain fields, each declared once.
//!
//! An object over a row (a database model, the replica counts) declares its
//! plain fields with [`row_object!`]: a GraphQL name, a description, an
//! output type and how the value comes from the row. From that one
//! declaration come both the async-graphql resolver and the entry in the
//! type's [`Fields`] table, which the compiled status read (`direct`) uses
//! to write the field's JSON straight from the row. Fields that take
//! arguments or load relations are written by hand inside the same macro
//! call, once each.
//!
//! Adding a column to `Replica`, say: the entity's column, the migration,
//! and one line in `types.rs`; the differential test (`tests/api/direct.rs`)
//! reads the schema and compares the new field on both paths by itself.

use std::io;

use async_graphql::{ID, resolver_utils::EnumType};

/// Writes one plain field of `R`'s object as JSON.
pub(crate) type Write<R> = fn(&R, &mut Vec<u8>) -> io::Result<()>;

/// An object's plain fields: GraphQL name and writer, in declaration order.
pub(crate) trait Fields {
    /// The row the object is a view of (the object is a newtype of it, or
    /// of a reference to it).
    type Row: 'static;
    const FIELDS: &'static [(&'static str, Write<Self::Row>)];

    /// The writer of the plain field named `name`.
    fn field(name: &str) -> Option<Write<Self::Row>> {
        Self::FIELDS.iter().find(|(field, _)| *field == name).map(|(_, write)| *write)
    }
}

/// Declares an object over a row type: its plain fields once each (see the
/// module's docs), and any hand-written resolvers in `resolvers { ... }`.
/// The call writes `#[Object]` itself, so that the names async-graphql
/// gives its resolvers (`child_complexity`) are the caller's.
macro_rules! row_object {
    (
        $(# $attribute:tt)*
        impl $ty:ty, over $row:ty {
            $(
                $(#[doc = $doc:literal])*
                $name:literal $field:ident($r:ident) -> $out:ty = $body:expr;
            )*
            $(resolvers { $($resolvers:tt)* })?
        }
    ) => {
        $(# $attribute)*
        impl $ty {
            $(
                $(#[doc = $doc])*
                #[graphql(name = $name)]
                async fn $field(&self) -> $out {
                    let $r: &$row = &self.0;
                    $body
                }
            )*
            $($($resolvers)*)?
        }

        impl $crate::graphql::fields::Fields for $ty {
            type Row = $row;
            const FIELDS: &'static [(&'static str, $crate::graphql::fields::Write<$row>)] = &[
                $((
                    $name,
                    |$r: &$row, out: &mut Vec<u8>| {
                        let value: $out = $body;
                        $crate::graphql::fields::Leaf::write(&value, out)
                    },
                ),)*
            ];
        }
    };
}
pub(crate) use row_object;

/// A field value written as async-graphql writes it in a response.
pub(crate) trait Leaf {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()>;
}

impl<T: Leaf> Leaf for Option<T> {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Some(value) => value.write(out),
            None => null(out),
        }
    }
}

impl<T: Leaf + ?Sized> Leaf for &T {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        (**self).write(out)
    }
}

impl Leaf for str {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        string(out, self)
    }
}

/// Every id is a UUID's hyphenated form, which needs no escaping.
impl Leaf for ID {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        string(out, self)
    }
}

impl Leaf for String {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        string(out, self)
    }
}

impl Leaf for bool {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
        Ok(())
    }
}

impl Leaf for i32 {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        integer(out, *self)
    }
}

impl Leaf for i64 {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        integer(out, *self)
    }
}

/// As async-graphql writes a Float: through serde_json.
impl Leaf for f64 {
    fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        serde_json::to_writer(out, self).map_err(io::Error::other)
    }
}

pub(crate) fn null(out: &mut Vec<u8>) -> io::Result<()> {
    out.extend_from_slice(b"null");
    Ok(())
}

/// A JSON string, escaped as serde_json escapes it (as async-graphql's
/// responses are written).
pub(crate) fn string(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    if crate::json::needs_escaping(text) {
        serde_json::to_writer(out, text).map_err(io::Error::other)
    } else {
        plain_string(out, text)
    }
}

/// A string that needs no escaping in JSON: a UUID, a timestamp, a GraphQL
/// name (a response key, a type or enum value name), or text checked.
pub(crate) fn plain_string(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    debug_assert!(!crate::json::needs_escaping(text));
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

/// As serde_json writes an integer (with `itoa`), without `core::fmt`.
pub(crate) fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) -> io::Result<()> {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    Ok(())
}

pub(crate) fn enum_name<T: EnumType>(out: &mut Vec<u8>, value: T) -> io::Result<()> {
    match T::items().iter().find(|item| item.value == value) {
        Some(item) => plain_string(out, item.name),
        None => Err(io::Error::other("an enum value without a GraphQL name")),
    }
}
