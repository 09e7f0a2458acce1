//! TLS to PostgreSQL: a server with a certificate from a test CA, which accepts TCP connections
//! only over TLS (`hostssl` in its pg_hba.conf). A logical backup with `sslmode=verify-full`
//! (this program's own session and pg_dump's) restores the data; the same backup is refused with
//! another CA's certificate, with `verify-full` to a name the certificate does not hold (where
//! `verify-ca` succeeds), and with `sslmode=disable`.

mod support;

use support::postgres::{chown_postgres, PgCluster, PgWorld};
use support::tls::make_ca;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_backs_up_over_tls_and_a_wrong_ca_or_name_is_refused() {
    let world = PgWorld::new();
    let certs = world.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_ca(&certs, "good", true);
    make_ca(&certs, "other", false);
    // The server's key must belong to the server's user and be private.
    chown_postgres(&certs);
    for f in ["server.key", "server.pem"] {
        chown_postgres(&certs.join(f));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        certs.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut source = PgCluster::init(
        world.path(),
        "tls",
        &format!(
            "wal_level = replica\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            certs.join("server.pem").display(),
            certs.join("server.key").display()
        ),
    );
    // TCP only over TLS; the test's own client uses the socket.
    std::fs::write(
        source.data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )
    .unwrap();
    let mut target = world.plain_cluster("target");
    source.start();
    target.start();
    let socket = format!(
        "host={} port={} user=postgres dbname=postgres",
        world.path().join("run").display(),
        source.port
    );
    let (client, conn) = tokio_postgres::connect(&socket, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE markers (id int PRIMARY KEY); INSERT INTO markers SELECT generate_series(1, 500)",
        )
        .await
        .unwrap();

    let url = |host: &str, query: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?{query}",
            source.port
        )
    };
    let good = certs.join("good-ca.pem");
    let other = certs.join("other-ca.pem");
    let configure = |url: String| {
        world.write_config(&format!(
            "  pg: {{ kind: postgres, url: \"{url}\", mode: logical }}\n"
        ))
    };

    // Another CA: refused, naming the certificate.
    configure(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    ));
    let refused = world.cli(&["backup", "pg"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr());
    assert!(
        refused.stderr().to_lowercase().contains("certificate"),
        "{}",
        refused.stderr()
    );
    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca accepts.
    configure(url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", good.display()),
    ));
    let wrong_name = world.cli(&["backup", "pg"]);
    assert_eq!(wrong_name.code(), Some(1), "{}", wrong_name.stderr());
    assert!(
        wrong_name.stderr().to_lowercase().contains("certificate"),
        "{}",
        wrong_name.stderr()
    );
    configure(url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", good.display()),
    ));
    world.cli(&["backup", "pg"]).success();
    // Without TLS the server turns the session away.
    configure(url("127.0.0.1", "sslmode=disable"));
    let plain = world.cli(&["backup", "pg"]);
    assert_eq!(plain.code(), Some(1), "{}", plain.stderr());
    assert!(plain.stderr().contains("pg_hba.conf"), "{}", plain.stderr());

    // verify-full to the name the certificate holds: backed up, and the rows restore.
    client
        .batch_execute("INSERT INTO markers VALUES (501)")
        .await
        .unwrap();
    configure(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", good.display()),
    ));
    world.cli(&["backup", "pg"]).success();
    world
        .cli(&["restore", "pg", "--to", &target.url(), "--latest"])
        .success();
    let restored = target
        .client()
        .await
        .query_one("SELECT count(*), sum(id) FROM markers", &[])
        .await
        .unwrap();
    let (count, sum): (i64, i64) = (restored.get(0), restored.get(1));
    assert_eq!((count, sum), (501, 501 * 502 / 2));
    target.stop();
    source.stop();
}
