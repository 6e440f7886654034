//! The gRPC contracts: the `.proto` files the BFFs and the services share
//! (`shared/proto`), held to the last released descriptor set
//! (`contracts/proto/release.binpb`).
//!
//! Both sides are compiled with `protox` and compared as wire and API
//! contracts: a message, enum, service or method that disappears, a field
//! removed, renumbered, renamed or given another type or cardinality, an
//! enum value removed or renumbered, a method whose request, response or
//! streaming changes: each breaks a peer built against the release. Added
//! messages, fields (optional or not), enum values and methods do not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    ServiceDescriptorProto,
};

/// The `.proto` files, relative to [`proto_root`].
pub const FILES: [&str; 2] = ["catalog/v1/product.proto", "inventory/v1/inventory.proto"];

/// `shared/proto/proto` of the workspace.
pub fn proto_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/proto/proto")
}

/// `contracts/proto/release.binpb` of the workspace.
pub fn release_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts/proto/release.binpb")
}

/// The descriptor set of [`FILES`] under `root`, without source locations
/// (comments and positions are no contract).
///
/// # Errors
/// When a file does not compile.
pub fn compile(root: &Path) -> Result<FileDescriptorSet, String> {
    let mut set = protox::compile(FILES, [root]).map_err(|e| e.to_string())?;
    for file in &mut set.file {
        file.source_code_info = None;
    }
    Ok(set)
}

/// The released descriptor set.
///
/// # Errors
/// When the file is missing or not a descriptor set.
pub fn release() -> Result<FileDescriptorSet, String> {
    let path = release_path();
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    FileDescriptorSet::decode(bytes.as_slice()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the current files' descriptor set as the release.
///
/// # Errors
/// When the files do not compile or the file cannot be written.
pub fn write_release() -> Result<PathBuf, String> {
    let set = compile(&proto_root())?;
    let path = release_path();
    std::fs::write(&path, set.encode_to_vec()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

#[derive(Default)]
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Index<'a> {
    fn of(set: &'a FileDescriptorSet) -> Self {
        let mut index = Index::default();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                index.message(package, message);
            }
            for e in &file.enum_type {
                index.enums.insert(format!("{package}.{}", e.name()), e);
            }
            for service in &file.service {
                index
                    .services
                    .insert(format!("{package}.{}", service.name()), service);
            }
        }
        index
    }

    fn message(&mut self, scope: &str, message: &'a DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            self.message(&name, nested);
        }
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        self.messages.insert(name, message);
    }
}

fn describe(field: &FieldDescriptorProto) -> String {
    let cardinality = if field.label() == Label::Repeated {
        "repeated "
    } else {
        ""
    };
    let ty = match field.r#type() {
        Type::Message | Type::Enum => field.type_name().trim_start_matches('.').to_owned(),
        other => other
            .as_str_name()
            .trim_start_matches("TYPE_")
            .to_lowercase(),
    };
    format!("{cardinality}{ty}")
}

/// What in `new` breaks a peer built against `old`, one line each.
pub fn breaking_changes(old: &FileDescriptorSet, new: &FileDescriptorSet) -> Vec<String> {
    let (old, new) = (Index::of(old), Index::of(new));
    let mut breaks = Vec::new();
    for (name, before) in &old.messages {
        let Some(after) = new.messages.get(name) else {
            breaks.push(format!("message {name} removed"));
            continue;
        };
        for field in &before.field {
            let same_number = after.field.iter().find(|f| f.number() == field.number());
            let same_name = after.field.iter().find(|f| f.name() == field.name());
            match (same_number, same_name) {
                (None, Some(moved)) => breaks.push(format!(
                    "{name}.{} renumbered from {} to {}",
                    field.name(),
                    field.number(),
                    moved.number()
                )),
                (None, None) => breaks.push(format!(
                    "{name}.{} (field {}) removed",
                    field.name(),
                    field.number()
                )),
                (Some(now), _) => {
                    if now.name() != field.name() {
                        breaks.push(format!(
                            "{name}: field {} renamed from {} to {}",
                            field.number(),
                            field.name(),
                            now.name()
                        ));
                    }
                    if describe(now) != describe(field) {
                        breaks.push(format!(
                            "{name}.{} changed type from {} to {}",
                            field.name(),
                            describe(field),
                            describe(now)
                        ));
                    }
                    if now.oneof_index.is_some() != field.oneof_index.is_some()
                        && !now.proto3_optional()
                        && !field.proto3_optional()
                    {
                        breaks.push(format!(
                            "{name}.{} moved into or out of a oneof",
                            field.name()
                        ));
                    }
                }
            }
        }
    }
    for (name, before) in &old.enums {
        let Some(after) = new.enums.get(name) else {
            breaks.push(format!("enum {name} removed"));
            continue;
        };
        for value in &before.value {
            match after.value.iter().find(|v| v.name() == value.name()) {
                None => breaks.push(format!("{name}.{} removed", value.name())),
                Some(now) if now.number() != value.number() => breaks.push(format!(
                    "{name}.{} renumbered from {} to {}",
                    value.name(),
                    value.number(),
                    now.number()
                )),
                Some(_) => {}
            }
        }
    }
    for (name, before) in &old.services {
        let Some(after) = new.services.get(name) else {
            breaks.push(format!("service {name} removed"));
            continue;
        };
        for method in &before.method {
            let Some(now) = after.method.iter().find(|m| m.name() == method.name()) else {
                breaks.push(format!("{name}/{} removed", method.name()));
                continue;
            };
            let signature = |m: &prost_types::MethodDescriptorProto| {
                format!(
                    "({}{}) returns ({}{})",
                    if m.client_streaming() { "stream " } else { "" },
                    m.input_type().trim_start_matches('.'),
                    if m.server_streaming() { "stream " } else { "" },
                    m.output_type().trim_start_matches('.')
                )
            };
            if signature(now) != signature(method) {
                breaks.push(format!(
                    "{name}/{} changed from {} to {}",
                    method.name(),
                    signature(method),
                    signature(now)
                ));
            }
        }
    }
    breaks
}
