//! S3 server-side encryption with KMS keys (SSE-KMS) as a second layer under heirloom-backup's
//! own encryption, on moto: with the store options `aws_server_side_encryption: aws:kms` and
//! `aws_sse_kms_key_id`, every object the repository writes (config, keys, packs, indexes,
//! manifests) is stored encrypted under that KMS key, as S3 reports it,
//! and the backups restore byte for byte.

mod support;

use std::process::Command;

use support::{mixed_data, python_output, sha256, start_moto, write_key, BUCKET};

const S3: &str = "import sys, json, boto3\n\
    kw = dict(endpoint_url=sys.argv[1], region_name='us-east-1', \
    aws_access_key_id='test', aws_secret_access_key='test')\n";

#[test]
fn every_object_is_stored_under_the_kms_key_and_backups_restore() {
    let moto = start_moto();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let key_id = python_output(
        &format!("{S3}print(boto3.client('kms', **kw).create_key()['KeyMetadata']['Arn'])"),
        &[&endpoint],
    )
    .trim()
    .to_owned();
    assert!(key_id.starts_with("arn:aws:kms:"), "{key_id}");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    write_key(&key, &[3u8; 32]);
    let config = dir.path().join("heirloom.yaml");
    std::fs::write(
        &config,
        format!(
            "repository:\n  url: s3://{BUCKET}/kms\n  key_file: {}\n  options:\n    endpoint: {endpoint}\n    region: us-east-1\n    allow_http: true\n    access_key_id: test\n    secret_access_key: test\n    aws_server_side_encryption: aws:kms\n    aws_sse_kms_key_id: {key_id}\n",
            key.display()
        ),
    )
    .unwrap();
    let cli = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_heirloom-backup"));
        cmd.arg("--config").arg(&config).arg("-q").args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(data) = stdin {
                input.write_all(data).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    cli(&["init"], None);
    // Several packs' worth.
    let data = mixed_data(24 << 20, 11);
    let summary = cli(
        &["backup", "--stdin", "--source", "app", "--json"],
        Some(&data),
    );
    let id: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    let id = id["id"].as_str().unwrap().to_owned();
    assert_eq!(sha256(&cli(&["cat", &id], None)), sha256(&data));
    cli(&["verify", "--read-data"], None);

    let report = python_output(
        &format!(
            "{S3}s3 = boto3.client('s3', **kw)\n\
             out = []\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[2], Prefix='kms/'):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       h = s3.head_object(Bucket=sys.argv[2], Key=o['Key'])\n\
             \x20       out.append([o['Key'], o['Size'], h.get('ServerSideEncryption'), h.get('SSEKMSKeyId')])\n\
             print(json.dumps(out))"
        ),
        &[&endpoint, BUCKET],
    );
    let objects: Vec<(String, u64, Option<String>, Option<String>)> =
        serde_json::from_str(&report).unwrap();
    let kinds: std::collections::BTreeSet<&str> = objects
        .iter()
        .map(|(k, ..)| k.trim_start_matches("kms/").split('/').next().unwrap())
        .collect();
    for kind in [
        "heirloom.json",
        "keys",
        "data",
        "index",
        "backups",
        "verifies",
    ] {
        assert!(
            kinds.iter().any(|k| k.starts_with(kind)),
            "no {kind} object among {kinds:?}"
        );
    }
    assert!(
        objects
            .iter()
            .any(|(key, size, ..)| key.starts_with("kms/data/") && *size > 1 << 20),
        "no pack: {objects:?}"
    );
    for (object, _, sse, kms) in &objects {
        assert_eq!(sse.as_deref(), Some("aws:kms"), "{object}");
        assert!(
            kms.as_deref()
                .is_some_and(|k| k.contains(key_id.rsplit('/').next().unwrap())),
            "{object} under {kms:?}, not {key_id}"
        );
    }
}
