//! Tests of `config.rs`: reading heirloom.yaml, its errors, and how settings combine.

use super::*;

const EXAMPLE: &str = r#"
repository:
  url: s3://bucket/prefix
  key_file: /etc/heirloom/key
  options: { endpoint: "http://127.0.0.1:9000", region: us-east-1, allow_http: true }
sources:
  prod-pg: { kind: postgres, url: "postgres://u@db/app", data_dir: /var/lib/postgresql/data }
targets:
  staging: { kind: postgres, data_dir: /restore/pgdata }
"#;

fn err(text: &str) -> String {
    Config::parse(text, "heirloom.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn the_documented_example_parses() {
    let c = Config::parse(EXAMPLE, "x").unwrap();
    assert_eq!(c.sources["prod-pg"].engine(), "postgres");
    assert_eq!(c.targets["staging"].engine(), "postgres");
    assert_eq!(c.store_options().0["allow_http"], "true");
}

#[test]
fn unknown_keys_name_their_path() {
    let e = err("repository:\n  url: file:///x\n  colour: blue\n");
    assert!(e.contains("repository") && e.contains("colour"), "{e}");
    let e = err("sources:\n  a: { kind: postgres, url: 'postgres://x', dta_dir: /x }\n");
    assert!(e.contains("sources.a") && e.contains("dta_dir"), "{e}");
}

#[test]
fn bad_values_say_why() {
    let e = err("sources:\n  a: { kind: oracle, url: 'x://y' }\n");
    assert!(e.contains("sources.a.kind") && e.contains("oracle"), "{e}");
    let e = err("sources:\n  a: { kind: postgres, url: 'mysql://y' }\n");
    assert!(
        e.contains("sources.a.url") && e.contains("postgres://"),
        "{e}"
    );
    let e = err("repository:\n  url: ftp://x\n");
    assert!(e.contains("repository.url") && e.contains("ftp"), "{e}");
}

#[test]
fn sources_missing_what_their_kind_needs_are_refused_at_load() {
    let e = err("sources:\n  pg: { kind: postgres }\n");
    assert!(
        e.contains("sources.pg.url") && e.contains("PostgreSQL"),
        "{e}"
    );
    let e = err("sources:\n  db: { kind: mysql, data_dir: /var/lib/mysql }\n");
    assert!(e.contains("sources.db.url"), "{e}");
    let e = err("sources:\n  db: { kind: mysql, url: 'mysql://u@h', mode: physical }\n");
    assert!(
        e.contains("sources.db.data_dir") && e.contains("mariabackup"),
        "{e}"
    );
    let e = err("targets:\n  t: { kind: mysql }\n");
    assert!(e.contains("targets.t"), "{e}");
    let e = err("sources:\n  pg: { kind: postgres, url: 'postgres://h', mode: sideways }\n");
    assert!(
        e.contains("sources.pg.mode") && e.contains("sideways"),
        "{e}"
    );
    assert!(Config::parse(
            "sources:\n  pg: { kind: postgres, data_dir: /d }\n  db: { kind: mysql, url: 'mysql://u@h', mode: physical, data_dir: /m }\n",
            "x"
        )
        .is_ok());
}

#[test]
fn each_engine_checks_its_own_fields_and_names_them() {
    let e = err("sources:\n  pg: { kind: postgres, url: 'postgres://h', mode: sideways }\n");
    assert!(
        e.contains("sources.pg.mode") && e.contains("sideways"),
        "{e}"
    );
    let e = err("sources:\n  pg: { url: 'postgres://h' }\n");
    assert!(
        e.contains("sources.pg.kind") && e.contains("postgres | mysql"),
        "{e}"
    );
    let e = err("sources:\n  pg: { kind: 3, url: 'postgres://h' }\n");
    assert!(e.contains("sources.pg.kind"), "{e}");
    let e = err("sources:\n  pg: { kind: postgres, data_dir: /d, mode: logical }\n");
    assert!(e.contains("sources.pg.url") && e.contains("pg_dump"), "{e}");
    let e = err("targets:\n  t: { kind: mysql, url: 'mysql://h', data_dir: /d }\n");
    assert!(e.contains("targets.t") && e.contains("not both"), "{e}");
    let e = err("targets:\n  t: { kind: postgres, url: 'mysql://h' }\n");
    assert!(
        e.contains("targets.t.url") && e.contains("postgres://"),
        "{e}"
    );
    let e = err("targets:\n  t: { kind: mysql, data_dir: 7, colour: red }\n");
    assert!(e.contains("targets.t") && e.contains("colour"), "{e}");
    let dump = "sources:\n  db: { kind: mysql, url: 'mysql://u@h', mode: dump }\n";
    assert!(Config::parse(dump, "x").is_ok());
}

#[test]
fn the_buckets_object_lock_is_stated_and_checked() {
    let c = Config::parse(
        "repository: { url: 's3://b/p', object_lock: { mode: compliance, days: 1 } }\n",
        "x",
    )
    .unwrap();
    assert_eq!(c.repository.object_lock.unwrap().days, 1);
    let e = err("repository: { object_lock: { mode: compliance, days: 0 } }\n");
    assert!(e.contains("repository.object_lock.days"), "{e}");
    let e = err("repository: { object_lock: { mode: legal, days: 3 } }\n");
    assert!(e.contains("object_lock") && e.contains("legal"), "{e}");
    let e = err("repository: { object_lock: { mode: compliance, years: 3 } }\n");
    assert!(e.contains("object_lock") && e.contains("years"), "{e}");
}

#[test]
fn policies_are_named_per_source_with_a_default_and_checked_at_load() {
    let c = Config::parse(
            "retention: { default: pitr-7-days }\nsources:\n  pg: { kind: postgres, url: 'postgres://h', policy: seven-year-finance }\n  db: { kind: mysql, url: 'mysql://h' }\n",
            "x",
        )
        .unwrap();
    assert_eq!(
        c.policy_for(&"pg".parse().unwrap()).unwrap().name,
        "seven-year-finance"
    );
    assert_eq!(
        c.policy_for(&"db".parse().unwrap()).unwrap().name,
        "pitr-7-days"
    );
    assert_eq!(
        Config::default()
            .policy_for(&"any".parse().unwrap())
            .unwrap()
            .name,
        "three-year"
    );
    let e = err("sources:\n  pg: { kind: postgres, url: 'postgres://h', policy: forever }\n");
    assert!(
        e.contains("sources.pg.policy") && e.contains("forever"),
        "{e}"
    );
    let e = err("retention: { default: 7 }\n");
    assert!(e.contains("retention.default"), "{e}");
    let e = err("retention: { keep: forever }\n");
    assert!(e.contains("retention") && e.contains("keep"), "{e}");
    // A policy file beside the config.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.yaml"),
        "name: mine\nkeep: { daily: 2 }\n",
    )
    .unwrap();
    let path = dir.path().join("heirloom.yaml");
    std::fs::write(&path, "retention: { default: mine.yaml }\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.policy_for(&"x".parse().unwrap()).unwrap().keep.daily, 2);
    assert_eq!(c.repack_threshold(None).unwrap(), 50.0);
    // Packs are shared: the lowest threshold of the policies in force is the repository's.
    std::fs::write(
        dir.path().join("tight.yaml"),
        "name: tight\nkeep: { daily: 2 }\nrepack_threshold: 20\n",
    )
    .unwrap();
    std::fs::write(
            &path,
            "retention: { default: mine.yaml }\nsources:\n  pg: { kind: postgres, url: 'postgres://h', policy: tight.yaml }\n",
        )
        .unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.repack_threshold(None).unwrap(), 20.0);
    let loose = Policy::parse("name: l\nkeep: { daily: 1 }\nrepack_threshold: 90\n", "l").unwrap();
    assert_eq!(c.repack_threshold(Some(&loose)).unwrap(), 90.0);
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\nkeep: { daily: -2 }\n",
    )
    .unwrap();
    std::fs::write(&path, "retention: { default: bad.yaml }\n").unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("retention.default") && e.contains("keep.daily"),
        "{e}"
    );
}

#[test]
fn yaml_syntax_errors_say_where() {
    let e = err("repository:\n  url: [unclosed\n");
    assert!(e.contains("heirloom.yaml"), "{e}");
}

#[test]
fn source_names_that_could_leave_their_folder_are_refused_at_load() {
    let e = err("sources:\n  ../../escaped: { kind: postgres, url: 'postgres://x' }\n");
    assert!(
        e.contains("sources") && e.contains("../../escaped") && e.contains("not starting with '.'"),
        "{e}"
    );
}

#[test]
fn relative_repository_paths_are_refused() {
    let e = err("repository:\n  url: s3//bucket/p\n");
    assert!(
        e.contains("repository.url") && e.contains("s3://bucket/p"),
        "{e}"
    );
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let c = Config::parse(EXAMPLE, "x").unwrap();
    let env = |k: &str| match k {
        "HEIRLOOM_REPO" => Some("file:///env".to_owned()),
        "HEIRLOOM_PASSPHRASE" => Some("pw".to_owned()),
        _ => None,
    };
    let s = resolve(&c, None, None, env).unwrap();
    assert_eq!(s.url, "file:///env");
    assert!(matches!(s.key, KeySpec::File(ref p) if p == Path::new("/etc/heirloom/key")));
    let s = resolve(&c, Some("memory://"), None, env).unwrap();
    assert_eq!(s.url, "memory://");
    let s = resolve(&Config::default(), None, None, env).unwrap();
    assert!(matches!(s.key, KeySpec::Passphrase(ref p) if p == "pw"));
    assert!(matches!(
        resolve(&Config::default(), None, None, |_| None),
        Err(ConfigError::NoRepository)
    ));
}

const SCHEDULED: &str = r#"
sources:
  prod-pg:
    kind: postgres
    url: "postgres://u@db/app"
    schedules:
      zone: Europe/Berlin
      backup: "0 2 * * *"
      prune: { cron: "30 3 * * *", jitter: 10m, deadline: 2h }
      verify: { cron: "0 4 * * *", read_data_parts: 7 }
      audit: { cron: "0 6 * * 1", zone: UTC }
      drill: { cron: "0 0 5 * * 0", random_in_window: true }
      stream: { flush_interval: 3s, slot: heirloom_prod, spool: /var/lib/heirloom/spool }
"#;

#[test]
fn schedules_are_read_per_source_and_job() {
    use crate::agent::config::Job;
    let c = Config::parse(SCHEDULED, "x").unwrap();
    let s = &c.schedules["prod-pg"].jobs;
    assert_eq!(s.len(), 5);
    assert_eq!(s[&Job::Backup].cron.zone(), chrono_tz::Europe::Berlin);
    assert_eq!(s[&Job::Audit].cron.zone(), chrono_tz::UTC);
    assert_eq!(s[&Job::Prune].jitter.as_secs(), 600);
    assert_eq!(s[&Job::Prune].deadline.as_secs(), 7200);
    assert_eq!(s[&Job::Backup].deadline, Job::Backup.default_deadline());
    assert_eq!(s[&Job::Verify].read_data_parts, Some(7));
    assert!(s[&Job::Drill].random_in_window);
    let stream = c.schedules["prod-pg"].stream.clone().unwrap();
    assert_eq!(
        stream.flush_interval,
        Some(std::time::Duration::from_secs(3))
    );
    assert_eq!(stream.slot.as_deref(), Some("heirloom_prod"));
    let request = stream.request();
    assert_eq!(
        request.spool.as_deref(),
        Some(std::path::Path::new("/var/lib/heirloom/spool"))
    );
    let quiet = Config::parse(&SCHEDULED.replace("stream: {", "streams_off: {"), "x");
    assert!(quiet.is_err(), "an unknown key under schedules is refused");
    let off = Config::parse(
        "sources:\n  a:\n    kind: mysql\n    url: 'mysql://x'\n    schedules: { stream: false }\n",
        "x",
    )
    .unwrap();
    assert_eq!(off.schedules["a"].stream, None);
    // The engine never sees `schedules`.
    assert_eq!(c.sources["prod-pg"].engine(), "postgres");
}

#[test]
fn bad_schedules_name_their_field() {
    let with = |schedules: &str| {
        err(&format!(
            "sources:\n  a:\n    kind: postgres\n    url: 'postgres://x'\n    schedules: {schedules}\n"
        ))
    };
    let e = with("{ backup: '0 2 * *' }");
    assert!(
        e.contains("sources.a.schedules.backup") && e.contains("4 fields"),
        "{e}"
    );
    let e = with("{ backups: '0 2 * * *' }");
    assert!(
        e.contains("sources.a.schedules.backups") && e.contains("not a job"),
        "{e}"
    );
    let e = with("{ zone: Mars/Base, backup: '0 2 * * *' }");
    assert!(e.contains("schedules.zone") && e.contains("Mars"), "{e}");
    let e = with("{ prune: { cron: '0 3 * * *', jitter: soon } }");
    assert!(e.contains("schedules.prune.jitter"), "{e}");
    let e = with("{ prune: { cron: '0 3 * * *', read_data_parts: 3 } }");
    assert!(
        e.contains("schedules.prune.read_data_parts") && e.contains("unknown"),
        "{e}"
    );
    let e = with("{ verify: { read_data_parts: 3 } }");
    assert!(
        e.contains("schedules.verify.cron") && e.contains("missing"),
        "{e}"
    );
    let e = with("{ verify: { cron: '0 4 * * *', read_data_parts: 0 } }");
    assert!(e.contains("read_data_parts"), "{e}");
    let e = with("{ backup: '0 25 * * *' }");
    assert!(e.contains("schedules.backup"), "{e}");
    let e = with("{ stream: { flush: 3s } }");
    assert!(
        e.contains("schedules.stream.flush") && e.contains("unknown"),
        "{e}"
    );
    let e = with("{ stream: { heartbeat: often } }");
    assert!(e.contains("schedules.stream.heartbeat"), "{e}");
    let e = with("{ stream: { replica_server_id: 0 } }");
    assert!(e.contains("schedules.stream.replica_server_id"), "{e}");
    let e = with("{ stream: yes please }");
    assert!(e.contains("schedules.stream") && e.contains("true"), "{e}");
}

#[test]
fn environment_variables_in_a_url_are_expanded_and_percent_encoded() {
    let env = |k: &str| match k {
        "PW" => Some("p@ss/w:rd".to_owned()),
        "HOST" => Some("db.prod".to_owned()),
        _ => None,
    };
    assert_eq!(
        super::expand_env("mysql://root:${PW}@${HOST}:3306/$$x", &env).unwrap(),
        "mysql://root:p%40ss%2Fw%3Ard@db.prod:3306/$x"
    );
    assert_eq!(
        super::expand_env("postgres://db/app", &env).unwrap(),
        "postgres://db/app"
    );
    let e = super::expand_env("mysql://root:${NOPE}@db", &env).unwrap_err();
    assert!(e.contains("NOPE") && e.contains("not set"), "{e}");
    assert!(super::expand_env("mysql://root:$PW@db", &env).is_err());
    assert!(super::expand_env("mysql://root:${P-W}@db", &env).is_err());
    // A `$` that starts neither form is an error of the config, naming the field.
    let e = err("sources:\n  a: { kind: mysql, url: 'mysql://root:$PW@db' }\n");
    assert!(e.contains("sources.a.url") && e.contains("${NAME}"), "{e}");
}

#[test]
fn a_source_or_target_whose_variable_is_not_set_here_is_named_and_the_rest_loads() {
    // A pod gets only its own source's Secrets: the other sources' variables are not set in it.
    let c = Config::parse(
        "sources:\n  here: { kind: postgres, url: 'postgres://db/app' }\n  \
         elsewhere: { kind: mysql, url: 'mysql://root:${HEIRLOOM_TEST_UNSET_A}@${HEIRLOOM_TEST_UNSET_B}:3306' }\n\
         targets:\n  staging: { kind: postgres, url: 'postgres://u:${HEIRLOOM_TEST_UNSET_C}@staging/app' }\n",
        "heirloom.yaml",
    )
    .unwrap();
    assert!(c.sources.contains_key("here"));
    assert!(!c.sources.contains_key("elsewhere"));
    let name: SourceName = "elsewhere".parse().unwrap();
    assert!(c.declares(&name));
    let u = &c.unresolved_sources["elsewhere"];
    assert_eq!(u.field, "sources.elsewhere.url");
    assert_eq!(u.engine, Some("mysql"));
    assert_eq!(
        u.to_string(),
        "sources.elsewhere.url: the environment variables HEIRLOOM_TEST_UNSET_A, HEIRLOOM_TEST_UNSET_B are not set"
    );
    assert_eq!(
        c.source_names().map(|s| s.as_str()).collect::<Vec<_>>(),
        ["here", "elsewhere"]
    );
    assert!(c.targets.is_empty());
    assert!(c.unresolved_targets["staging"]
        .to_string()
        .contains("HEIRLOOM_TEST_UNSET_C is not set"));
    // The rest of such an entry is still read: a mistake in it is not hidden.
    let e = err("sources:\n  a: { kind: mysql, url: 'mysql://root:${HEIRLOOM_TEST_UNSET_A}@db', nope: 1 }\n");
    assert!(e.contains("nope"), "{e}");
}
