//! Against a real S3 emulator behind a proxy that answers some requests 503 and cuts some response
//! bodies off halfway: every backup and restore still completes with exactly the right bytes.

mod support;

use chrono::Utc;
use heirloom_backup::pipeline::verify::{verify, Subset};
use heirloom_backup::pipeline::Concurrency;
use heirloom_backup::repo::format::InitParams;
use heirloom_backup::repo::Repository;
use support::repo::{backup, restore, sha, test_key};
use support::{mixed_data, Location};

#[tokio::test(flavor = "multi_thread")]
async fn failed_requests_are_retried_and_broken_reads_resumed() {
    let moto = support::start_moto();
    let proxy = support::start_flaky_proxy(moto.port, 5, 2);
    let mut loc: Location = support::s3_location(&moto, "flaky");
    for (k, v) in &mut loc.options {
        if k == "endpoint" {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    let params = InitParams {
        chunk_min: 64 * 1024,
        chunk_avg: 256 * 1024,
        chunk_max: 1024 * 1024,
        pack_size: 1024 * 1024,
        compression_level: 3,
    };
    Repository::init(loc.open(), &test_key(), &params, Utc::now())
        .await
        .unwrap();
    let repo = Repository::open(loc.open(), &test_key()).await.unwrap();

    let data = mixed_data(24 * 1024 * 1024, 9);
    let summary = backup(&repo, &data).await.unwrap();
    let back = restore(&repo, &summary.id)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(sha(&back), sha(&data));
    let report = verify(&repo, Some(Subset::All), Concurrency::default())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    let stats = support::proxy_stats(&proxy);
    assert!(stats["failed"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats["cut"].as_u64().unwrap() >= 5, "{stats}");
}
