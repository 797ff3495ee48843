//! Arbitrary text as shadowd's config file → `RawConfig::from_toml` then `Config::try_from`,
//! the two steps `shadowd run` and `check-config` load a file with. Checks that nothing panics,
//! that a rejected file names at least one problem, each located inside the text, that the
//! error prints, and that an accepted config printed as TOML (what `check-config` shows) reads
//! back as the same config.
//!
//! `compare.proto` names files that are read while the config is checked: texts naming one
//! outside the working directory are skipped, so the fuzzer never reads from a device or
//! `/proc` (a blocking read is the operator's choice of file, not hostile input).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shadow_daemon::config::{Config, ConfigError, Location, RawConfig};
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    // shadowd reads the file with `read_to_string`: anything else is a read error.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let checked = RawConfig::from_toml(text, path).and_then(|raw| {
        let outside = raw
            .compare
            .proto
            .values()
            .chain(raw.compare.proto_include.values())
            .any(|p| !p.components().all(|c| matches!(c, Component::Normal(_))));
        if outside {
            return Ok(None);
        }
        Config::try_from(raw).map(Some)
    });
    match checked {
        Ok(None) => {}
        Ok(Some(config)) => {
            let printed = config.to_toml().expect("a checked config prints as TOML");
            match Config::from_toml(&printed, Path::new("printed.toml")) {
                Ok(again) => assert_eq!(again, config, "printed as:\n{printed}"),
                Err(e) => panic!("the printed config is rejected: {e}\nprinted as:\n{printed}"),
            }
        }
        Err(ConfigError::Read { .. }) => panic!("nothing was read from a file"),
        Err(e) => {
            assert!(!e.problems().is_empty(), "a rejection names its problems");
            let lines = text.lines().count().max(1);
            for problem in e.problems() {
                if let Location::File { line, column, .. } = problem.location {
                    assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}");
                    assert!(column >= 1);
                }
            }
            assert!(!e.to_string().is_empty());
        }
    }
});
