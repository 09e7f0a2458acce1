//! The Helm chart, rendered by Helm's own engine (PyPI helm-python-sdk) for each values file under
//! `charts/heirloom-backup/ci/`: lint clean, every manifest valid against the Kubernetes 1.30
//! schemas and the Prometheus Operator's, bad values refused by values.schema.json (all of that
//! in tests/support/chart_check.py); here, the rendered config files load, every command the
//! chart's CronJobs, Deployments and Jobs run is accepted by the binary against a real repository,
//! and every alert's expression is valid PromQL (the promql-parser crate).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn tools() -> (PathBuf, PathBuf) {
    let python = std::env::var_os("HEIRLOOM_TEST_PYTHON").map(PathBuf::from);
    let npm = std::env::var_os("HEIRLOOM_TEST_NPM").map(PathBuf::from);
    match (python, npm) {
        (Some(p), Some(n)) if p.exists() && n.exists() => (p, n),
        _ => panic!(
            "the chart checks need helm-python-sdk, kubernetes-validate and \
             @kubernetes-models/prometheus-operator: run the tests with `scripts/test`, or \
             `eval \"$(scripts/test-tools)\"` first"
        ),
    }
}

#[test]
fn the_chart_renders_valid_manifests_whose_commands_the_binary_accepts() {
    let (python, npm) = tools();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(&python)
        .arg(root.join("tests/support/chart_check.py"))
        .arg(root.join("charts/heirloom-backup"))
        .arg(out.path())
        .arg(npm.join("node_modules"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "chart checks failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let found: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("found.json")).unwrap())
            .unwrap();
    assert_eq!(found["refused"], 16);
    // Both modes were rendered: CronJobs in one, the agent's Deployment in another.
    let kinds = found["kinds"].to_string();
    for kind in [
        "CronJob",
        "Deployment",
        "Job",
        "NetworkPolicy",
        "ServiceAccount",
        "Service",
    ] {
        assert!(
            kinds.contains(&format!("\"{kind}\"")),
            "{kind} not rendered: {kinds}"
        );
    }

    // Every alert's expression parses as PromQL, and names a metric the agent serves.
    let exprs = found["exprs"].as_array().unwrap();
    assert!(exprs.len() >= 7, "{exprs:?}");
    for e in exprs {
        let expr = e["expr"].as_str().unwrap();
        if let Err(why) = promql_parser::parser::parse(expr) {
            panic!("{}: {expr}: {why}", e["alert"]);
        }
        assert!(expr.contains("heirloom_"), "{expr}");
    }

    // The config the chart renders loads, here where none of the variables its pods get from
    // Secrets is set (a pod gets only its own sources'), and each command runs below with
    // exactly the variables its container is given.
    // Each values file's ConfigMap, written out as its pod mounts it (heirloom.yaml and the
    // policy files beside it), with the repository made a real local one.
    let world = tempfile::tempdir().unwrap();
    let repo = world.path().join("repo");
    let key = world.path().join("key");
    support::write_key(&key, &[7u8; 32]);
    let configs = found["configs"].as_array().unwrap();
    let mut config_of = std::collections::BTreeMap::new();
    for c in configs {
        let values = c["values"].as_str().unwrap();
        let dir = world.path().join(values);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in c["files"].as_object().unwrap() {
            std::fs::write(dir.join(file), text.as_str().unwrap()).unwrap();
        }
        let path = dir.join("heirloom.yaml");
        if let Err(e) = heirloom_backup::config::Config::load(&path) {
            panic!("{values}: the rendered config does not load: {e}");
        }
        // The store's options (region, ...) are for the cloud store, not the local one.
        let mut local = Vec::new();
        let mut in_options = false;
        for l in std::fs::read_to_string(&path).unwrap().lines() {
            let t = l.trim_start();
            let indent = l.len() - t.len();
            if in_options && indent > 2 {
                continue;
            }
            in_options = l == "  options:";
            if in_options {
                continue;
            }
            local.push(
                if l.starts_with("  url:")
                    && (t.starts_with("url: \"s3://") || t.starts_with("url: \"gs://"))
                {
                    format!("  url: {:?}", repo.display().to_string())
                } else if t.starts_with("key_file:") {
                    format!("  key_file: {:?}", key.display().to_string())
                } else {
                    l.to_owned()
                },
            );
        }
        let local = local.join("\n");
        std::fs::write(&path, local).unwrap();
        config_of.insert(values.to_owned(), path);
    }

    // Each command runs against a real repository: the command line and the config are accepted
    // (a database that is not there is a failure of the run, not of its arguments).
    let bin = assert_cmd::cargo::cargo_bin("heirloom-backup");
    let init = Command::new(&bin)
        .args(["init", "--repo"])
        .arg(&repo)
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut ran = 0;
    for command in found["commands"].as_array().unwrap() {
        let values = command["values"].as_str().unwrap();
        let config = &config_of[values];
        let mut args: Vec<String> = command["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let is_agent = args[0] == "agent";
        if is_agent {
            let at = args.iter().position(|a| a == "--listen").unwrap();
            args[at + 1] = format!("127.0.0.1:{}", support::free_port());
        }
        let mut child = Command::new(&bin);
        for var in command["env"].as_array().unwrap() {
            let var = var.as_str().unwrap();
            if !var.starts_with("HEIRLOOM_") && var != "TMPDIR" {
                child.env(var, "s3cret@/x");
            }
        }
        let mut child = child
            .env("HEIRLOOM_CONFIG", config)
            .env("HEIRLOOM_LOG_FORMAT", "json")
            .env("HEIRLOOM_ALLOW_INSECURE_KEY_FILE", "1")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if is_agent {
            std::thread::sleep(Duration::from_secs(2));
            assert!(
                child.try_wait().unwrap().is_none(),
                "{}: the agent exited: {:?}",
                command["object"],
                child.wait_with_output().unwrap()
            );
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        if is_agent {
            assert_eq!(code, Some(0), "{}: {args:?}: {stderr}", command["object"]);
        } else if args[0] == "drill" {
            // An empty repository has no window to draw an instant from: said as such.
            assert!(
                code != Some(2) || stderr.contains("no point-in-time window"),
                "{}: {args:?}: {stderr}",
                command["object"]
            );
        } else {
            assert_ne!(code, Some(2), "{}: {args:?}: {stderr}", command["object"]);
        }
        ran += 1;
    }
    assert!(ran >= 10, "{ran} commands");
}
