//! The layers of `src/`, kept: a module imports only from layers strictly below its own, so no
//! import goes up and the siblings of one layer stay independent of each other. [`LAYERS`] is
//! the table ARCHITECTURE.md draws ("Layers of the source tree"); a new top-level module fails
//! this test until it is placed in it.
//!
//! What is read: every `crate::<module>` path in the code of `src/**/*.rs`, imports and paths
//! written in place alike (grouped `crate::{a::x, b::y}` too), and `super::` chains that climb
//! out of a top-level module; comments are skipped. Inside `actors/`, one layer, the pure state of
//! each actor is held to one more rule: it names no other actor's shell. `src/main.rs` is the binary, which reaches the
//! library as `weft::`, and `src/lib.rs` only declares the modules.

use std::fs;
use std::path::{Path, PathBuf};

/// Lowest first. A module may import from the layers below its own, never from a sibling of its
/// own layer nor from above.
const LAYERS: &[&[&str]] = &[
    // The vocabulary of peers; leaves that import nothing of the crate.
    &["topology", "daemon", "sim_cases"],
    // Byte formats, the pure IPAM core, the persisted state, the status snapshot.
    &["wire", "ipam", "store", "snapshot"],
    // Our peer name, the mesh's shared vocabulary, the metrics declarations.
    &["identity", "mesh", "metrics"],
    // The kernel's side, the MAC table and the sleeve's hot path.
    &["dataplane"],
    // The control plane.
    &["actors"],
    // The router's Kubernetes side, and its HTTP API.
    &["kubernetes", "api"],
    // `weft npc`.
    &["npc"],
    // The CLI, and `weft router`'s composition root.
    &["cli", "router"],
];

/// Imports that go up and are known, as (file, module it imports, why): each is a debt
/// ARCHITECTURE.md lists. One that is paid must leave this list too, so the list stays true.
const KNOWN_DEBTS: &[(&str, &str, &str)] = &[];

/// An import of `to` by `file` that the table forbids.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The module path of a source file, from its path under `src/` (`a/b/mod.rs` is `a::b`).
fn module_path(relative: &str) -> Vec<String> {
    let trimmed = relative.strip_suffix(".rs").unwrap_or(relative);
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts
}

/// `line` without its `//` comment (a `//` inside a string literal does not start one).
fn strip_line_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if in_string => index += 1,
            b'"' => in_string = !in_string,
            b'\'' if !in_string => {
                // A char literal ('"' or '\'') must not open a string; a lifetime has no
                // closing quote two or three bytes on.
                if bytes.get(index + 1) == Some(&b'\\') && bytes.get(index + 3) == Some(&b'\'') {
                    index += 3;
                } else if bytes.get(index + 2) == Some(&b'\'') {
                    index += 2;
                }
            }
            b'/' if !in_string && bytes.get(index + 1) == Some(&b'/') => return &line[..index],
            _ => {}
        }
        index += 1;
    }
    line
}

fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

fn ident_at(code: &str, start: usize) -> &str {
    let end = code[start..]
        .bytes()
        .position(|byte| !is_ident_byte(byte))
        .map_or(code.len(), |offset| start + offset);
    &code[start..end]
}

/// The first segments of the paths that `code[start..]` begins: one for `name::...`, each
/// member's for a group `{a::x, b::{y, z}}`.
fn first_segments(code: &str, start: usize) -> Vec<String> {
    if !code[start..].starts_with('{') {
        return vec![ident_at(code, start).to_string()];
    }
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut expect_segment = false;
    for (offset, byte) in code[start..].bytes().enumerate() {
        match byte {
            b'{' => {
                depth += 1;
                expect_segment = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_segment = true,
            byte if expect_segment && is_ident_byte(byte) => {
                segments.push(ident_at(code, start + offset).to_string());
                expect_segment = false;
            }
            _ => {}
        }
    }
    segments
}

/// The top-level modules one line of code names: after `crate::`, and after a `super::` chain
/// long enough to climb from `module` to the crate root.
fn named_modules(code: &str, module: &[String]) -> Vec<String> {
    let bytes = code.as_bytes();
    let starts_path =
        |at: usize| at == 0 || !(is_ident_byte(bytes[at - 1]) || bytes[at - 1] == b':');
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        // `$crate::` (in a macro) is the crate as well.
        if at == 0 || !is_ident_byte(bytes[at - 1]) {
            named.extend(first_segments(code, at + "crate::".len()));
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !starts_path(at) {
            continue;
        }
        let mut end = at;
        let mut climbs = 0;
        while code[end..].starts_with("super::") {
            end += "super::".len();
            climbs += 1;
        }
        // Counted from the file's module; an inline `mod` inside the file adds one level this
        // does not see, which can only make a chain look longer than it is.
        if climbs >= module.len() {
            named.extend(first_segments(code, end));
        }
    }
    named
}

/// The actor shells an actor's pure state (`src/actors/<actor>/state.rs` and `state/`) names.
/// Of another actor it may name only its `state`, and `overlay` (the `Overlay` enum the data-plane
/// actors share); never a shell, as gossip's state once took `LinkId` and `ClosingReason` from
/// the link actor and `discovery_ceiling` from the listener.
fn actor_shells_named(code: &str, module: &[String]) -> Vec<String> {
    let [top, actor, state, ..] = module else {
        return Vec::new();
    };
    if top != "actors" || state != "state" {
        return Vec::new();
    }
    let mut named = Vec::new();
    for (at, _) in code.match_indices("crate::actors::") {
        if at > 0 && is_ident_byte(code.as_bytes()[at - 1]) {
            continue;
        }
        let rest = &code[at + "crate::actors::".len()..];
        let other = ident_at(rest, 0);
        let inner = rest[other.len()..]
            .strip_prefix("::")
            .map_or("", |tail| ident_at(tail, 0));
        if !other.is_empty() && other != actor && other != "overlay" && inner != "state" {
            named.push(format!("actors::{other}"));
        }
    }
    named
}

/// Every forbidden import in one file's text; `relative` is its path under `src/`.
fn violations_in(relative: &str, text: &str) -> Vec<Violation> {
    let module = module_path(relative);
    let Some(from) = module.first() else {
        return Vec::new();
    };
    let Some(from_layer) = layer_of(from) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut in_block_comment = false;
    for (index, raw) in text.lines().enumerate() {
        let mut line = raw;
        if in_block_comment {
            match line.find("*/") {
                Some(end) => {
                    line = &line[end + 2..];
                    in_block_comment = false;
                }
                None => continue,
            }
        }
        let mut code = strip_line_comment(line).to_string();
        while let Some(start) = code.find("/*") {
            match code[start..].find("*/") {
                Some(end) => code.replace_range(start..start + end + 2, " "),
                None => {
                    code.truncate(start);
                    in_block_comment = true;
                }
            }
        }
        let up = named_modules(&code, &module)
            .into_iter()
            .filter(|to| layer_of(to).is_some_and(|to_layer| to != from && to_layer >= from_layer));
        for to in up.chain(actor_shells_named(&code, &module)) {
            found.push(Violation {
                file: format!("src/{relative}"),
                line: index + 1,
                from: module.join("::"),
                to,
            });
        }
    }
    found
}

fn source_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_from_its_own_layer_or_above() {
    let root = src();
    let mut files = Vec::new();
    source_files(&root, &mut files);
    files.sort();
    let mut found = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if relative == "main.rs" || relative == "lib.rs" {
            continue;
        }
        let text = fs::read_to_string(path).expect("read a source file");
        found.extend(violations_in(&relative, &text));
    }
    let (known, new): (Vec<&Violation>, Vec<&Violation>) = found.iter().partition(|v| {
        KNOWN_DEBTS
            .iter()
            .any(|(file, to, _)| v.file == *file && v.to == *to)
    });
    let report: Vec<String> = new
        .iter()
        .map(|v| format!("{}:{}: {} imports {}", v.file, v.line, v.from, v.to))
        .collect();
    assert!(
        report.is_empty(),
        "imports that go up or sideways (the table is LAYERS in tests/layering.rs):\n{}",
        report.join("\n")
    );
    for (file, to, why) in KNOWN_DEBTS {
        assert!(
            known.iter().any(|v| v.file == *file && v.to == *to),
            "{file} no longer imports {to} ({why}): take it out of KNOWN_DEBTS and ARCHITECTURE.md"
        );
    }
}

#[test]
fn every_top_level_module_is_in_the_table() {
    let mut modules: Vec<String> = fs::read_dir(src())
        .expect("read src")
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            if path.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs").map(str::to_string)
            }
        })
        .filter(|name| name != "main" && name != "lib")
        .collect();
    modules.sort();
    modules.dedup();
    let missing: Vec<&String> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(missing.is_empty(), "place these in LAYERS: {missing:?}");
    let stale: Vec<&&str> = LAYERS
        .iter()
        .flat_map(|layer| layer.iter())
        .filter(|m| !modules.iter().any(|name| name == *m))
        .collect();
    assert!(
        stale.is_empty(),
        "LAYERS names modules src/ lacks: {stale:?}"
    );
}

/// The scanner itself: it must see what the whole-tree test relies on it to see.
#[test]
fn the_scanner_catches_imports_up_and_sideways_and_skips_comments() {
    let caught = |relative: &str, text: &str| -> Vec<String> {
        violations_in(relative, text)
            .into_iter()
            .map(|v| v.to)
            .collect()
    };
    // Up, as an import, a grouped import, a path in place and a `super::` chain.
    assert_eq!(
        caught("topology/peers.rs", "use crate::router::run;\n"),
        ["router"]
    );
    assert_eq!(
        caught(
            "dataplane/sleeve/engine.rs",
            "use crate::{wire::Frame, actors::mac_learner::{x, y}};\n"
        ),
        ["actors"]
    );
    assert_eq!(
        caught(
            "npc/run.rs",
            "    () = crate::router::wait_for_shutdown_signal() => {}\n"
        ),
        ["router"]
    );
    assert_eq!(
        caught(
            "metrics/tests.rs",
            "use super::super::npc::model::Direction;\n"
        ),
        ["npc"]
    );
    // Sideways, to a sibling of the same layer.
    assert_eq!(
        caught(
            "kubernetes/actor.rs",
            "use crate::api::http::GetKubeStatus;\n"
        ),
        ["api"]
    );
    // An actor's pure state naming another actor's shell, not its state.
    assert_eq!(
        caught(
            "actors/gossip/state/discovery.rs",
            "use crate::actors::listener::discovery_ceiling;\n"
        ),
        ["actors::listener"]
    );
    let states = "use crate::actors::mac_learner::state::MacSnapshot;\n\
                  use crate::actors::overlay::Overlay;\nuse crate::actors::sleeve::heartbeat::X;\n";
    assert!(caught("actors/sleeve/state.rs", states).is_empty());
    // Down, within the module, or only in comments and strings: nothing.
    let fine = "use crate::topology::PeerName;\nuse crate::actors::gossip::Gossip;\n\
                // crate::router::run\n/// [`x`]: crate::cli::x\nlet s = \"// \"; /* crate::cli */\n\
                /*\ncrate::router\n*/\nuse super::state;\n";
    assert!(
        caught("api/http.rs", fine).is_empty(),
        "{:?}",
        caught("api/http.rs", fine)
    );
}
