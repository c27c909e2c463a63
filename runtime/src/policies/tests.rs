//! The catalog: loading, routing, rescans.

use super::*;

fn sim(name: &str, version: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"{version}\"\n[providers]\nstt = [\"sim\"]\nllm = [\"sim\"]\ntts = [\"sim\"]\n"
    )
}

fn folder(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hark-policies-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn load(dir: &Path, routing: Routing) -> Policies {
    Policies::load(
        Source::Folder(dir.to_owned()),
        routing,
        ProviderEndpoints::default(),
        Keys::default(),
    )
    .unwrap()
    .0
}

fn routes(pairs: &[(&str, &str)]) -> Routing {
    Routing {
        default: Some("support".into()),
        numbers: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[test]
fn every_valid_file_is_live_and_calls_are_routed_by_number() {
    let dir = folder(&[
        ("support.toml", &sim("support", "1")),
        ("sales.toml", &sim("sales", "3")),
        ("broken.toml", "[vad]\nonset_ms = \"fast\"\n"),
    ]);
    let p = load(&dir, routes(&[("+91", "sales")]));
    let names: Vec<String> = p.catalog().live().map(|l| l.policy.name.clone()).collect();
    assert_eq!(names, ["sales", "support"]);
    assert_eq!(p.route("+919812345678", None).policy.name, "sales");
    assert_eq!(p.route("+14155550100", None).policy.name, "support");
    // An outbound call names its policy; a name that is not live gets the default.
    assert_eq!(p.route("+14155550100", Some("sales")).policy.name, "sales");
    assert_eq!(
        p.route("+919812345678", Some("gone")).policy.name,
        "support"
    );
    let catalog = p.catalog();
    let broken = &catalog.files()[&dir.join("broken.toml")];
    assert!(broken.serving.is_none());
    assert!(broken.errors[0].contains("onset_ms"), "{:?}", broken.errors);
}

#[test]
fn a_change_applies_to_new_calls_and_an_invalid_one_keeps_the_old_version() {
    let dir = folder(&[
        ("support.toml", &sim("support", "1")),
        ("sales.toml", &sim("sales", "1")),
    ]);
    let p = load(&dir, routes(&[("+91", "sales")]));
    let during = p.route("+919812345678", None);
    std::fs::write(dir.join("sales.toml"), sim("sales", "2")).unwrap();
    assert_eq!(
        p.rescan(),
        [Change::Applied {
            name: "sales".into(),
            version: "2".into()
        }]
    );
    assert_eq!(p.route("+919812345678", None).policy.version, "2");
    // A call in progress holds the version it started with.
    assert_eq!(during.policy.version, "1");
    // A token minted for version 1 still gets it; an unknown version gets the current one.
    assert_eq!(p.resolve("sales", "1").policy.version, "1");
    assert_eq!(p.resolve("sales", "0").policy.version, "2");
    // Unchanged files are not read as changes.
    assert!(p.rescan().is_empty());
    std::fs::write(
        dir.join("sales.toml"),
        sim("sales", "3") + "[vad]\nendpointing_ms = 5\n",
    )
    .unwrap();
    let changes = p.rescan();
    assert!(
        matches!(&changes[..], [Change::Invalid { name, errors: 1 }] if name == "sales"),
        "{changes:?}"
    );
    assert_eq!(p.route("+919812345678", None).policy.version, "2");
    let catalog = p.catalog();
    let state = &catalog.files()[&dir.join("sales.toml")];
    assert_eq!(state.version, "2");
    assert!(
        state.errors[0].contains("vad.endpointing_ms") && state.errors[0].contains("line 8"),
        "{:?}",
        state.errors
    );
}

#[test]
fn a_removed_file_sends_its_calls_to_the_default_which_is_never_removed() {
    let dir = folder(&[
        ("support.toml", &sim("support", "1")),
        ("sales.toml", &sim("sales", "1")),
    ]);
    let p = load(&dir, routes(&[("+91", "sales")]));
    std::fs::remove_file(dir.join("sales.toml")).unwrap();
    assert_eq!(
        p.rescan(),
        [Change::Removed {
            name: "sales".into()
        }]
    );
    assert_eq!(p.route("+919812345678", None).policy.name, "support");
    // A stream admitted just before still gets what its webhook chose.
    assert_eq!(p.resolve("sales", "1").policy.name, "sales");
    std::fs::remove_file(dir.join("support.toml")).unwrap();
    assert_eq!(
        p.rescan(),
        [Change::Removed {
            name: "support".into()
        }]
    );
    assert_eq!(p.route("+14155550100", None).policy.name, "support");
}

#[test]
fn two_files_may_not_claim_one_name() {
    let dir = folder(&[
        ("a.toml", &sim("support", "1")),
        ("b.toml", &sim("support", "2")),
    ]);
    let p = load(&dir, routes(&[]));
    assert_eq!(p.default_live().policy.version, "1");
    let catalog = p.catalog();
    let b = &catalog.files()[&dir.join("b.toml")];
    assert!(
        b.errors[0].contains("already the name of"),
        "{:?}",
        b.errors
    );
}

#[test]
fn without_a_default_file_the_built_in_policy_is_the_default() {
    let dir = folder(&[("sales.toml", &sim("sales", "1"))]);
    let p = load(&dir, Routing::default());
    assert_eq!(p.default_live().policy.name, "default");
    assert!(p.default_live().file.is_none());
    assert_eq!(p.route("+1", None).policy.name, "default");
}

#[test]
fn a_default_that_cannot_load_stops_the_start_with_its_errors() {
    let dir = folder(&[("support.toml", "name = \"support\"\n[vad]\nonset_ms = 0\n")]);
    let err = Policies::load(
        Source::Folder(dir),
        routes(&[]),
        ProviderEndpoints::default(),
        Keys::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("support") && err.contains("vad.onset_ms"),
        "{err}"
    );
}

#[test]
fn a_file_emptied_mid_write_keeps_its_policy() {
    let dir = folder(&[
        ("support.toml", &sim("support", "1")),
        ("sales.toml", &sim("sales", "2")),
    ]);
    let p = load(&dir, routes(&[("+91", "sales")]));
    std::fs::write(dir.join("sales.toml"), "").unwrap();
    assert!(p.rescan().is_empty());
    assert_eq!(p.route("+919812345678", None).policy.version, "2");
    std::fs::write(dir.join("sales.toml"), sim("sales", "3")).unwrap();
    assert_eq!(p.rescan().len(), 1);
    assert_eq!(p.route("+919812345678", None).policy.version, "3");
}
