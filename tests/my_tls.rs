//! TLS to MariaDB: a server with a certificate from a test CA for `localhost`, started with
//! `require_secure_transport`, so nothing reaches it over TCP without TLS. This program's own
//! sessions and MariaDB's client programs (`mariadb-dump` for the backup) follow the URL's
//! `ssl-mode`: `verify_identity` backs up and the rows restore; another CA, a name the certificate
//! does not hold and `disabled` are refused; a client certificate is presented when asked for;
//! and `preferred` falls back to a plain session only with a server that offers no TLS.

mod support;

use heirloom_backup::engine::mysql::server::MysqlUrl;
use mysql_async::prelude::Queryable;
use support::mysql::{MariaDb, MyWorld};
use support::tls::{make_ca, make_client};

/// Connects with this program's own session; returns the TLS version the server reports.
async fn session_tls(url: &str) -> Result<String, String> {
    let url = MysqlUrl::parse(url).map_err(|e| e.to_string())?;
    let mut conn = url.connect().await.map_err(|e| e.to_string())?;
    let row: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    Ok(row.map(|(_, v)| v).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_identity_backs_up_over_tls_and_a_wrong_ca_name_or_plain_session_is_refused() {
    let world = MyWorld::new();
    let certs = world.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_ca(&certs, "good", true);
    make_ca(&certs, "other", false);
    make_client(&certs, "good", "backup-agent");
    let file = |name: &str| certs.join(name).display().to_string();
    let tls_args = [
        format!("--ssl-cert={}", file("server.pem")),
        format!("--ssl-key={}", file("server.key")),
        format!("--ssl-ca={}", file("good-ca.pem")),
        "--require-secure-transport=ON".to_owned(),
    ];
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let source = MariaDb::start_with(world.path(), "tls", 1, true, &tls_args);
    let plain = MariaDb::start(world.path(), "plain", 2, true);
    // The test's own `mariadb` client uses TLS unchecked, as it does by default.
    source.sql(
        "CREATE DATABASE app; CREATE TABLE app.markers (id int PRIMARY KEY);
         INSERT INTO app.markers WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 500) SELECT n FROM s;
         CREATE USER agent@'%' REQUIRE SUBJECT '/CN=backup-agent';
         GRANT ALL ON *.* TO agent@'%';",
    );
    let url = |user: &str, host: &str, query: &str| {
        format!("mysql://{user}@{host}:{}/app?{query}", source.port)
    };
    let good = file("good-ca.pem");
    let other = file("other-ca.pem");

    // This program's own sessions.
    let tls = session_tls(&url(
        "root",
        "localhost",
        &format!("ssl-mode=verify_identity&ssl-ca={good}"),
    ))
    .await
    .unwrap();
    assert!(tls.starts_with("TLSv1."), "session TLS: {tls:?}");
    let err = session_tls(&url(
        "root",
        "localhost",
        &format!("ssl-mode=verify_identity&ssl-ca={other}"),
    ))
    .await
    .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // The certificate names localhost, not 127.0.0.1: refused, by verify_ca too (it fails closed,
    // saying why); verify_ca to localhost passes.
    let err = session_tls(&url(
        "root",
        "127.0.0.1",
        &format!("ssl-mode=verify_identity&ssl-ca={good}"),
    ))
    .await
    .unwrap_err();
    assert!(err.contains("not valid for name \"127.0.0.1\""), "{err}");
    let err = session_tls(&url(
        "root",
        "127.0.0.1",
        &format!("ssl-mode=verify_ca&ssl-ca={good}"),
    ))
    .await
    .unwrap_err();
    assert!(
        err.contains("verify_ca checks the certificate's name too"),
        "{err}"
    );
    session_tls(&url(
        "root",
        "localhost",
        &format!("ssl-mode=verify_ca&ssl-ca={good}"),
    ))
    .await
    .unwrap();
    // A CA file given alone means verify_ca.
    let err = session_tls(&url("root", "localhost", &format!("ssl-ca={other}")))
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Without TLS the server turns the session away.
    assert!(session_tls(&url("root", "127.0.0.1", "ssl-mode=disabled"))
        .await
        .is_err());
    // preferred (the default): TLS where the server offers it, plain where it offers none;
    // required insists.
    let tls = session_tls(&url("root", "127.0.0.1", "")).await.unwrap();
    assert!(
        tls.starts_with("TLSv1."),
        "preferred to a TLS server: {tls:?}"
    );
    let plain_url = |query: &str| format!("mysql://root@127.0.0.1:{}/?{query}", plain.port);
    assert_eq!(session_tls(&plain_url("")).await.unwrap(), "");
    let err = session_tls(&plain_url("ssl-mode=required"))
        .await
        .unwrap_err();
    assert!(
        err.contains("server does not have this capability"),
        "{err}"
    );
    // The client certificate, for a user that requires one.
    let with_cert = format!(
        "ssl-mode=verify_identity&ssl-ca={good}&ssl-cert={}&ssl-key={}",
        file("client.pem"),
        file("client.key")
    );
    session_tls(&url("agent", "localhost", &with_cert))
        .await
        .unwrap();
    assert!(session_tls(&url(
        "agent",
        "localhost",
        &format!("ssl-mode=verify_identity&ssl-ca={good}")
    ))
    .await
    .is_err());

    // The backup: this program's session and mariadb-dump's both follow the URL.
    world.use_source(
        "app",
        &url(
            "root",
            "localhost",
            &format!("ssl-mode=verify_identity&ssl-ca={other}"),
        ),
    );
    let refused = world.cli(&["backup", "app"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    world.use_source("app", &url("root", "127.0.0.1", "ssl-mode=disabled"));
    let refused = world.cli(&["backup", "app"]);
    assert_eq!(refused.status.code(), Some(1));
    let listed: serde_json::Value =
        serde_json::from_str(&world.ok(&["list", "app", "--json"])).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "refused backups stored nothing"
    );

    source.sql("INSERT INTO app.markers VALUES (501)");
    world.use_source("app", &url("agent", "localhost", &with_cert));
    world.ok(&["backup", "app"]);
    let listed: serde_json::Value =
        serde_json::from_str(&world.ok(&["list", "app", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // Restored into the plain server under the default preferred mode.
    world.ok(&[
        "restore",
        "app",
        "--to",
        &format!("mysql://root@127.0.0.1:{}", plain.port),
        "--latest",
    ]);
    let restored = plain.sql("SELECT count(*), sum(id) FROM app.markers");
    assert_eq!(restored.trim(), format!("501\t{}", 501 * 502 / 2));
}
