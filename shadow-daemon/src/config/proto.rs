//! `compare.proto` / `compare.proto_include`: the user's `.proto` files, read and compiled
//! (protox, pure Rust, no `protoc`) while the configuration is checked, so that an unreadable
//! file or a syntax error is a configuration problem naming its key and where it was given.
//!
//! Each file is known to the compiler by its path relative to the first include directory that
//! holds it (as `protoc -I` names files), else by its file name, its own directory then being
//! searched for its imports after the include directories. The well-known
//! `google/protobuf/*.proto` types need no include.

use super::parse::Checks;
use super::raw::RawCompare;
use shadow_core::grpc::{ProtoFile, ProtoSchema};
use std::path::{Path, PathBuf};

/// The compiled schema (`Some(None)` without `compare.proto`), or `None` after recording the
/// problems.
pub(super) fn schema(raw: &RawCompare, c: &mut Checks) -> Option<Option<ProtoSchema>> {
    let includes = c.list("compare.proto_include", &raw.proto_include, |dir| {
        if dir.is_dir() {
            Ok(dir.clone())
        } else {
            Err(format!(
                "{} is not a directory: give the directory the .proto files' imports are \
                 relative to",
                dir.display()
            ))
        }
    });
    if raw.proto.value.is_empty() {
        c.ensure(
            raw.proto_include.value.is_empty(),
            "compare.proto_include",
            &raw.proto_include.origin,
            || {
                "include directories without compare.proto (--proto FILE.proto): give the .proto \
                file whose service production serves"
                    .into()
            },
        )?;
        return Some(None);
    }
    let search = includes.clone().unwrap_or_default();
    let files = c.list("compare.proto", &raw.proto, |path| {
        let source = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok((import_name(path, &search), path.clone(), source))
    });
    let (includes, files) = (includes?, files?);
    let mut dirs = includes;
    for (name, path, _) in &files {
        if name.contains('/') {
            continue;
        }
        // Not under an include directory: its imports may sit beside it.
        let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        if !dirs.contains(&parent) {
            dirs.push(parent);
        }
    }
    let sources: Vec<ProtoFile> = files
        .iter()
        .map(|(name, _, source)| ProtoFile {
            name: name.clone(),
            source: source.clone(),
        })
        .collect();
    match ProtoSchema::compile(&sources, move |name| read_import(&dirs, name)) {
        Ok(schema) => Some(Some(schema)),
        Err(e) => {
            let names: Vec<String> = files
                .iter()
                .map(|(name, path, _)| format!("{name} = {}", path.display()))
                .collect();
            c.problem(
                "compare.proto",
                &raw.proto.origin,
                format!("{e} (files: {})", names.join(", ")),
            );
            None
        }
    }
}

/// The name `path` is compiled under: relative to the first include directory holding it,
/// else its file name.
fn import_name(path: &Path, includes: &[PathBuf]) -> String {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let file = canonical(path);
    for dir in includes {
        let relative = path
            .strip_prefix(dir)
            .ok()
            .map(Path::to_path_buf)
            .or_else(|| {
                file.strip_prefix(canonical(dir))
                    .ok()
                    .map(Path::to_path_buf)
            });
        if let Some(rel) = relative {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            return parts.join("/");
        }
    }
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// An import's text from the first directory that has it.
fn read_import(dirs: &[PathBuf], name: &str) -> Result<Option<String>, String> {
    for dir in dirs {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(None)
}
