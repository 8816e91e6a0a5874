//! The OpenAPI document against the server it describes: Schemathesis fuzzes `thingtotal up`
//! from the document it serves, with every check and the stateful phase, and any finding fails
//! the test; and every 405 names the methods its path takes.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use thingtotal_testkit::{stream, Process, ADMIN_TOKEN as ADMIN};

use crate::up::start_up_env;

/// The fuzzer's seed, unless `THINGTOTAL_FUZZ_SEED` names another to explore with, and its
/// examples per operation and phase: enough to reach every rule the document states, few
/// enough for about a minute and a half on two cores.
const SEED: &str = "1";
const EXAMPLES: &str = "50";

/// `up` on a directory of its own, with a public stream of eight fields (so that every field
/// number the document allows is one of its fields) and a private one. Returns the public
/// stream's id and write key.
async fn up_with_streams(dir: &Path) -> (Process, u64, String) {
    let up = start_up_env(dir, &["--admin-token", ADMIN], &[]).await;
    let names: Vec<String> = (1..=8).map(|i| format!("f{i}")).collect();
    let properties: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), json!({"type": "number"})))
        .collect();
    let (id, write_key, _) = stream(
        &up,
        json!({"name": "fuzzed", "public": true, "fields": names,
               "schema": {"type": "object", "properties": properties}}),
    )
    .await;
    stream(
        &up,
        json!({"name": "private", "schema": {"type": "object",
               "properties": {"t": {"type": "number"}}}}),
    )
    .await;
    (up, id, write_key)
}

/// The Python that runs Schemathesis: `THINGTOTAL_PYTHON`, which must have it.
fn schemathesis_python() -> String {
    let python = std::env::var("THINGTOTAL_PYTHON")
        .expect("THINGTOTAL_PYTHON names a Python with schemathesis: scripts/test sets it up");
    let found = Command::new(&python)
        .args(["-c", "import schemathesis"])
        .output()
        .unwrap_or_else(|e| panic!("THINGTOTAL_PYTHON={python} does not run: {e}"));
    assert!(
        found.status.success(),
        "THINGTOTAL_PYTHON={python} has no schemathesis: scripts/test installs it in its venv \
         (or: {python} -m pip install 'schemathesis>=4.32')\n{}",
        String::from_utf8_lossy(&found.stderr)
    );
    python
}

/// Runs Schemathesis with `config` against `up` with every check and phase, the admin token
/// and `args`; fails with its report on any finding, or if it left an operation it selected
/// untested. Returns how many it tested.
async fn fuzz(python: &str, up: &Process, config: &Path, write_key: &str, args: &[&str]) -> usize {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "schemathesis.cli", "--config-file"])
        .arg(config)
        .args(["run", &format!("{}/api/openapi.json", up.base)])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args([
            "--seed",
            &std::env::var("THINGTOTAL_FUZZ_SEED").unwrap_or(SEED.into()),
        ])
        .args(["--max-examples", EXAMPLES, "--workers", "1"])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--output-sanitize",
            "false",
        ])
        .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
        .args(args)
        .env("THINGTOTAL_FUZZ_WRITE_KEY", write_key)
        // Schemathesis writes its reports and caches where it runs.
        .current_dir(config.parent().unwrap());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run schemathesis"))
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the fuzzer found something:\n{report}"
    );
    println!("{report}");
    let counted = |label: &str| {
        let line = report.lines().find_map(|l| l.trim().strip_prefix(label));
        let numbers = line.map(|n| n.split('/').map(|n| n.trim().parse::<usize>().ok()));
        numbers.map(Iterator::collect::<Vec<_>>)
    };
    let selected = counted("Selected:").and_then(|n| n.first().copied().flatten());
    let tested = counted("Tested:").and_then(|n| n.first().copied().flatten());
    assert!(
        tested.is_some() && tested == selected,
        "operations were left untested:\n{report}"
    );
    tested.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fuzzer_finds_nothing_the_document_does_not_say() {
    let python = schemathesis_python();
    let dir = tempfile::tempdir().unwrap();
    let (up, id, write_key) = up_with_streams(dir.path()).await;
    let entries: Vec<Value> = (0..20)
        .map(|i| json!({"f1": i, "f2": i * 2, "f8": -i}))
        .collect();
    crate::up::post(&up, id, &write_key, json!(entries)).await;
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/fuzz.toml");
    let config = dir.path().join("fuzz.toml");
    // A drawn id almost never names a stream, so the reads and writes of one stream are fuzzed
    // on the public stream first: with valid data only, as an invalid id would be replaced by
    // that one too, and without the operations that change or delete it.
    let mut text = std::fs::read_to_string(&shared).unwrap();
    text.push_str(&format!(
        "\n[[operations]]\ninclude-path-regex = '\\{{id\\}}'\nparameters = {{ \"path.id\" = {id} }}\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut one_stream = vec!["--mode", "positive", "--include-path-regex", r"\{id\}"];
    for changes in ["update", "delete", "rotate"] {
        one_stream.extend(["--exclude-operation-id", changes]);
    }
    fuzz(&python, &up, &config, &write_key, &one_stream).await;
    // Then every operation but the document's own, with drawn ids and invalid data too.
    std::fs::copy(&shared, &config).unwrap();
    let tested = fuzz(&python, &up, &config, &write_key, &[]).await;
    assert_eq!(tested, doc_operations(&up).await - 1);
}

/// The document `up` serves.
async fn document(up: &Process) -> Value {
    let r = reqwest::get(format!("{}/api/openapi.json", up.base)).await;
    r.unwrap().json().await.unwrap()
}

/// How many operations the document of `up` has.
async fn doc_operations(up: &Process) -> usize {
    let doc = document(up).await;
    let items = doc["paths"].as_object().unwrap().values();
    items.map(|item| item.as_object().unwrap().len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_405_names_the_methods_its_path_takes() {
    let dir = tempfile::tempdir().unwrap();
    let (up, id, _) = up_with_streams(dir.path()).await;
    let http = Client::new();
    let doc = document(&up).await;
    let allow = |r: &reqwest::Response| {
        r.headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // Every documented path, with a method none takes.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        let url = format!(
            "{}{}",
            up.base,
            path.replace("{id}", &id.to_string()).replace("{n}", "1")
        );
        for method in [Method::PATCH, Method::OPTIONS] {
            let r = http.request(method.clone(), &url).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(allow(&r), Some(documented.join(", ")), "{method} {path}");
        }
    }
    // A method another route of the path takes, and a ThingSpeak read's other spelling.
    for (method, path, allowed) in [
        (
            Method::GET,
            format!("/channels/{id}/bulk_update.json"),
            "POST",
        ),
        (Method::POST, format!("/channels/{id}/feed.json"), "GET"),
        (Method::DELETE, "/health".to_owned(), "GET"),
    ] {
        let r = http
            .request(method.clone(), format!("{}{path}", up.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(allow(&r).as_deref(), Some(allowed), "{method} {path}");
    }
    // A bulk update of a channel whose id is not a number reaches no route.
    let r = http
        .post(format!("{}/channels/abc/bulk_update.json", up.base))
        .json(&json!({"write_api_key": "k", "updates": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
