//! `shadowd check-config`: load the config file and flags as `run` would, check them (reporting
//! every problem at once), and print the effective configuration as TOML, followed by what it
//! means that the keys do not show, as TOML comments (so the output is still a config file):
//! the fields the preset ignores on its own, the gRPC methods the preset and `compare.proto`
//! decode, and, for each `--sample-path`, the shadow URI a request to that path is replayed to
//! and the rules that changed it. The files are checked as `run` checks them
//! ([`super::run::check_files`]: permissions, the admin token).

use super::run::RunArgs;
use super::{CommandResult, EXIT_OK, UsageError};
use crate::config::Config;
use crate::replay::TargetMap;
use clap::Args;
use std::fmt::Write;

/// Flags of `shadowd check-config`: the same as `run`, plus sample paths.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// A production request target (e.g. `/v2/models/wine/infer`): show where it is replayed
    /// and which rewrites apply. Repeat for several.
    #[arg(long = "sample-path", value_name = "TARGET")]
    pub sample_paths: Vec<String>,
}

/// Runs `shadowd check-config`.
pub fn main(args: CheckConfigArgs) -> CommandResult {
    let config = args.run.effective_config().map_err(UsageError::from)?;
    // As `run` would refuse them: the files' permissions and the token.
    super::run::check_files(&args.run, &config)?;
    let text = config.to_toml()?;
    println!("{text}");
    print!("{}", effective_notes(&config, &args.sample_paths));
    eprintln!("shadowd: configuration is valid");
    Ok(EXIT_OK)
}

/// The TOML comments printed after the configuration.
pub fn effective_notes(config: &Config, sample_paths: &[String]) -> String {
    let mut out = String::new();
    let compare = &config.compare;
    let preset = compare.preset_name.as_str();
    let ignored = compare.preset_ignore_paths();
    if !ignored.is_empty() {
        let _ = writeln!(
            out,
            "# compare: the {preset} preset also ignores, in every body, the fields its protocol \
             fills per response (compare.preset_ignores = false compares them):"
        );
        for path in ignored {
            let _ = writeln!(out, "#   {path}");
        }
    } else if compare.preset_ignores {
        let _ = writeln!(
            out,
            "# compare: the {preset} preset ignores no fields of its own"
        );
    }
    if let Some(p) = compare.preset_name.grpc_preset() {
        let _ = writeln!(
            out,
            "# compare: the {preset} preset decodes these gRPC methods into its REST shape:"
        );
        for path in p.method_paths() {
            let _ = writeln!(out, "#   {path}");
        }
    }
    if let Some(schema) = &compare.proto_schema {
        let _ = writeln!(
            out,
            "# compare: compare.proto decodes these gRPC methods (others are read raw, by field \
             number):"
        );
        for path in schema.method_paths() {
            let _ = writeln!(out, "#   {path}");
        }
    }
    if sample_paths.is_empty() {
        return out;
    }
    let map = TargetMap::new(&config.shadow);
    let _ = writeln!(out, "# replayed to the shadow:");
    for target in sample_paths {
        match map.explain(target) {
            Ok(mapping) => {
                let _ = writeln!(out, "#   {target} -> {}", mapping.uri);
                if mapping.applied.is_empty() {
                    let _ = writeln!(out, "#     (no rewrite applies)");
                }
                for rule in &mapping.applied {
                    let _ = writeln!(out, "#     by {rule}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "#   {target}: not replayed: {e}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        check: CheckConfigArgs,
    }

    fn notes(args: &[&str]) -> String {
        let mut all = vec!["t", "--port", "8080", "--shadow", "http://127.0.0.1:8081"];
        all.extend_from_slice(args);
        let t = T::parse_from(all);
        let config = t.check.run.effective_config().unwrap();
        let notes = effective_notes(&config, &t.check.sample_paths);
        // The notes are comments: the whole output is still a valid config file.
        let whole = format!("{}\n{notes}", config.to_toml().unwrap());
        assert_eq!(
            Config::from_toml(&whole, std::path::Path::new("out.toml")).unwrap(),
            config
        );
        notes
    }

    #[test]
    fn lists_the_preset_ignores_and_where_sample_paths_go() {
        let text = notes(&[
            "--shadow-model",
            "wine-v2",
            "--sample-path",
            "/v2/models/wine/infer",
            "--sample-path",
            "/v2/health/ready",
            "--sample-path",
            "*",
        ]);
        assert_eq!(
            text,
            "# compare: the kserve-v2 preset also ignores, in every body, the fields its \
             protocol fills per response (compare.preset_ignores = false compares them):\n\
             #   /id\n#   /model_name\n#   /model_version\n\
             # replayed to the shadow:\n\
             #   /v2/models/wine/infer -> http://127.0.0.1:8081/v2/models/wine-v2/infer\n\
             #     by shadow.model = \"wine-v2\" (Open Inference Protocol)\n\
             #   /v2/health/ready -> http://127.0.0.1:8081/v2/health/ready\n\
             #     (no rewrite applies)\n\
             #   *: not replayed: production request target `*` cannot be replayed to the shadow\n"
        );
        let tf = notes(&["--preset", "tfserving"]);
        assert_eq!(
            tf,
            "# compare: the tfserving preset ignores no fields of its own\n"
        );
    }

    #[test]
    fn lists_the_grpc_methods_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let proto = dir.path().join("s.proto");
        std::fs::write(
            &proto,
            "syntax = \"proto3\";\npackage a;\nservice S { rpc M(R) returns (R); \
             rpc N(R) returns (stream R); }\nmessage R {}\n",
        )
        .unwrap();
        let text = notes(&[
            "--preset",
            "tfserving-grpc",
            "--proto",
            proto.to_str().unwrap(),
        ]);
        assert_eq!(
            text,
            "# compare: the tfserving-grpc preset also ignores, in every body, the fields its \
             protocol fills per response (compare.preset_ignores = false compares them):\n\
             #   /model_spec\n\
             # compare: the tfserving-grpc preset decodes these gRPC methods into its REST shape:\n\
             #   /tensorflow.serving.PredictionService/Predict\n\
             # compare: compare.proto decodes these gRPC methods (others are read raw, by field \
             number):\n#   /a.S/M\n#   /a.S/N\n"
        );
    }
}
